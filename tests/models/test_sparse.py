"""Sparse execution of masked segments equals the dense masked network (MASK.EXECUTION).

Sparse and dense differ by float32 rounding only (other summation orders, BatchNorm
folded into the weights): both are held to the exact result, the dense network run in
float64, within the reach of float32 rounding (tests/models/rounding.py); single
operations within the worst case of their sums."""
import copy
import math
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import models.masked_conv as masked_conv
import models.model_anytime as model_anytime
import models.sparse.engine as engine
import models.sparse.near_branch as near_branch
import models.sparse.policy as policy_module
from models.hrnet import apply_transition
from models.masked_conv import MaskedConv2d, MaskSlot, rbf_kernel
from models.model_anytime import exit_input
from models.sparse import ExecutionPolicy, SegmentEngine, run_segment
from models.sparse import kernels
from models.sparse.calibrate import break_even
from models.sparse.geometry import ConvTaps, MaskGeometry, resample_matrix
from models.sparse.kernels import NEGLIGIBLE_FILL_WEIGHT, channels_last, conv_rows, \
    fill_kernel, flat_rows
from rounding import BF16_U, bilinear_error_bound, exact_and_spread, sum_error_bound, within_reach
from tiny import mixed_mask_model, tiny_cfg, tiny_model
from models.sparse.noise_masks import SmoothNoiseMasks

# Float32 results held to bounds that other summation orders must also meet.
pytestmark = pytest.mark.numerics


POLICIES = {
    'sparse': ExecutionPolicy('sparse'),
    'auto': ExecutionPolicy.for_device('auto', torch.device('cpu')),
    # Break-even densities that send 1x1 and 3x3 layers different ways at 50%.
    'mixed': ExecutionPolicy('auto', {(1, None): 0.3, (3, None): 0.7}),
}


U64 = 2.0 ** -53  # unit roundoff of float64


class Exact:
    """The exact (float64) outputs of ``run`` (a model -> list of tensors) on ``model``,
    and how far a float32 run may be from each (``noise``: see rounding.RoundingNoise)."""

    def __init__(self, run, model, **noise):
        with torch.no_grad():
            self.values, self.spreads = exact_and_spread(lambda m: dict(enumerate(run(m))),
                                                         model, **noise)

    def holds(self, outputs):
        """Every one of ``outputs`` within reach of its exact value."""
        outputs = list(outputs)
        return len(outputs) == len(self.values) and all(
            within_reach(o, self.values[k], self.spreads[k]) for k, o in enumerate(outputs))


def exact_model(model, x, masks=None, **noise):
    """The model's outputs, run dense (its own masks: ``masks`` None)."""
    dense = copy.deepcopy(model)
    dense.execution = 'dense'
    return Exact(lambda m: m(x.double(), masks=masks), dense, **noise)


def exact_segment(model, j, branches, masks, **noise):
    """Segment j's output branches and logits, as one list."""
    return Exact(lambda m: segment_list(dense_segment(m, j, [b.double() for b in branches],
                                                      masks)), model, **noise)


def segment_list(segment):
    branches, out = segment
    return list(branches) + [out]


def exact_conv(x, weight, bias=None, **kwargs):
    """A float32 convolution's exact value and the worst case of its rounding (one sum of
    in_channels·kh·kw products and the bias per output)."""
    exact = F.conv2d(x.double(), weight.double(), None if bias is None else bias.double(),
                     **kwargs)
    abs_sum = F.conv2d(x.double().abs(), weight.double().abs(),
                       None if bias is None else bias.double().abs(), **kwargs)
    return exact, sum_error_bound(weight[0].numel() + 1, abs_sum)


def randomise(model, seed=0):
    """Weights and BN statistics away from the init, so that every term matters.

    Running variances spread from 1e-6 to 2 (log-uniform), so that BatchNorm's eps
    (1e-5) changes the folded weights of some channels by up to 3x; BN weights in
    proportion to sqrt(running_var) keep the activations of order 1 all the same.
    """
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            if m.bias is not None:
                nn.init.normal_(m.bias, std=0.1)
        elif isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            log_var = torch.empty_like(m.running_var).uniform_(math.log(1e-6), math.log(2.0))
            m.running_var.copy_(log_var.exp())
            m.weight.data = m.running_var.sqrt() * (1 + 0.2 * torch.randn_like(m.weight))
            nn.init.normal_(m.bias, std=0.1)
        if isinstance(m, MaskedConv2d):
            m.Lambda.data.uniform_(0.3, 1.5)  # wide fills: reach the 7x7 window's edge
    return model.eval()


def segment_inputs(model, x):
    with torch.no_grad():
        y = model.relu(model.bn1(model.conv1(x)))
        return [model.layer1(model.relu(model.bn2(model.conv2(y))))]


def dense_segment(model, j, branches, masks):
    """The reference: the modules' own (dense) forward with the masks in the slot."""
    slot = model.mask_slots[j - 1]
    slot.masks = masks
    try:
        with torch.no_grad():
            branches = apply_transition(getattr(model, f'transition{j}'), branches)
            branches = getattr(model, f'stage{j + 1}')(branches)
            return branches, getattr(model, model.exit_name(j + 1))(exit_input(branches))
    finally:
        slot.masks = None


def sparse_segment(model, j, branches, masks, policy, need_out='full', dtype=None):
    return run_segment(getattr(model, f'transition{j}'), getattr(model, f'stage{j + 1}'),
                       getattr(model, model.exit_name(j + 1)), branches, masks, policy,
                       need_out=need_out, dtype=dtype)


@pytest.mark.parametrize('variant', ['ca', 'adpc'])
@pytest.mark.parametrize('density', [0.0, 0.1, 0.5, 1.0])
def test_segments_equal_dense(variant, density):
    """Every segment, output branches and exit logits everywhere, batch of 2 images with
    different masks, under every policy; the stages hold stride-2 fuse and transition
    convolutions."""
    model = randomise(tiny_model(variant))
    twin = copy.deepcopy(model).double()
    x = torch.randn(2, 3, 64, 96)
    branches = segment_inputs(model, x)
    for j in (1, 2, 3):
        masks = SmoothNoiseMasks(2, (16, 24), density, smoothness=4, seed=j)
        exact = exact_segment(twin, j, branches, masks)
        ref_branches, ref = dense_segment(model, j, branches, masks)
        assert exact.holds(segment_list((ref_branches, ref))), j
        for policy in sorted(POLICIES):
            inputs = [b.clone() for b in branches]
            got_branches, got = sparse_segment(model, j, branches, masks, POLICIES[policy])
            assert got.shape == ref.shape
            assert exact.holds(segment_list((got_branches, got))), (j, policy)
            assert all(torch.equal(a, b) for a, b in zip(inputs, branches))  # untouched
        branches = ref_branches


def kernel_without_negligible_weights(Lambda, square_dis):
    """The fill kernel as the sparse engine keeps it (kernels.fill_kernel)."""
    kernel = rbf_kernel(Lambda, square_dis)
    return torch.where(kernel >= kernel.max() * NEGLIGIBLE_FILL_WEIGHT, kernel,
                       torch.zeros_like(kernel))


@pytest.mark.parametrize('variant', ['ca', 'adpc'])
@pytest.mark.parametrize('density', [0.1, 0.5])
def test_segments_equal_dense_in_float64(variant, density, monkeypatch):
    """In float64 the dense network with the fill weights the engine drops (below 2^-24
    of the largest) dropped too differs from the engine by float64 rounding only."""
    model = randomise(tiny_model(variant)).double()
    x = torch.randn(2, 3, 64, 96, dtype=torch.float64)
    branches = segment_inputs(model, x)
    for j in (1, 2, 3):
        masks = SmoothNoiseMasks(2, (16, 24), density, smoothness=4, seed=j)
        with monkeypatch.context() as patch:
            patch.setattr(masked_conv, 'rbf_kernel', kernel_without_negligible_weights)
            exact = exact_segment(model, j, branches, masks, unit_roundoff=U64)
            ref_branches, _ = dense_segment(model, j, branches, masks)
        got_branches, got = sparse_segment(model, j, branches, masks, POLICIES['sparse'])
        assert got.dtype == torch.float64
        assert exact.holds(segment_list((got_branches, got))), j
        branches = ref_branches


@pytest.mark.parametrize('need_out', ['active', 'full'])
def test_exit_heads_in_blocks_of_pixels_equal_dense(monkeypatch, need_out):
    """Exit heads whose 1x1 convolutions run as a chain, in many blocks of pixels."""
    monkeypatch.setattr(engine, 'ROW_BLOCK_BYTES', 1)  # the smallest blocks: 64 pixels
    chains = []
    real = engine.SegmentEngine._pointwise_chain
    monkeypatch.setattr(engine.SegmentEngine, '_pointwise_chain', lambda self, chain, n, rows_at:
                        chains.append((len(chain), n)) or real(self, chain, n, rows_at))
    model = randomise(tiny_model('adpc'))
    twin = copy.deepcopy(model).double()
    x = torch.randn(2, 3, 64, 96)
    branches = segment_inputs(model, x)
    for j in (1, 2, 3):
        masks = SmoothNoiseMasks(2, (16, 24), 0.6, smoothness=4, seed=j)
        ref_branches, ref = dense_segment(model, j, branches, masks)
        _, got = sparse_segment(model, j, branches, masks, POLICIES['sparse'], need_out)
        # 'active': only the computed pixels' logits are defined.
        keep = masks.at(ref.shape[-2:]) > 0.5 if need_out == 'active' else 1
        exact = exact_segment(twin, j, branches, masks)
        exact.values = {0: exact.values[len(ref_branches)] * keep}
        exact.spreads = {0: exact.spreads[len(ref_branches)]}
        assert exact.holds([got * keep]) and exact.holds([ref * keep]), j
        branches = ref_branches
    assert any(length > 1 and n > 3 * 64 for length, n in chains)  # blocks of a chain


DEEP = ('MODEL.EXTRA.STAGE2.NUM_BLOCKS', [2, 2], 'MODEL.EXTRA.STAGE3.NUM_BLOCKS', [3, 1, 2],
        'MODEL.EXTRA.STAGE4.NUM_BLOCKS', [2, 2, 2, 2])


@pytest.mark.parametrize('lambdas', [(3.0,), (3.0, 2.0, 1.0), (0.5,)])
def test_deep_branches_and_fill_reaches_equal_dense(lambdas):
    """Several blocks per branch (the transform of far pixels composes), and RBF fills
    reaching 1, 2 or 3 pixels, alike or mixed within a branch."""
    model = randomise(tiny_model('adpc', *DEEP))
    masked = [m for m in model.modules() if isinstance(m, MaskedConv2d)]
    for k, conv in enumerate(masked):
        conv.Lambda.data.fill_(lambdas[k % len(lambdas)])
    twin = copy.deepcopy(model).double()
    x = torch.randn(2, 3, 64, 96)
    branches = segment_inputs(model, x)
    for j in (1, 2, 3):
        masks = SmoothNoiseMasks(2, (16, 24), 0.3, smoothness=4, seed=j)
        exact = exact_segment(twin, j, branches, masks)
        ref_branches, ref = dense_segment(model, j, branches, masks)
        assert exact.holds(segment_list((ref_branches, ref))), j
        for policy in ('sparse', 'mixed'):
            got_branches, got = sparse_segment(model, j, branches, masks, POLICIES[policy])
            assert exact.holds(segment_list((got_branches, got))), (j, policy)
        branches = ref_branches


def test_residual_branches_run_on_the_near_set(monkeypatch):
    """Branches of masked BasicBlocks, and the transitions feeding them, take the near-set
    path (equality alone would not show it: the general path gives the same outputs)."""
    calls = {'branch': 0, 'transition': 0}

    def spy(name, real):
        def run(*args):
            calls[name] += 1
            return real(*args)
        return run

    monkeypatch.setattr(engine, 'run_near_branch', spy('branch', engine.run_near_branch))
    monkeypatch.setattr(engine, 'transition_near_map',
                        spy('transition', engine.transition_near_map))
    model = randomise(tiny_model('adpc'))
    branches = segment_inputs(model, torch.randn(1, 3, 64, 96))
    masks = SmoothNoiseMasks(1, (16, 24), 0.3, smoothness=4, seed=1)
    sparse_segment(model, 1, branches, masks, POLICIES['sparse'])
    assert calls == {'branch': 2, 'transition': 2}  # stage 2: two branches, both new


@pytest.mark.parametrize('lam,reach', [(3.0, 1), (2.0, 2), (1.0, 3), (0.3, 3)])
def test_fill_reach_follows_lambda(lam, reach):
    conv = MaskedConv2d(2, 2, 3, padding=1, slot=MaskSlot())
    conv.Lambda.data.fill_(lam)
    kernel, got = fill_kernel(conv)
    full = rbf_kernel(conv.Lambda, conv.square_dis).detach()
    dropped = kernel == 0
    assert got == reach
    assert torch.equal(kernel[~dropped], full[~dropped])
    assert (full[dropped] < full.max() * NEGLIGIBLE_FILL_WEIGHT).all()
    centre = kernel.shape[-1] // 2
    beyond = torch.ones_like(dropped)
    beyond[centre - reach:centre + reach + 1, centre - reach:centre + reach + 1] = False
    assert dropped[beyond].all()
    assert fill_kernel(MaskedConv2d(2, 2, 3, padding=1, slot=MaskSlot(), rbf=False)) == (None, 0)


@pytest.mark.parametrize('size', [(7, 9), (1, 5), (16, 24)])
@pytest.mark.parametrize('radius', [1, 2, 3])
def test_rings_match_a_max_pool_dilation(size, radius):
    mask = (torch.rand(2, 1, *size) < 0.2).float()
    near = F.max_pool2d(mask, 2 * radius + 1, stride=1, padding=radius).reshape(-1) > 0.5
    geom = MaskGeometry(mask)
    assert torch.equal(geom.ring_mask(radius), near & (mask.reshape(-1) < 0.5))


@pytest.mark.parametrize('size', [(50, 70), (33, 65)])
def test_odd_sizes_equal_dense(size):
    model = randomise(tiny_model('ca'))
    twin = copy.deepcopy(model).double()
    x = torch.randn(1, 3, *size)
    branches = segment_inputs(model, x)
    quarter = branches[0].shape[-2:]
    for j in (1, 2, 3):
        masks = SmoothNoiseMasks(1, quarter, 0.3, smoothness=3, seed=j)
        exact = exact_segment(twin, j, branches, masks)
        ref_branches, ref = dense_segment(model, j, branches, masks)
        got_branches, got = sparse_segment(model, j, branches, masks, POLICIES['sparse'])
        assert exact.holds(segment_list((got_branches, got))), j
        assert exact.holds(segment_list((ref_branches, ref))), j
        branches = ref_branches


@pytest.mark.parametrize('stride,kernel,size', [(2, 3, (13, 17)), (1, 3, (9, 11)),
                                                (1, 1, (8, 10)), (2, 3, (16, 16))])
@pytest.mark.parametrize('density', [0.0, 0.2, 0.7, 1.0])
def test_one_masked_convolution(stride, kernel, size, density):
    torch.manual_seed(0)
    conv = MaskedConv2d(6, 5, kernel, stride=stride, padding=kernel // 2, bias=False,
                        slot=MaskSlot())
    conv.Lambda.data.fill_(0.5)
    bn = randomise(nn.Sequential(nn.BatchNorm2d(5)))[0]
    x = torch.randn(2, 6, *size)
    out_size = tuple((s + 2 * (kernel // 2) - kernel) // stride + 1 for s in size)
    masks = SmoothNoiseMasks(2, out_size, density, smoothness=2, seed=1)
    conv.slot.masks = masks
    layer = nn.Sequential(conv, bn, nn.ReLU())
    exact = Exact(lambda m: [m(x.double())], layer)
    with torch.no_grad():
        ref = layer(x)
    conv.slot.masks = None
    assert exact.holds([ref])
    for policy in POLICIES.values():
        with torch.no_grad():
            got = SegmentEngine(masks, policy).conv(conv, bn, channels_last(x), relu=True)
        assert exact.holds([got])


@pytest.mark.parametrize('stride', [1, 2])
def test_convolution_rows_in_blocks(monkeypatch, stride):
    """The im2col GEMM in many small blocks, padding taps among them, equals the
    convolution at the active pixels."""
    monkeypatch.setattr(kernels, 'ROW_BLOCK_BYTES', 1)  # the smallest blocks: 64 pixels
    x = torch.randn(2, 6, 23, 31)
    weight, bias = torch.randn(5, 6, 3, 3), torch.randn(5)
    ref = F.conv2d(x, weight, bias, stride=stride, padding=1)
    mask = (torch.rand(2, 1, *ref.shape[-2:]) < 0.7).float()
    geom = MaskGeometry(mask)
    taps = ConvTaps(geom, x.shape[-2:], 3, stride, 1)
    assert len(taps.blocks(64)) > 3 and taps.outside is not None
    matrix = weight.permute(0, 2, 3, 1).reshape(5, -1)
    got = conv_rows(flat_rows(channels_last(x)), taps, matrix, bias)
    exact, bound = exact_conv(x, weight, bias, stride=stride, padding=1)
    rows = [flat_rows(channels_last(t))[geom.active] for t in (ref, exact, bound)]
    assert ((got - rows[1]).abs() <= rows[2]).all()
    assert ((rows[0] - rows[1]).abs() <= rows[2]).all()


def test_convolution_rows_reuse_block_memory_safely():
    """Convolutions of other widths, in turn and from concurrent threads, each read only
    what they gathered into the reused block memory."""
    def case(channels, seed):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(1, channels, 40, 48, generator=g)
        weight = torch.randn(7, channels, 3, 3, generator=g)
        geom = MaskGeometry((torch.rand(1, 1, 40, 48, generator=g) < 0.5).float())
        taps = ConvTaps(geom, (40, 48), 3, 1, 1)
        matrix = weight.permute(0, 2, 3, 1).reshape(7, -1)
        exact, bound = (flat_rows(channels_last(t))[geom.active]
                        for t in exact_conv(x, weight, padding=1))
        return (lambda: conv_rows(flat_rows(channels_last(x)), taps, matrix),
                lambda got: bool(((got - exact).abs() <= bound).all()))

    cases = [case(c, seed) for seed, c in enumerate((64, 3, 32, 5))]
    for run, right in cases:
        assert right(run())
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(lambda r=run: [r() for _ in range(5)]) for run, _ in cases]
        for future, (_, right) in zip(futures, cases):
            assert all(right(got) for got in future.result())


@pytest.mark.parametrize('size,size_to', [((5, 7), (10, 14)), ((4, 6), (16, 24)),
                                          ((6, 9), (13, 17))])
@pytest.mark.parametrize('batch', [1, 2])
def test_resampling_matrix_equals_bilinear_upsampling(size, size_to, batch):
    x = torch.randn(batch, 3, *size)
    rows = torch.randperm(batch * size_to[0] * size_to[1])[:40]
    matrix = resample_matrix(rows, size_to, batch, size, [('resize', size_to)], x.dtype)
    exact = F.interpolate(x.double(), size=size_to, mode='bilinear', align_corners=False)
    got = torch.sparse.mm(matrix, flat_rows(channels_last(x)))
    assert (got - flat_rows(channels_last(exact))[rows]).abs().max() <= \
        bilinear_error_bound(x)


def untied_threshold(model, x):
    """A threshold between exit 1's two middle confidences. A threshold equal to a pixel's
    confidence (as a median is) would let float rounding decide that pixel's mask."""
    with torch.no_grad():
        conf = torch.softmax(model(x, stop_at=1)[0], dim=1).amax(dim=1).flatten().sort()[0]
    k = conf.numel() // 2
    return (conf[k - 1] + conf[k]).item() / 2


@pytest.mark.parametrize('variant', ['ee', 'rh', 'ca', 'adpc'])
@pytest.mark.parametrize('batch', [1, 3])
def test_models_equal_dense_with_confidence_masks(variant, batch):
    """Whole networks, masks from their own exits (about half the pixels confident)."""
    x = torch.randn(batch, 3, 64, 96)
    model = mixed_mask_model(variant, x)
    model.mask_threshold = untied_threshold(model, x)
    with torch.no_grad():
        model.execution = 'dense'
        ref, used = model(x, return_masks=True)
        # The float64 runs take the float32 run's masks: a pixel within rounding of the
        # threshold stays on its side.
        exact = exact_model(model, x, used if used[0] is not None else None)
        assert exact.holds(ref)
        for mode in ('sparse', 'auto'):
            model.execution = mode
            assert exact.holds(model(x)), mode


@pytest.mark.parametrize('opts', [('EXIT.FINAL_CONV_KERNEL', 3), ('MASK.AGGR', 'none'),
                                  ('MASK.INTERPOLATION', 'none')])
@pytest.mark.parametrize('variant', ['ca', 'adpc'])
def test_model_options_equal_dense(variant, opts):
    """A 3x3 classifier, no aggregation (skipped logits are read), no RBF fill."""
    x = torch.randn(2, 3, 64, 96)
    model = randomise(tiny_model(variant, *opts))
    masks = [SmoothNoiseMasks(2, (16, 24), d, smoothness=4, seed=j)
             for j, d in enumerate((0.7, 0.4, 0.2))]
    exact = exact_model(model, x, masks)
    with torch.no_grad():
        model.execution = 'dense'
        assert exact.holds(model(x, masks=masks))
        for mode in ('sparse', 'auto'):
            model.execution = mode
            assert exact.holds(model(x, masks=masks)), mode


def test_auto_falls_back_to_dense_above_break_even(monkeypatch):
    """'auto' gathers nothing when masks are full, and does where they are sparse."""
    policy = POLICIES['auto']
    conv3 = MaskedConv2d(4, 4, 3, padding=1, slot=MaskSlot())
    assert not policy.sparse(conv3, 1.0) and policy.sparse(conv3, 0.05)
    assert ExecutionPolicy('sparse').sparse(conv3, 1.0)
    assert not ExecutionPolicy.for_device('auto', torch.device('meta')).sparse(conv3, 0.0)

    calls = []
    for module in (engine, near_branch):
        monkeypatch.setattr(module, 'conv_rows', lambda *a, real=module.conv_rows, **k:
                            calls.append(1) or real(*a, **k))
    model = randomise(tiny_model('adpc'))
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        model(x, masks=[SmoothNoiseMasks(1, (16, 24), 1.0)] * 3)
        assert calls == []
        model(x, masks=[SmoothNoiseMasks(1, (16, 24), 0.05, smoothness=4)] * 3)
        assert calls


def test_no_state_between_calls():
    model = randomise(tiny_model('adpc'))
    keys = {k: v.shape for k, v in model.state_dict().items()}
    attributes = set(vars(model))
    x1, x2 = torch.randn(2, 3, 64, 96), torch.randn(1, 3, 32, 64)
    m1 = [SmoothNoiseMasks(2, (16, 24), d, smoothness=4, seed=int(d * 10)) for d in (0.8, 0.5, 0.2)]
    m2 = [SmoothNoiseMasks(1, (8, 16), d, smoothness=2, seed=3) for d in (0.3, 0.6, 0.9)]
    exact = exact_model(model, x2, m2)
    with torch.no_grad():
        model.execution = 'sparse'
        model(x1, masks=m1)
        got2 = model(x2, masks=m2)
    assert exact.holds(got2)
    assert {k: v.shape for k, v in model.state_dict().items()} == keys
    assert set(vars(model)) == attributes
    assert all(slot.masks is None for slot in model.mask_slots)


def test_changed_weights_are_folded_again():
    """Folded weights are cached between calls, never past a change of the weights."""
    model, other = randomise(tiny_model('ca'), seed=0), randomise(tiny_model('ca'), seed=1)
    x = torch.randn(1, 3, 64, 96)
    masks = [SmoothNoiseMasks(1, (16, 24), 0.4, smoothness=4, seed=j) for j in (1, 2, 3)]

    def outputs(mode):
        model.execution = mode
        with torch.no_grad():
            return model(x, masks=masks)

    outputs('sparse')
    model.load_state_dict(other.state_dict())  # in place: bumps version counters
    assert exact_model(model, x, masks).holds(outputs('sparse'))
    for p in model.parameters():  # through .data: no version bump, hence eval()
        p.data.mul_(0.5)
    model.eval()
    assert exact_model(model, x, masks).holds(outputs('sparse'))


def test_training_and_gradients_keep_the_dense_path(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError('the sparse engine ran')

    monkeypatch.setattr(model_anytime, 'run_segment', refuse)
    model = tiny_model('adpc', 'MASK.EXECUTION', 'sparse')
    x = torch.randn(1, 3, 64, 96)
    sum(o.sum() for o in model.train()(x)).backward()
    model.eval()(x)  # gradients enabled: dense
    with pytest.raises(AssertionError, match='sparse engine ran'), torch.no_grad():
        model(x)


def test_execution_key():
    cfg = tiny_cfg('adpc')
    assert cfg.MASK.EXECUTION == 'auto'
    assert tiny_model('adpc', 'MASK.EXECUTION', 'dense').execution == 'dense'
    cfg.defrost()
    cfg.MASK.EXECUTION = 'fast'  # merging refuses it (config.ALLOWED); the builder too
    with pytest.raises(ValueError, match='MASK.EXECUTION'):
        model_anytime.build_model(cfg)


def test_calibration_reports_a_measured_density(capsys):
    """``models.sparse.calibrate`` times both layers at the densities its bisection
    probes (0.2 first) and returns one of them (or 0: sparse never faster)."""
    found = break_even(3, 4, 4, 16, 16, densities=(0.2, 0.6), repeats=1)
    assert found in (0.0, 0.2, 0.6)
    printed = capsys.readouterr().out
    assert 'density 0.2' in printed and 'sparse' in printed and 'dense' in printed
    assert ('density 0.6' in printed) == (found != 0.0)  # probed once 0.2 was faster


def test_sync_batch_norm_in_eval_mode_is_folded():
    """After multi-GPU training's SyncBatchNorm conversion, validation runs the sparse
    engine with every BatchNorm folded (none runs on its own) and the same outputs."""
    model = randomise(tiny_model('adpc'))
    x = torch.randn(1, 3, 64, 96)
    masks = [SmoothNoiseMasks(1, (16, 24), d, smoothness=4, seed=j)
             for j, d in enumerate((0.7, 0.4, 0.2))]
    exact = exact_model(model, x, masks)
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(model).eval()
    ran = []
    for m in synced.modules():
        if isinstance(m, nn.SyncBatchNorm):
            m.register_forward_hook(lambda *args: ran.append(1))
    with torch.no_grad():
        synced.execution = 'sparse'
        got = synced(x, masks=masks)
    stem_and_exit1 = sum(isinstance(m, nn.SyncBatchNorm) for part in synced.parts()[0]
                         for m in part.modules())
    assert stem_and_exit1 > 0 and len(ran) == stem_and_exit1  # all after exit 1 folded
    assert exact.holds(got)


@pytest.mark.parametrize('variant', ['ca', 'adpc'])
@pytest.mark.parametrize('mode', ['dense', 'sparse', 'auto'])
def test_inference_under_autocast(variant, mode):
    """bf16 autocast (fp16 on CUDA takes the same path) in every execution mode: the
    engine runs its segments in bf16 where the CPU has units, else in float32
    (test_sparse_precision.py), and the logits stay within bf16's rounding of
    the exact result: float64 runs with the errors of convolutions that read bf16
    inputs (tests/models/rounding.py). Fixed masks: confidence masks would flip at
    pixels near the threshold, where the logits then differ by design."""
    x = torch.randn(1, 3, 64, 96)
    model = randomise(tiny_model(variant, 'MASK.EXECUTION', mode))
    masks = [SmoothNoiseMasks(1, (16, 24), d, smoothness=4, seed=j)
             for j, d in enumerate((0.7, 0.4, 0.2))]
    exact = exact_model(model, x, masks, unit_roundoff=BF16_U, rounded_inputs=True)
    with torch.no_grad():
        with torch.autocast('cpu', dtype=torch.bfloat16):
            got = model(x, masks=masks)
            model(x)  # confidence masks from bf16 logits
    assert got[0].dtype == torch.bfloat16
    assert exact.holds(got)


def test_auto_means_dense_on_a_device_without_break_even(monkeypatch, caplog):
    """'auto' on a device type never calibrated (CUDA today) skips the engine, and says
    so once."""
    def refuse(*args, **kwargs):
        raise AssertionError('the sparse engine ran')

    monkeypatch.setattr(model_anytime, 'run_segment', refuse)
    monkeypatch.delitem(policy_module.BREAK_EVEN, 'cpu')
    model = tiny_model('adpc').eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad(), caplog.at_level('INFO', logger='models.model_anytime'):
        model(x)
        model(x)
    said = [r for r in caplog.records if "'auto' runs dense on cpu" in r.getMessage()]
    assert len(said) == 1
    model.execution = 'sparse'  # an explicit choice still runs the engine
    with pytest.raises(AssertionError, match='sparse engine ran'), torch.no_grad():
        model(x)
