import json
import os
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(__file__))
from test_state_dict_manifests import build_on_meta  # noqa: E402
from tiny import mixed_mask_model, tiny_model  # noqa: E402
from models.masked_conv import MaskedConv2d  # noqa: E402
from models.flops import FlopsCounter, anytime_flops  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), '..', 'data')
with open(os.path.join(DATA, 'reference_figures.json')) as f:
    REFERENCE = json.load(f)['code']


@pytest.mark.parametrize('net,variant,key', [('w48', 'ee', 'w48_ee'), ('w48', 'rh', 'w48_rh_inter128'),
                                             ('w18', 'ee', 'w18_ee'), ('w18', 'rh', 'w18_rh_inter64')])
def test_reference_figures_at_1024x2048(net, variant, key):
    figures = anytime_flops(build_on_meta(net, variant), torch.empty(1, 3, 1024, 2048, device='meta'))
    assert figures['params'] == REFERENCE[key]['params']
    for ours, reference in zip(figures['gflops'], REFERENCE[key]['gflops']):
        assert abs(ours - reference) <= 0.05 + 1e-9  # the reference is rounded to 0.1


def test_unmasked_adpc_upper_bound_equals_rh():
    adpc = anytime_flops(build_on_meta('w48', 'adpc'), torch.empty(1, 3, 1024, 2048, device='meta'))
    assert [round(g, 1) for g in adpc['gflops']] == REFERENCE['w48_rh_inter128']['gflops']


@pytest.mark.parametrize('variant', ['ee', 'rh'])
def test_dense_counts_match_torch_flop_counter(variant):
    model = tiny_model(variant).eval()
    x = torch.randn(1, 3, 64, 96)
    ours = anytime_flops(model, x)['gflops']
    for k in range(1, 5):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x, stop_at=k)
        convs = sum(v for op, v in counter.get_flop_counts()['Global'].items()
                    if 'convolution' in str(op))
        assert convs > 0
        # Whole multiply-add counts below 2^53, scaled by powers of 2: exact in float64.
        assert ours[k - 1] * 1024 ** 3 * 2 == convs


def test_model_left_as_it_was():
    model = tiny_model('adpc').train()
    anytime_flops(model, torch.randn(1, 3, 32, 32))
    assert model.training
    assert all(not m._forward_hooks for m in model.modules())


def test_masked_figures_follow_mask_density():
    x = torch.randn(1, 3, 64, 64)
    model = mixed_mask_model('adpc', x)
    lambdas = [sum(isinstance(m, MaskedConv2d) for top in part for m in top.modules())
               for part in model.parts()]
    rh = tiny_model('rh')
    rh.load_state_dict(model.state_dict(), strict=False)
    dense = anytime_flops(rh, x)
    mixed = anytime_flops(model, x)
    # Parameters: the unmasked network's plus one Lambda per masked convolution.
    assert mixed['params'] == [p + sum(lambdas[:k + 1]) for k, p in enumerate(dense['params'])]
    assert mixed['gflops'][0] == dense['gflops'][0]
    assert all(m < d for m, d in zip(mixed['gflops'][1:], dense['gflops'][1:]))
    model.mask_threshold = 1.0  # every pixel computed: the dense cost
    # Density 1 and no fill: dense·1 + fill·0, the same float64 figures.
    assert anytime_flops(model, x)['gflops'] == dense['gflops']
    model.mask_threshold = 0.0  # nothing computed after exit 1: neither convs nor fills
    assert anytime_flops(model, x)['gflops'] == [dense['gflops'][0]] * 4


def test_masked_convolution_cost_formula():
    from models.flops import conv_multiply_adds

    class Half:
        def at(self, size):
            mask = torch.zeros(1, 1, *size)
            mask[..., : size[0] // 2, :] = 1
            return mask

    conv = MaskedConv2d(4, 6, 3, padding=1)
    conv.slot.masks = Half()
    out = torch.empty(1, 6, 10, 8)
    dense = 6 * 4 * 9 * 10 * 8
    assert conv_multiply_adds(conv, out) == int(dense * 0.5) + int(0.5 * 0.5 * 6 * 49 * 10 * 8)
    conv.rbf = False
    assert conv_multiply_adds(conv, out) == int(dense * 0.5)


def _counted(model, x):
    counter = FlopsCounter(model)
    with torch.no_grad():
        outputs, masks = model(x, return_masks=True)
    assert len(outputs) == 4 and len(masks) == 3
    return counter.gflops(x.shape, masks), counter.params(x.shape[-2:]), masks


@pytest.mark.parametrize('variant', ['ee', 'rh', 'ca', 'adpc'])
def test_counter_on_the_forwards_own_masks_equals_anytime_flops(variant):
    torch.manual_seed(1)
    x = torch.randn(4, 3, 64, 96)
    model = mixed_mask_model(variant, x)
    # Off the median confidence, so that no pixel sits on the threshold, where batch 1
    # and batch 4 (equal to ~1e-7) could choose differently.
    model.mask_threshold += 1e-3
    model.execution = 'dense'
    references = [anytime_flops(model, x[i:i + 1]) for i in range(4)]
    for batch in (1, 4):
        gflops, params, masks = _counted(model, x[:batch])
        assert all((m is None) == (variant in ('ee', 'rh')) for m in masks)
        assert gflops.shape == (batch, 4)
        for i in range(batch):  # exactly, image by image
            assert gflops[i].tolist() == references[i]['gflops']
            assert params == references[i]['params']
    if variant in ('ca', 'adpc'):  # the masks differ per image, and so do the costs
        assert len(set(gflops[:, 3].tolist())) == 4


def test_counter_reads_the_masks_of_sparse_execution():
    torch.manual_seed(1)
    x = torch.randn(2, 3, 64, 96)
    model = mixed_mask_model('adpc', x)
    model.mask_threshold += 1e-3  # as above: sparse and dense logits agree to ~1e-6
    model.execution = 'sparse'
    gflops, _, masks = _counted(model, x)
    assert isinstance(masks[0].logits, torch.Tensor)
    model.execution = 'dense'
    for i in range(2):
        assert gflops[i].tolist() == anytime_flops(model, x[i:i + 1])['gflops']


def test_counter_tabulates_each_input_size_once():
    model = tiny_model('adpc').eval()
    counter = FlopsCounter(model)
    for size in [(32, 64), (64, 64), (32, 64)]:
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            _, masks = model(x, return_masks=True)
        assert counter.gflops(x.shape, masks)[0].tolist() == anytime_flops(model, x[:1])['gflops']
    assert sorted(counter._tables) == [(32, 64), (64, 64)]


def test_frozen_parameters_count_as_parameters():
    model = tiny_model('adpc').eval()
    x = torch.randn(1, 3, 64, 64)
    reference = anytime_flops(model, x)['params']
    for p in model.parameters():  # as after TRAIN.EE_ONLY: the backbone frozen
        p.requires_grad_(False)
    for head in (model.exit1, model.exit2, model.exit3):
        head.requires_grad_(True)
    assert anytime_flops(model, x)['params'] == reference
    assert FlopsCounter(model).params(x.shape[-2:]) == reference


def test_sync_batchnorm_counts_as_batchnorm():
    model = tiny_model('adpc').eval()
    x = torch.randn(1, 3, 64, 64)
    reference = anytime_flops(model, x)
    synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model).eval()
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in synced.modules())
    assert anytime_flops(synced, x) == reference
    assert FlopsCounter(synced).params(x.shape[-2:]) == reference['params']


# Mask density of each segment (after exit 1, 2, 3) at each map height (64 x 64 input:
# branches at 16, 8, 4, 2; flex heads pool down to 1): every size its own density.
DENSITIES = {1: {16: 0.5, 8: 0.25, 4: 0.75, 2: 0.5, 1: 1.0},
             2: {16: 0.25, 8: 0.625, 4: 0.5, 2: 1.0, 1: 0.0},
             3: {16: 0.75, 8: 0.5, 4: 0.25, 2: 0.0, 1: 1.0}}


class RowMasks:
    """Masks whose first rows are 1: density ``densities[h]`` at height h, exactly."""

    def __init__(self, densities):
        self.densities = densities

    def at(self, size):
        h, w = size
        mask = torch.zeros(1, 1, h, w)
        mask[..., :round(self.densities[h] * h), :] = 1
        return mask


def with_masks_per_size(model):
    """Make segment j of every forward run under ``RowMasks(DENSITIES[j])``."""
    calls = []

    def segment_masks(logits):
        calls.append(None)
        return RowMasks(DENSITIES[(len(calls) - 1) % 3 + 1])
    model.segment_masks = segment_masks
    return model


@pytest.mark.parametrize('variant', ['ca', 'adpc'])
def test_masked_figures_with_a_density_per_size(variant):
    x = torch.randn(1, 3, 64, 64)
    model = with_masks_per_size(tiny_model(variant, 'MASK.EXECUTION', 'dense').eval())
    convs = []  # (exit, conv, output height, output width) of every convolution run
    part_of = {m: k for k, part in enumerate(model.parts(), start=1) for top in part
               for m in top.modules()}
    handles = [m.register_forward_hook(
        lambda m, i, out: convs.append((part_of[m], m) + tuple(out.shape[-2:])))
        for m in part_of if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    by_exit = [0.0] * 4
    for k, conv, h, w in convs:
        dense = conv.weight.numel() * h * w
        if k == 1:
            by_exit[0] += dense
        else:  # segment k - 1: its density at this output size, plus the RBF fill
            p = DENSITIES[k - 1][h]
            by_exit[k - 1] += dense * p + (1 - p) * p * conv.out_channels * 49 * h * w
    assert {h for _, conv, h, _ in convs if isinstance(conv, MaskedConv2d)} >= {16, 8, 4, 2}
    expected = [sum(by_exit[:k]) / 1024 ** 3 for k in range(1, 5)]
    # The same float64 terms summed in another order: n·u relative for n terms.
    assert anytime_flops(model, x)['gflops'] == pytest.approx(
        expected, rel=2 * len(convs) * 2.0 ** -53)
