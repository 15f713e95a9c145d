"""What every check of ``tools/gpu_check.py`` starts from: its device's sizes, a model
whose activations stay in the range of a trained network's, realistic inputs, fixed
masks, and the figures that compare two runs.

On CUDA the checks use the paper's W48 networks at the paper's sizes; on the CPU the same
experiment files with the widths of experiments/synthetic/tiny_adpc.yaml at 64x128, so
that the same code runs in seconds.
"""
import argparse
import copy
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from config import config, update_config
from datasets.cityscapes import CITYSCAPES_CLASS_WEIGHTS
from datasets.labels import label_ids_to_train_ids
from datasets.synthetic import render_scene
from datasets.transforms import normalize
from engine.criterion import FullModel, build_criterion
from models.model_anytime import build_model
from models.sparse.benchmark import logit_size
from models.sparse.noise_masks import SmoothNoiseMasks
from utils.io import atomic_torch_save

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXPERIMENTS = os.path.join(ROOT, 'experiments', 'cityscapes')
# W48 with the one-module, one-block stages and widths of tiny_adpc.yaml.
TINY = ['MODEL.EXTRA.STAGE1.NUM_BLOCKS', [1], 'MODEL.EXTRA.STAGE1.NUM_CHANNELS', [16],
        'MODEL.EXTRA.STAGE2.NUM_BLOCKS', [1, 1], 'MODEL.EXTRA.STAGE2.NUM_CHANNELS', [16, 32],
        'MODEL.EXTRA.STAGE3.NUM_MODULES', 1, 'MODEL.EXTRA.STAGE3.NUM_BLOCKS', [1, 1, 1],
        'MODEL.EXTRA.STAGE3.NUM_CHANNELS', [16, 32, 64], 'MODEL.EXTRA.STAGE4.NUM_MODULES', 1,
        'MODEL.EXTRA.STAGE4.NUM_BLOCKS', [1, 1, 1, 1],
        'MODEL.EXTRA.STAGE4.NUM_CHANNELS', [16, 32, 64, 128], 'EXIT.INTER_CHANNEL', 16]
PAPER_DENSITIES = (0.8, 0.6, 0.35)  # masks of segments 1-3 of a trained ADP-C (paper)
CHECK_IMAGE_SEED = 7  # the scene the checks compare on (never among the training scenes)


class CheckFailed(Exception):
    """A check ran and found a fault: ``message`` says which, ``figures`` what it measured."""

    def __init__(self, message, figures=None):
        super().__init__(message)
        self.figures = figures or {}


@dataclass(frozen=True)
class Setup:
    """Where and at which sizes the checks run.

    Args:
        device (torch.device): the device under test.
        tiny (bool): the tiny W48 (CPU) instead of W48.
        shape (tuple): H, W of the correctness checks' input and of the training steps.
        speed_shape (tuple): H, W of the forward and evaluation timings.
        train_batch (int): images per timed training step.
        train_shape (tuple): H, W of the brief training of ``trained_model``.
        train_steps (int), train_lr (float): its steps and learning rate.
        out (str): folder of the checks' files.
        fault (str | None): a fault to inject (tests only, see ``faults``).
        name (str): the check that runs (names its files).
        deadline (float | None): time.time() by which the check must have ended.
    """
    device: torch.device
    tiny: bool
    shape: tuple
    speed_shape: tuple
    train_batch: int
    train_shape: tuple
    train_steps: int
    train_lr: float
    out: str = '.'
    fault: str = None
    name: str = 'check'
    deadline: float = None


def setup_for(device, out='.', fault=None):
    """The paper's sizes on CUDA (512x1024; 1024x2048 for speed; batch 3 per GPU);
    64x128 and the tiny W48 elsewhere (its brief training at tiny_adpc.yaml's LR)."""
    device = torch.device(device)
    if device.type == 'cuda':
        return Setup(device, False, (512, 1024), (1024, 2048), 3, (256, 512), 60, 0.05,
                     out, fault)
    return Setup(device, True, (64, 128), (64, 128), 2, (64, 128), 60, 0.2, out, fault)


def load_cfg(name, setup):
    """experiments/cityscapes/``name``.yaml, shrunk on the CPU, without pretrained weights."""
    extra = (TINY if setup.tiny else []) + ['MODEL.PRETRAINED', '']
    args = argparse.Namespace(cfg=os.path.join(EXPERIMENTS, f'{name}.yaml'),
                              opts=[str(o) for o in extra])
    return update_config(config.clone(), args)


def labelled_scenes(count, shape, seed=0):
    """``count`` synthetic street scenes (datasets.synthetic), normalised as the loader
    does, and their train ids: (N x 3 x H x W float32, N x H x W int64) on the CPU."""
    images, labels = [], []
    for i in range(count):
        image, label_ids = render_scene(*shape, np.random.default_rng([seed, i]))
        images.append(normalize(image))
        labels.append(label_ids_to_train_ids(label_ids))
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(labels))


def scenes(count, shape, seed=CHECK_IMAGE_SEED):
    """The images of :func:`labelled_scenes`."""
    return labelled_scenes(count, shape, seed)[0]


def set_batchnorm_statistics(model, batches):
    """Running statistics of every BatchNorm from ``batches``, as training leaves them.

    Forwards in train mode normalise each layer by its batch's statistics, so every
    layer sees inputs of a trained network's scale; momentum None makes the running
    statistics the plain average over the batches. Weights do not change.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for x in batches:
            model(x)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return model.eval()


def _statistics_batches(setup):
    return [scenes(2, setup.shape, seed=100 + i).to(setup.device) for i in range(4)]


def realistic_model(cfg, setup, seed=0):
    """The network of ``cfg`` on the device, in eval mode, with He-normal convolutions
    (weights of a trained network's spread, unlike the std-0.001 initialisation, which
    makes every pixel unconfident) and BatchNorm statistics of four batches of two
    synthetic scenes, so that activations keep the range of a trained network's.

    Without those statistics (mean 0, variance 1) activations grow layer by layer, past
    float16's range in W48: a model no trained network resembles."""
    torch.manual_seed(seed)
    model = build_model(cfg)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
    return set_batchnorm_statistics(model.to(setup.device), _statistics_batches(setup))


def trained_model(name, setup):
    """``realistic_model`` of experiments/cityscapes/``name``.yaml briefly trained on
    synthetic scenes (``setup.train_steps`` SGD steps), then given fresh BatchNorm
    statistics. Random weights leave many pixels with two classes almost tied, so that
    any rounding flips their top class; a little training separates them as a trained
    network's are. Kept in ``setup.out``/models/ for the next check that needs it.
    """
    cfg = load_cfg(name, setup)
    recipe = f"{'tiny' if setup.tiny else 'w48'}-{setup.train_steps}steps-lr{setup.train_lr}"
    path = os.path.join(setup.out, 'models', f'{name}-{recipe}.pt')
    if os.path.isfile(path):
        model = build_model(cfg)
        model.load_state_dict(torch.load(path, map_location='cpu', weights_only=True))
        print(f'{name}: briefly trained weights from {path}')
        return model.to(setup.device).eval()
    model = realistic_model(cfg, setup)
    full = FullModel(model, build_criterion(cfg, CITYSCAPES_CLASS_WEIGHTS)).train()
    optimizer = torch.optim.SGD(full.parameters(), lr=setup.train_lr, momentum=0.9)
    data = [labelled_scenes(2, setup.train_shape, seed=1000 + i) for i in range(8)]
    for step in range(setup.train_steps):
        x, y = (t.to(setup.device) for t in data[step % len(data)])
        loss = full(x, y)[0]
        if not torch.isfinite(loss):
            raise RuntimeError(f'the brief training of {name} diverged at step {step}')
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(full.parameters(), 10.0)  # no step may blow the weights up
        optimizer.step()
        if step % 20 == 0 or step == setup.train_steps - 1:
            print(f'{name}: brief training step {step}, loss {loss.item():.3f}')
    set_batchnorm_statistics(model, _statistics_batches(setup))
    atomic_torch_save(model.state_dict(), path)
    return model


def threshold_for_density(model, x, density=0.5):
    """A confidence threshold that makes segment 1's mask about ``density`` dense on ``x``.

    It lies midway in the widest gap between the confidences of exit 1's pixels ranked
    within 10% of that density, away from every pixel's confidence, so that rounding
    differences between two devices cannot move a pixel of segment 1's mask to the other
    side."""
    with torch.no_grad():
        logits = model(x, stop_at=1)[0].float()
    confidence = torch.softmax(logits, dim=1).amax(dim=1).flatten().sort().values.cpu()
    n = len(confidence)
    near = confidence[int((density - 0.1) * n):int((density + 0.1) * n) + 1]
    i = int((near[1:] - near[:-1]).argmax())
    return ((near[i] + near[i + 1]) / 2).item()


def noise_masks(shape, batch=1, densities=PAPER_DENSITIES):
    """Fixed masks of segments 1-3 on the CPU (smooth noise at the paper's densities)."""
    size = logit_size(shape)
    return [SmoothNoiseMasks(batch, size, d, smoothness=max(2, size[0] // 16), seed=j)
            for j, d in enumerate(densities, start=1)]


class MovedMasks:
    """Another provider's masks on ``device`` in float32: both sides of a comparison
    then run with the same masks."""

    def __init__(self, masks, device):
        self.masks, self.device = masks, device
        self._by_size = {}

    def at(self, size):
        size = tuple(int(s) for s in size)
        if size not in self._by_size:
            self._by_size[size] = self.masks.at(size).to(self.device, torch.float32)
        return self._by_size[size]


def moved(masks, device):
    return [MovedMasks(m, device) for m in masks]


def run(model, x, mode, masks=None, own_masks=False):
    """The four exits of ``model`` on ``x`` in execution ``mode`` (no gradients); with
    ``own_masks`` also the mask providers it used."""
    previous, model.execution = model.execution, mode
    try:
        with torch.no_grad():
            return model(x, masks=masks, return_masks=own_masks)
    finally:
        model.execution = previous


def on_cpu(model, dtype):
    """A copy of ``model`` on the CPU in ``dtype`` (a side of a comparison)."""
    return copy.deepcopy(model).to('cpu', dtype)


def relative_difference(got, ref):
    """max |got - ref| over max |ref|: the difference relative to the output's scale."""
    ref = ref.double().cpu()
    return ((got.double().cpu() - ref).abs().max() / ref.abs().max()).item()


def mask_agreement(a, b, size):
    """Fraction of pixels on which two mask providers agree at ``size``."""
    return (a.at(size).cpu() == b.at(size).cpu()).float().mean().item()


def decided_agreement(got, ref, movable):
    """Top-class agreement of two exits' logits where rounding cannot decide it.

    Where every logit of ``got`` is within ``movable`` of ``ref``'s, the top class can
    differ only at pixels whose ``ref`` top-2 margin is at most 2 * ``movable``.

    Returns:
        (float, float, float): the agreement at the other ("decided") pixels (1.0 if
        there are none), their fraction, and the agreement at the undecided ones.
    """
    got, ref = got.double().cpu(), ref.double().cpu()
    top2 = ref.topk(2, dim=1).values
    decided = top2[:, 0] - top2[:, 1] > 2 * movable
    same = got.argmax(1) == ref.argmax(1)

    def agreement(pixels):
        return same[pixels].float().mean().item() if pixels.any() else 1.0
    return agreement(decided), decided.float().mean().item(), agreement(~decided)


def max_abs(tensors):
    """Largest |value| over ``tensors`` (inf or NaN included as such)."""
    return max(t.detach().abs().max().item() for t in tensors)


class ActivationRange:
    """Largest finite |activation| of the leaf modules' outputs, and the first module (in
    execution order) whose output holds an inf or NaN, while it is active.

        with ActivationRange(model) as watch:
            model(x)
        watch.max_abs, watch.first_nonfinite
    """

    def __init__(self, model):
        self.model = model
        self.max_abs = 0.0
        self.first_nonfinite = None
        self._handles = []

    def _hook(self, name):
        def hook(module, inputs, output):
            if not torch.is_tensor(output) or not output.is_floating_point() or \
                    not output.numel():
                return
            finite = torch.isfinite(output)
            if self.first_nonfinite is None and not bool(finite.all()):
                self.first_nonfinite = name
            values = output.detach().abs().masked_fill(~finite, 0)
            self.max_abs = max(self.max_abs, values.max().item())
        return hook

    def __enter__(self):
        self._handles = [m.register_forward_hook(self._hook(name))
                         for name, m in self.model.named_modules() if not list(m.children())]
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles = []
