"""The anytime segmentation network: HRNet with four exits and confidence adaptivity.

Structure (ADP-C Sec. 3): stem and ``layer1`` -> ``exit1``; then for j = 1, 2, 3 a
segment ``transition_j``, ``stage_{j+1}`` and its exit (``exit2``, ``exit3``,
``last_layer``). With confidence adaptivity, every convolution of segment j is a
``MaskedConv2d`` that computes only the pixels exit j is not confident about, and the
copy aggregation keeps exit j's logits at the pixels it was confident about.

    model = get_seg_model(cfg)
    outs = model(images)               # [out1, out2, out3, out4], logits at 1/4 size
    outs = model(images, stop_at=2)    # [out1, out2]; nothing after exit 2 runs
    for logits in model.iter_exits(images): ...   # exits as they come
    state = model.first_exit(images)   # step by step, e.g. to decide before each segment
    state = model.next_exit(state)     # state.exit == 2, state.logits
"""
import itertools
import logging
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn as nn

from .confidence import CRITERIA, ConfidenceMasks, copy_aggregate
from .exits import make_exit, original_head
from .hrnet import BLOCKS, BN_MOMENTUM, Bottleneck, apply_transition, batch_norm, make_layer, \
    make_stage, make_transition
from .layout import is_channels_last
from .resize import upsample_to
from .masked_conv import MaskedConv2d, MaskSlot
from .sparse import ExecutionPolicy, FoldedWeights, check_execution, has_break_even, \
    run_segment
from utils.checkpoint import load_pretrained

logger = logging.getLogger(__name__)

NUM_EXITS = 4
STEM_CHANNELS = 64


@dataclass
class StageSpec:
    """One HRNet stage of MODEL.EXTRA (STAGE1..STAGE4)."""
    num_modules: int
    block: str
    num_blocks: list
    num_channels: list

    @classmethod
    def from_cfg(cls, node, name):
        try:
            spec = cls(int(node['NUM_MODULES']), str(node['BLOCK']),
                       list(node['NUM_BLOCKS']), list(node['NUM_CHANNELS']))
        except KeyError as e:
            raise KeyError(f'MODEL.EXTRA.{name} lacks {e.args[0]}') from None
        if spec.block not in BLOCKS:
            raise ValueError(f'MODEL.EXTRA.{name}.BLOCK must be one of {sorted(BLOCKS)}, '
                             f'got {spec.block!r}')
        if node.get('FUSE_METHOD', 'SUM') != 'SUM':
            raise ValueError(f"MODEL.EXTRA.{name}.FUSE_METHOD: only 'SUM' exists")
        return spec


@dataclass(frozen=True)
class ExitState:
    """Where the network stands after exit ``exit`` (1..4): that exit's logits (N x
    classes x H/4 x W/4, aggregated with the earlier exits) and the HRNet branches the
    next segment starts from; ``sparse``: whether masked segments run sparse; ``masks``:
    the mask provider the segment before this exit ran with (None for exit 1 and
    without MASK.USE), e.g. for ``models.flops.FlopsCounter``."""
    exit: int
    branches: list
    logits: torch.Tensor
    sparse: bool
    masks: object = None


def exit_input(branches, detach=False):
    """Concatenate all branches, each bilinearly upsampled to branch 0's size."""
    size = branches[0].shape[-2:]
    x = torch.cat([branches[0]] + [upsample_to(b, size) for b in branches[1:]], dim=1)
    return x.detach() if detach else x


class AnytimeHRNet(nn.Module):
    """HRNet-v2 with four exits, optional redesigned heads and confidence adaptivity.

    Args:
        stages (list[StageSpec]): STAGE1..STAGE4 of MODEL.EXTRA.
        num_classes (int): DATASET.NUM_CLASSES.
        exit_type (str): EXIT.TYPE of exits 1-3, 'original' or 'flex'; ``last_layer`` is
            always 'original'.
        inter_channels (int): EXIT.INTER_CHANNEL, width of flex heads.
        final_conv_kernel (int): EXIT.FINAL_CONV_KERNEL.
        early_detach (bool): MODEL.EXTRA.EARLY_DETACH, stop exits 1-3 from training the
            backbone.
        use_masks (bool): MASK.USE, confidence adaptivity.
        mask_criterion (str): MASK.CRIT, 'conf_thre' or 'entropy_thre'.
        mask_threshold (float): MASK.CONF_THRE or MASK.ENTROPY_THRE.
        rbf_fill (bool): MASK.INTERPOLATION == 'rbf'.
        aggregation (str): MASK.AGGR, 'copy' or 'none'.
        execution (str): MASK.EXECUTION, how masked convolutions run at inference:
            'dense', 'sparse' or 'auto' (see ``models.sparse``). A plain attribute, so a
            benchmark may switch it on one model; training always runs dense.
        bn_momentum (float): MODEL.BN_MOMENTUM, momentum of every BatchNorm's running
            statistics. Default 0.01, as in HRNet.
    """

    def __init__(self, stages, num_classes=19, exit_type='original', inter_channels=64,
                 final_conv_kernel=1, early_detach=False, use_masks=False,
                 mask_criterion='conf_thre', mask_threshold=0.0, rbf_fill=True,
                 aggregation='copy', execution='auto', bn_momentum=BN_MOMENTUM):
        super().__init__()
        if len(stages) != NUM_EXITS:
            raise ValueError(f'MODEL.EXTRA needs STAGE1..STAGE{NUM_EXITS}, got {len(stages)}')
        if aggregation not in ('copy', 'none'):
            raise ValueError(f"MASK.AGGR must be 'copy' or 'none', got {aggregation!r}")
        self.early_detach = early_detach
        self.use_masks = use_masks
        self.mask_criterion = mask_criterion
        self.mask_threshold = mask_threshold
        self.aggregation = aggregation
        self.execution = check_execution(execution)
        # BN-folded weights for sparse inference: derived data, rebuilt when weights change.
        self.folded_weights = FoldedWeights()
        # Device types on which 'auto' was reported to run dense (said once per model).
        self._auto_reported_dense = set()
        # One slot per segment after exits 1-3; empty except while its segment runs.
        self.mask_slots = [MaskSlot() for _ in range(NUM_EXITS - 1)]

        plain = nn.Conv2d
        self.conv1 = plain(3, STEM_CHANNELS, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = batch_norm(STEM_CHANNELS)
        self.conv2 = plain(STEM_CHANNELS, STEM_CHANNELS, kernel_size=3, stride=2, padding=1,
                           bias=False)
        self.bn2 = batch_norm(STEM_CHANNELS)
        self.relu = nn.ReLU(inplace=True)

        stage1 = stages[0]
        block = BLOCKS[stage1.block]
        self.layer1 = make_layer(block, STEM_CHANNELS, stage1.num_channels[0],
                                 stage1.num_blocks[0])
        channels = [stage1.num_channels[0] * block.expansion]
        head = partial(make_exit, exit_type, num_classes=num_classes,
                       inter_channels=inter_channels, final_kernel=final_conv_kernel)
        self.exit1 = head(1, channels[0], conv=plain)

        for j, spec in enumerate(stages[1:], start=1):
            conv = partial(MaskedConv2d, slot=self.mask_slots[j - 1], rbf=rbf_fill) \
                if use_masks else plain
            block = BLOCKS[spec.block]
            widths = [c * block.expansion for c in spec.num_channels]
            transition = make_transition(channels, widths, conv)
            stage, channels = make_stage(spec.num_modules, block, spec.num_blocks, widths,
                                         spec.num_channels, conv)
            if j < NUM_EXITS - 1:
                exit_head = head(j + 1, sum(channels), conv=conv)
            else:
                exit_head = original_head(sum(channels), num_classes, final_conv_kernel, conv)
            setattr(self, f'transition{j}', transition)
            setattr(self, f'stage{j + 1}', stage)
            setattr(self, self.exit_name(j + 1), exit_head)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = bn_momentum
        self.init_weights()

    @staticmethod
    def exit_name(k):
        return 'last_layer' if k == NUM_EXITS else f'exit{k}'

    def parts(self):
        """The modules that produce each exit, in order: ``parts()[k-1]`` runs between
        exit k-1 and exit k (part 0: stem, layer1 and exit1)."""
        first = [self.conv1, self.bn1, self.conv2, self.bn2, self.layer1, self.exit1]
        return [first] + [[getattr(self, f'transition{j}'), getattr(self, f'stage{j + 1}'),
                           getattr(self, self.exit_name(j + 1))] for j in range(1, NUM_EXITS)]

    def train(self, mode=True):
        # Weights may change while training, also through ``.data`` (which bypasses the
        # version counters the cache checks): start inference with freshly folded weights.
        self.folded_weights.clear()
        return super().train(mode)

    def init_weights(self):
        """The random init of the original: conv weights N(0, 0.001), BN weight 1, bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.001)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward(self, x, stop_at=NUM_EXITS, masks=None, return_masks=False):
        """Logits of exits 1..``stop_at`` (each N x classes x H/4 x W/4); layers after exit
        ``stop_at`` do not run. ``masks``: see ``iter_exits``.

        With ``return_masks``, returns ``(logits, used)``: ``used[j-1]`` is the mask
        provider (``at(size)`` -> N x 1 x h x w, per image) that segment j ran with, or
        None without MASK.USE; e.g. for ``models.flops.FlopsCounter``."""
        if stop_at not in range(1, NUM_EXITS + 1):
            raise ValueError(f'stop_at must be 1..{NUM_EXITS}, got {stop_at}')
        states = list(itertools.islice(self._states(x, masks), stop_at))
        logits = [state.logits for state in states]
        return (logits, [state.masks for state in states[1:]]) if return_masks else logits

    def iter_exits(self, x, masks=None):
        """Yield the logits of exit 1, 2, 3, 4 as each is ready. The network runs only as
        far as the caller iterates, so stopping early (e.g. at a deadline) skips the rest.

        ``masks`` (benchmarks and tests only): three mask providers (``at(size)`` -> N x 1 x
        h x w) that replace the confidence masks of segments 1-3, to run masked models at
        chosen densities; ignored without MASK.USE."""
        for state in self._states(x, masks):
            yield state.logits

    def _states(self, x, masks=None):
        state = self.first_exit(x)
        yield state
        while state.exit < NUM_EXITS:
            state = self.next_exit(state, None if masks is None else masks[state.exit - 1])
            yield state

    def first_exit(self, x):
        """Stem, layer1 and exit 1 on ``x`` (N x 3 x H x W).

        Returns:
            ExitState: exit 1's logits and what :meth:`next_exit` continues from.
        """
        sparse = self._runs_sparse(x.device)
        # The sparse engine works on channels-last maps, and a model set up for inference
        # (models.layout) has channels-last weights: start in that layout.
        if sparse or is_channels_last(self.conv1):
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))  # N x 64 x H/4 x W/4
        branches = [self.layer1(x)]
        logits = self.exit1(exit_input(branches, detach=self.early_detach))
        return ExitState(1, branches, logits.contiguous() if sparse else logits, sparse)

    def next_exit(self, state, masks=None):
        """Run the segment after exit ``state.exit`` and return the next exit's state.

        ``state`` is not modified, so the same state can be continued several times,
        e.g. with the masks of different thresholds.

        Args:
            state (ExitState): from :meth:`first_exit` or a previous ``next_exit``.
            masks: mask provider of this segment (``at(size)`` -> N x 1 x h x w), such as
                ``ConfidenceMasks(state.logits, criterion, threshold)``; None: the
                model's own confidence masks (see :meth:`segment_masks`). Ignored
                without MASK.USE.
        """
        if state.exit >= NUM_EXITS:
            raise ValueError(f'exit {state.exit} is the last one: nothing runs after it')
        branches, logits, used = self._run_segment(state.exit, state.branches, state.logits,
                                                   state.sparse, masks)
        return ExitState(state.exit + 1, branches, logits, state.sparse, used)

    def segment_masks(self, logits):
        """The confidence masks (MASK.CRIT, MASK.CONF_THRE / ENTROPY_THRE) that the
        segment after an exit with these ``logits`` runs under; None without MASK.USE."""
        if not self.use_masks:
            return None
        return ConfidenceMasks(logits, self.mask_criterion, self.mask_threshold)

    def _runs_sparse(self, device):
        """Masked segments go to the sparse engine: masked model, inference, no gradients,
        MASK.EXECUTION 'sparse', or 'auto' on a device type with break-even densities."""
        if not self.use_masks or self.execution == 'dense' or self.training \
                or torch.is_grad_enabled():
            return False
        if self.execution == 'auto' and not has_break_even(device):
            if device.type not in self._auto_reported_dense:
                self._auto_reported_dense.add(device.type)
                logger.info(f"MASK.EXECUTION 'auto' runs dense on {device.type}: no "
                            f"break-even densities were measured there (measure them with "
                            f"python tools/calibrate.py --device {device.type})")
            return False
        return True

    def _run_segment(self, j, branches, logits, sparse, masks=None):
        """Segment j: transition_j, stage_{j+1} and exit j+1, masked by exit j's logits
        (or by ``masks`` when given); on the sparse engine when ``sparse``. Returns the
        output branches, exit j+1's logits and the masks used (None without MASK.USE)."""
        transition, stage = getattr(self, f'transition{j}'), getattr(self, f'stage{j + 1}')
        head = getattr(self, self.exit_name(j + 1))
        if not self.use_masks:
            masks = None
        elif masks is None:
            masks = self.segment_masks(logits)
        if sparse:
            # Inference: compute only where the masks are 1 (no gradients needed).
            branches, out = run_segment(
                transition, stage, head, branches, masks,
                ExecutionPolicy.for_device(self.execution, logits.device),
                need_out='active' if self.aggregation == 'copy' else 'full',
                weights=self.folded_weights)
        else:
            slot = self.mask_slots[j - 1]
            slot.masks = masks
            try:
                branches = stage(apply_transition(transition, branches))
                detach = self.early_detach and j + 1 < NUM_EXITS
                out = head(exit_input(branches, detach))
            finally:
                slot.masks = None
        if masks is not None and self.aggregation == 'copy':
            out = copy_aggregate(logits, out, masks.at(out.shape[-2:]))
        return branches, out, masks


def build_model(cfg):
    """Turn the config into AnytimeHRNet's plain arguments (no weights loaded)."""
    extra = cfg.MODEL.EXTRA
    stages = [StageSpec.from_cfg(extra[f'STAGE{i}'], f'STAGE{i}') for i in range(1, 5)]
    if BLOCKS[stages[0].block] is not Bottleneck:
        logger.warning('MODEL.EXTRA.STAGE1.BLOCK is %s; HRNet uses BOTTLENECK', stages[0].block)
    crit = cfg.MASK.CRIT
    if crit not in CRITERIA:
        raise ValueError(f'MASK.CRIT must be one of {CRITERIA}, got {crit!r}')
    if cfg.MASK.INTERPOLATION not in ('rbf', 'none'):
        raise ValueError(f"MASK.INTERPOLATION must be 'rbf' or 'none', got "
                         f"{cfg.MASK.INTERPOLATION!r}")
    return AnytimeHRNet(
        stages,
        num_classes=cfg.DATASET.NUM_CLASSES,
        exit_type=cfg.EXIT.TYPE,
        inter_channels=cfg.EXIT.INTER_CHANNEL,
        final_conv_kernel=cfg.EXIT.FINAL_CONV_KERNEL,
        early_detach=bool(extra.get('EARLY_DETACH', False)),
        use_masks=cfg.MASK.USE,
        mask_criterion=crit,
        mask_threshold=cfg.MASK.CONF_THRE if crit == 'conf_thre' else cfg.MASK.ENTROPY_THRE,
        rbf_fill=cfg.MASK.INTERPOLATION == 'rbf',
        aggregation=cfg.MASK.AGGR,
        execution=cfg.MASK.EXECUTION,
        bn_momentum=cfg.MODEL.BN_MOMENTUM)


def get_seg_model(cfg, pretrained=True):
    """Build the network of MODEL.NAME 'model_anytime' and apply MODEL.PRETRAINED.

    Args:
        cfg (CfgNode): the config.
        pretrained (bool): False builds the random initialisation only, without a word
            in the log: for a caller that loads a checkpoint replacing every weight.
    """
    model = build_model(cfg)
    if not pretrained:
        return model
    if cfg.MODEL.PRETRAINED:
        load_pretrained(model, cfg.MODEL.PRETRAINED, cfg.MODEL.LOAD_STAGE,
                        cfg.MODEL.PRETRAINED_KEEP)
    else:
        logger.info('MODEL.PRETRAINED is empty: random initialisation')
    return model
