"""The benchmark library runs on a tiny model and reports agreeing outputs (no timing checks)."""
import os
import sys

import pytest
import torch

import models.sparse.engine as engine
import models.sparse.near_branch as near_branch

sys.path.insert(0, os.path.dirname(__file__))
from rounding import SAFETY, exact_and_spread  # noqa: E402
from tiny import tiny_model  # noqa: E402
from models.sparse.benchmark import _forward, _segment_inputs, benchmark_end_to_end, \
    benchmark_evaluation, benchmark_segments, end_to_end_table, logit_size, \
    segment_runner, segment_table  # noqa: E402
from models.sparse.noise_masks import SmoothNoiseMasks  # noqa: E402


# Float32 results held to bounds that other summation orders must also meet.
pytestmark = pytest.mark.numerics


def agreement_reach(run, model):
    """The largest ``max_rel_diff`` two float32 runs of ``run`` (a model -> list of
    outputs) may show: each within SAFETY x the spread of float64 runs with float32
    rounding errors from the exact result (tests/models/rounding.py), over the scale the
    benchmark divides by, max(1, largest |output|)."""
    with torch.no_grad():
        exact, spread = exact_and_spread(lambda m: dict(enumerate(run(m))), model)
    return max(2 * SAFETY * spread[k] / max(1.0, exact[k].abs().max().item() -
                                            SAFETY * spread[k]) for k in exact)


def segment_reach(model, x, j, density, smoothness):
    """``agreement_reach`` of segment j as benchmark_segments runs it (its masks, its
    outputs: branches and the logits at computed pixels)."""
    masks = SmoothNoiseMasks(x.shape[0], logit_size(x.shape), density, smoothness, seed=j)
    active = masks.at(logit_size(x.shape))

    def run(m):
        branches, out = segment_runner(m, j, _segment_inputs(m, x.double())[j - 1], masks,
                                       'dense')()
        return list(branches) + [out * active]
    return agreement_reach(run, model)


@pytest.fixture
def kernel_calls(monkeypatch):
    """Calls of the sparse engine's GEMM kernels, by kernel name (the agreement figures
    are 0 when nothing runs sparse, so they alone cannot show that it did)."""
    calls = {'conv_rows': 0, 'rows_matmul': 0}

    def counted(module, name):
        real = getattr(module, name)

        def kernel(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)
        monkeypatch.setattr(module, name, kernel)

    counted(engine, 'conv_rows')
    counted(engine, 'rows_matmul')
    counted(near_branch, 'conv_rows')
    return calls


def test_benchmark_reports_every_segment_and_exit(kernel_calls):
    torch.manual_seed(0)
    model = tiny_model('adpc').eval()
    x = torch.randn(1, 3, 64, 96)
    rows = benchmark_segments(model, x, [0.0, 0.5], warmup=0, repeats=1, smoothness=2,
                              log=lambda line: None)
    assert [(r['segment'], r['density']) for r in rows] == \
        [(j, d) for j in (1, 2, 3) for d in (0.0, 0.5)]
    for r in rows:
        assert set(r['seconds']) == {'dense', 'sparse', 'auto'}
        assert r['max_rel_diff'] <= segment_reach(model, x, r['segment'], r['density'], 2)
        assert 0 <= r['flops_ratio'] <= 1
    assert rows[0]['flops_ratio'] == 0  # nothing computed at density 0
    assert kernel_calls['conv_rows'] > 0 and kernel_calls['rows_matmul'] > 0
    kernel_calls.update(conv_rows=0, rows_matmul=0)
    densities = [0.8, 0.6, 0.35]
    e2e = benchmark_end_to_end(model, x, densities, warmup=0, repeats=1, smoothness=2)
    masks = [SmoothNoiseMasks(1, logit_size(x.shape), d, 2, seed=j)
             for j, d in enumerate(densities, start=1)]
    e2e_reach = agreement_reach(lambda m: _forward(m, x.double(), masks, 'dense')[0], model)
    assert set(e2e['exit_latency_s']) == {'dense', 'sparse', 'auto', 'RH'}
    assert all(len(v) == 4 for v in e2e['exit_latency_s'].values())
    assert e2e['max_rel_diff'] <= e2e_reach and 0 < e2e['flops_ratio'] < 1
    assert kernel_calls['conv_rows'] > 0 and kernel_calls['rows_matmul'] > 0
    assert segment_table(rows).count('\n') == len(rows) + 1
    assert 'RH' in end_to_end_table(e2e)


def test_evaluation_benchmark_times_forward_and_counting():
    model = tiny_model('adpc').eval()
    ev = benchmark_evaluation(model, torch.randn(1, 3, 64, 64), [0.8, 0.6, 0.35], warmup=0,
                              repeats=1, smoothness=2)
    assert all(ev[k] > 0 for k in ('forward', 'evaluation', 'forward_and_hooks', 'cost_table'))
    assert ev['overhead'] == ev['evaluation'] / ev['forward'] - 1
