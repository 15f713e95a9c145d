"""tools/benchmark.py times every run in float32 and, with --amp or TEST.AMP True, under
autocast too (interleaved, channels-last, RH included), says what computes the reduced
precision, and compares ADP-C and RH each at its best precision. Behaviour only: the
tiny model's timings mean nothing."""
import json
import os
import sys

import pytest
import torch

from models.layout import to_inference
from models.sparse.benchmark import benchmark_end_to_end, benchmark_segments
from utils.runtime import reduced_precision_units

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TESTS, '..', 'tools'))
sys.path.insert(0, os.path.join(TESTS, 'models'))
import benchmark  # noqa: E402  (tools/benchmark.py)
from tiny import TINY_STAGES, tiny_model  # noqa: E402

DTYPES = (torch.float32, torch.bfloat16)


def recording_first_convs(model):
    """(which network, autocast on?, input channels-last?) of every forward, read at the
    first convolution (the hook travels with RH's deep copy)."""
    seen = []

    def hook(conv, args):
        seen.append((conv is model.conv1, torch.is_autocast_enabled('cpu'),
                     args[0].is_contiguous(memory_format=torch.channels_last)))
    model.conv1.register_forward_pre_hook(hook)
    return seen


def test_end_to_end_times_every_run_in_both_precisions_channels_last():
    model = to_inference(tiny_model('adpc'))
    seen = recording_first_convs(model)
    x = torch.randn(1, 3, 64, 96)
    e2e = benchmark_end_to_end(model, x, [0.8, 0.6, 0.35], warmup=0, repeats=1, smoothness=2,
                               dtypes=DTYPES)
    runs = {'dense', 'sparse', 'auto', 'RH'}
    assert set(e2e['seconds']) == runs | {f'{r} bfloat16' for r in runs}
    assert {(adpc, amp) for adpc, amp, _ in seen} == {(a, b) for a in (True, False)
                                                      for b in (True, False)}
    assert all(channels_last for _, _, channels_last in seen)
    best, seconds = e2e['best'], e2e['seconds']
    assert best['adpc'] == min(('auto', 'auto bfloat16'), key=seconds.get)
    assert best['rh'] == min(('RH', 'RH bfloat16'), key=seconds.get)
    assert best['speedup'] == seconds[best['rh']] / seconds[best['adpc']]
    # Speed-ups are against RH of the same precision.
    assert e2e['speedup_vs_rh']['auto bfloat16'] == seconds['RH bfloat16'] / \
        seconds['auto bfloat16']
    # The agreement is checked in float32 alone, untouched by the autocast runs.
    alone = benchmark_end_to_end(model, x, [0.8, 0.6, 0.35], warmup=0, repeats=1,
                                 smoothness=2)
    assert e2e['max_rel_diff'] == alone['max_rel_diff']


def test_segments_get_a_row_per_precision():
    model = to_inference(tiny_model('adpc'))
    rows = benchmark_segments(model, torch.randn(1, 3, 64, 96), [0.5], warmup=0, repeats=1,
                              smoothness=2, log=lambda line: None, dtypes=DTYPES)
    assert [(r['segment'], r['dtype']) for r in rows] == \
        [(j, d) for j in (1, 2, 3) for d in ('float32', 'bfloat16')]
    for float32, bfloat16 in zip(rows[::2], rows[1::2]):
        assert float32['max_rel_diff'] == bfloat16['max_rel_diff']  # checked in float32
        assert set(bfloat16['seconds']) == {'dense', 'sparse', 'auto'}


def run_tool(monkeypatch, tmp_path, *extra):
    out = tmp_path / 'benchmark.json'
    tiny = [str(o) for o in TINY_STAGES] + ['MODEL.PRETRAINED', '', 'EXIT.INTER_CHANNEL', '8']
    monkeypatch.setattr(sys, 'argv', [
        'benchmark.py', '--cfg', 'experiments/cityscapes/w48_adpc.yaml', '--shape', '32', '32',
        '--skip-segments', '--warmup', '0', '--repeats', '1', '--json', str(out), *tiny,
        *extra])
    benchmark.main()
    return json.loads(out.read_text())


@pytest.mark.parametrize('extra', [['--amp'], ['TEST.AMP', 'True']], ids=['--amp', 'TEST.AMP'])
def test_the_tool_times_both_precisions_and_names_the_units(monkeypatch, tmp_path, capsys,
                                                            extra):
    result = run_tool(monkeypatch, tmp_path, *extra)
    units = reduced_precision_units(torch.device('cpu')) or 'none: bfloat16 emulated'
    machine = result['machine']
    assert machine['reduced_precision_units'] == units
    assert machine['dtypes'] == ['float32', 'bfloat16'] and machine['layout'] == 'channels-last'
    assert set(result['end_to_end']['seconds']) >= {'auto bfloat16', 'RH bfloat16'}
    printed = capsys.readouterr().out
    assert f'bfloat16 units: {units}' in printed
    assert 'ADP-C at its best (' in printed and 'RH at its best (' in printed


def test_without_amp_only_float32_and_emulation_is_said(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(benchmark, 'reduced_precision_units', lambda device: None)
    result = run_tool(monkeypatch, tmp_path)
    assert result['machine']['dtypes'] == ['float32']
    assert set(result['end_to_end']['seconds']) == {'dense', 'sparse', 'auto', 'RH'}
    assert result['end_to_end']['best']['adpc'] == 'auto'
    assert 'bfloat16 units: none: bfloat16 emulated' in capsys.readouterr().out
