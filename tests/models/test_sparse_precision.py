"""The sparse engine in bfloat16 (TEST.AMP on a CPU with bfloat16 units, autocast).

Its results are held to the reach of bfloat16 rounding, measured in the same run as
tests/models/rounding.py measures float32's: a float64 run of the dense network with
the errors of convolutions that read bfloat16 inputs. Emulated bfloat16 (a CPU without
units, ``ONEDNN_MAX_CPU_ISA=AVX2``) rounds the same values, only slower, so these tests
force the engine's type and run on every CPU.
"""
import copy

import pytest
import torch

import models.model_anytime as model_anytime
import models.sparse.precision as precision
from models.sparse import FoldedWeights
from models.sparse.geometry import FillPattern, MaskGeometry
from models.sparse.kernels import per_channel_, rbf_fill_rows
from models.sparse.noise_masks import SmoothNoiseMasks
from rounding import BF16_U, SAFETY
from test_sparse import POLICIES, Exact, dense_segment, randomise, segment_inputs, \
    segment_list, sparse_segment
from tiny import tiny_model

pytestmark = pytest.mark.numerics


def reach(exact, k):
    """How far a run may be from exact output ``k`` (SAFETY x the measured spread)."""
    return SAFETY * exact.spreads[k]


def largest_diff(a, b):
    return (a.double() - b.double()).abs().max().item()


@pytest.mark.parametrize('variant', ['ca', 'adpc'])
@pytest.mark.parametrize('policy', ['sparse', 'mixed'])
def test_segments_in_bfloat16_equal_dense_in_bfloat16_and_float32(variant, policy):
    """Every segment in bfloat16: within bfloat16's reach of the exact result, of the
    dense segment under bfloat16 autocast (both may err by that reach) and of float32
    (which errs by float32's)."""
    model = randomise(tiny_model(variant))
    twin = copy.deepcopy(model).double()
    x = torch.randn(2, 3, 64, 96)
    branches = segment_inputs(model, x)
    for j in (1, 2, 3):
        masks = SmoothNoiseMasks(2, (16, 24), 0.5, smoothness=4, seed=j)
        run = lambda m: segment_list(dense_segment(m, j, [b.double() for b in branches],
                                                   masks))  # noqa: E731
        bf16 = Exact(run, twin, unit_roundoff=BF16_U, rounded_inputs=True)
        fp32 = Exact(run, twin)
        float32 = segment_list(dense_segment(model, j, branches, masks))
        with torch.autocast('cpu', dtype=torch.bfloat16):
            dense = segment_list(dense_segment(model, j, branches, masks))
        got = segment_list(sparse_segment(model, j, branches, masks, POLICIES[policy],
                                          dtype=torch.bfloat16))
        assert all(g.dtype == torch.bfloat16 for g in got)  # computed in bfloat16
        assert bf16.holds(got), j
        for k, (g, d, f) in enumerate(zip(got, dense, float32)):
            assert largest_diff(g, d) <= 2 * reach(bf16, k), (j, k)
            assert largest_diff(g, f) <= reach(bf16, k) + reach(fp32, k), (j, k)
        branches = [b.float() for b in float32[:-1]]


@pytest.fixture
def engine_dtypes(monkeypatch):
    """The types the model's sparse segments ran in, with ``units`` what the CPU has
    (``reduced_precision_units``)."""
    seen = []
    real = model_anytime.run_segment

    def spy(*args, **kwargs):
        branches, out = real(*args, **kwargs)
        seen.append(out.dtype)
        return branches, out

    monkeypatch.setattr(model_anytime, 'run_segment', spy)
    monkeypatch.setattr(precision, '_reported', set())
    return seen


@pytest.mark.parametrize('units', ['avx512_bf16', None])
def test_autocast_runs_the_engine_in_bfloat16_only_with_units(engine_dtypes, monkeypatch,
                                                              caplog, units):
    """Under bf16 autocast the engine computes in bfloat16 where the CPU has units; where
    it has none, in float32, said once; without autocast, in float32."""
    monkeypatch.setattr(precision, 'reduced_precision_units', lambda device: units)
    model = randomise(tiny_model('adpc', 'MASK.EXECUTION', 'sparse'))
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad(), caplog.at_level('INFO', logger='models.sparse.precision'):
        with torch.autocast('cpu', dtype=torch.bfloat16):
            model(x)
            model(x)
        model(x)
    expected = torch.bfloat16 if units else torch.float32
    assert engine_dtypes == [expected] * 6 + [torch.float32] * 3
    said = [r.getMessage() for r in caplog.records if 'no bfloat16 units' in r.getMessage()]
    assert len(said) == (0 if units else 1)


def test_folded_weights_are_kept_per_type():
    """A bfloat16 folded weight is the float32 one rounded once; both stay cached."""
    model = randomise(tiny_model('adpc'))
    conv, bn = model.stage2[0].branches[0][0].conv1, model.stage2[0].branches[0][0].bn1
    cache = FoldedWeights()
    fp32 = cache.get(conv, bn)
    bf16 = cache.get(conv, bn, torch.bfloat16)
    assert fp32.ohwi.dtype == torch.float32 and bf16.ohwi.dtype == torch.bfloat16
    assert torch.equal(bf16.ohwi, fp32.ohwi.to(torch.bfloat16))
    assert torch.equal(bf16.outer, fp32.outer.to(torch.bfloat16))
    assert bf16.fill.dtype == torch.float32  # the fill sums in float32
    assert cache.get(conv, bn) is fp32 and cache.get(conv, bn, torch.bfloat16) is bf16


@pytest.mark.parametrize('compact', [True, False])
def test_bfloat16_fill_sums_in_float32(compact):
    """The RBF fill of bfloat16 rows is the float32 fill of the same values, rounded once
    (no bfloat16 sum of up to 49 terms)."""
    torch.manual_seed(0)
    mask = (torch.rand(2, 1, 12, 10) < 0.4).float()
    geom = MaskGeometry(mask)
    skipped = (mask.reshape(-1) == 0).nonzero().squeeze(1)
    pattern = FillPattern(geom, skipped, radius=3)
    kernel = torch.rand(7, 7)
    rows = geom.active.numel() if compact else geom.numel
    z = torch.randn(rows, 5).to(torch.bfloat16)
    got = rbf_fill_rows(pattern, z, kernel, compact)
    want = rbf_fill_rows(pattern, z.float(), kernel, compact)
    assert got.dtype == torch.bfloat16 and torch.equal(got, want.to(torch.bfloat16))


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
@pytest.mark.parametrize('op', ['add_', 'clamp_min_'])
@pytest.mark.parametrize('shape', [(2, 48, 5, 7), (1, 48, 4, 4), (2, 96, 3, 3), (7, 48)])
def test_per_channel_ops_equal_broadcasting(dtype, op, shape):
    """Per-channel ops on maps or rows viewed several rows at a time give the broadcast
    op's values, channels-last or not."""
    torch.manual_seed(0)
    values = torch.randn(shape[1]).to(dtype)
    layouts = [torch.channels_last, torch.contiguous_format] if len(shape) == 4 else \
        [torch.contiguous_format]
    for layout in layouts:
        x = torch.randn(shape).to(dtype).contiguous(memory_format=layout)
        want = getattr(x.clone(), op)(values.view(1, -1, *[1] * (len(shape) - 2)))
        got = per_channel_(op, x, values)
        assert got is x and torch.equal(got, want)
