"""tools/gpu_check.py: its CPU run passes, and each fault it is meant to catch makes the
check that covers it fail, by name, while the other checks still run."""
import ast
import importlib
import json
import os
import subprocess
import sys
import time

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, 'tools'))
import gpu_check  # noqa: E402  (tools/gpu_check.py)
from gpu_checks import prepare, speed  # noqa: E402
from gpu_checks.processes import run_logged  # noqa: E402

TOOL_TIMEOUT = 300
CORRECTNESS = [c.name for c in gpu_check.CHECKS if c.kind == 'correctness']
SPEED = [c.name for c in gpu_check.CHECKS if c.kind == 'speed']


def run_tool(out, *args):
    """tools/gpu_check.py --device cpu with ``args``: (process, JSON entries by name)."""
    path = os.path.join(out, 'checks.json')
    proc = subprocess.run([sys.executable, 'tools/gpu_check.py', '--device', 'cpu', '--out',
                           out, '--json', path, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=TOOL_TIMEOUT)
    with open(path) as f:
        return proc, {entry['name']: entry for entry in json.load(f)}


@pytest.fixture(scope='module')
def cpu_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('gpu_check'))
    proc, entries = run_tool(out)
    return out, proc, entries


def test_the_cpu_run_passes_every_correctness_check_and_skips_the_timings(cpu_run):
    out, proc, entries = cpu_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(entries) == [c.name for c in gpu_check.CHECKS]
    assert [n for n, e in entries.items() if e['status'] == 'passed'] == CORRECTNESS
    assert len(CORRECTNESS) >= 6
    assert all(entries[n]['status'] == 'skipped' for n in SPEED)
    for name in CORRECTNESS:
        entry = entries[name]
        assert set(entry) >= {'name', 'status', 'figures', 'seconds', 'log', 'message'}
        assert os.path.isfile(entry['log']) and entry['seconds'] > 0
        assert name in proc.stdout  # the table
    assert f'logs and results in {out}' in proc.stdout
    reference = entries['reference_adpc']['figures']
    assert reference['tf32'] is False and 0 < reference['worst_diff_over_tolerance'] <= 1
    assert min(reference['mask_agreement'].values()) >= 0.999
    # Mixed masks: the sparse engine had active and skipped pixels to compute.
    assert all(0 < d < 1 for d in reference['own_mask_density'])
    fp16 = entries['autocast_fp16']['figures']
    assert fp16['overflow'] is False and 0 < fp16['max_abs_activation_float32'] < 65504
    assert entries['train_amp_resume']['figures']['epochs'] == 2
    assert len(entries['evaluate_run']['figures']['miou_per_exit']) == 4


@pytest.mark.parametrize('fault', ['sparse-gather-shift', 'sparse-no-fill'])
def test_a_fault_in_the_sparse_engine_fails_the_reference_check(tmp_path, fault):
    proc, entries = run_tool(str(tmp_path), '--only', 'reference_adpc', '--inject-fault', fault)
    assert proc.returncode == 1
    entry = entries['reference_adpc']
    assert entry['status'] == 'failed'
    assert entry['message'].startswith('sparse: exit') and 'differs from the CPU float' in \
        entry['message']
    assert 'dense:' not in entry['message']  # the dense path is untouched by the fault
    assert 'reference_adpc FAILED' in proc.stdout


def test_an_fp16_overflow_is_reported_by_name_and_the_next_check_runs(cpu_run):
    out = cpu_run[0]  # its briefly trained model is reused
    proc, entries = run_tool(out, '--only', 'autocast_fp16,autocast_bf16',
                             '--inject-fault', 'fp16-overflow')
    assert proc.returncode == 1
    fp16 = entries['autocast_fp16']
    assert fp16['status'] == 'failed' and fp16['figures']['overflow'] is True
    assert fp16['message'].startswith('overflow: float16 autocast gives inf/NaN')
    assert 'first in the output of conv1' in fp16['message']
    assert entries['autocast_bf16']['status'] == 'passed'  # bfloat16 has float32's range


def test_a_check_that_crashes_is_failed_with_its_log(tmp_path):
    proc, entries = run_tool(str(tmp_path), '--only', 'reference_ca', '--inject-fault', 'bogus')
    entry = entries['reference_ca']
    assert proc.returncode == 1 and entry['status'] == 'failed'
    assert 'before reporting a result' in entry['message']
    assert "unknown fault 'bogus'" in entry['log_tail']


def test_a_command_past_its_time_limit_is_stopped(tmp_path):
    start = time.monotonic()
    status, _ = run_logged([sys.executable, '-c', 'import time; time.sleep(60)'],
                           str(tmp_path / 'sleep.log'), timeout=1)
    assert status is None and time.monotonic() - start < 20


def test_cuda_without_a_gpu_is_one_error_line():
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='')
    proc = subprocess.run([sys.executable, 'tools/gpu_check.py'], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith('error: --device cuda: no CUDA device is visible')


def test_the_time_limits_fit_six_minutes_and_every_check_exists():
    assert sum(c.limit_s for c in gpu_check.CHECKS) <= 360
    for check in gpu_check.CHECKS:
        module, function = check.target.split(':')
        assert callable(getattr(importlib.import_module(f'gpu_checks.{module}'), function))


def test_the_timings_run_on_the_cpu_with_tiny_shapes(tmp_path):
    """What only CUDA runs of speed.py is its device: the same functions run here."""
    setup = prepare.setup_for('cpu', out=str(tmp_path))
    saved = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as gpu_check.py runs the tiny shapes: the fastest here
    try:
        _, forward = speed.check_forward(setup)
        _, train = speed.check_train_step(setup)
        _, evaluation = speed.check_evaluation(setup)
        paste, break_even = speed.check_break_even(setup)
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved
        torch.set_num_threads(threads)
    assert set(forward['seconds']) == {'dense', 'sparse', 'auto', 'RH'}
    assert all(train[k]['step_s'] > 0 and train[k]['peak_gib'] is None
               for k in ('float32', 'amp'))
    assert all(evaluation[k]['forward'] > 0 for k in ('float32', 'amp'))
    assert paste.startswith("BREAK_EVEN['cpu'] = {")
    entry = ast.literal_eval(paste.split(' = ', 1)[1])
    assert set(entry) <= {(3, 64), (3, 128), (3, 256), (3, None), (1, 256), (1, None)}
    assert all(0 < v <= 1 for v in entry.values()) and len(break_even['break_even']) == 2


def test_top_class_agreement_counts_only_pixels_rounding_cannot_decide():
    """A flip at a near tie (margin <= 2 x what the logits may move) is only reported; a
    flip where float32's margin is wider counts against the agreement."""
    ref = torch.tensor([[1.0, 0.0], [1.0, 0.95], [0.0, 1.0], [2.0, 0.0]]).t().reshape(1, 2, 2, 2)
    got = ref.clone()
    got[0, :, 0, 1] = torch.tensor([0.9, 1.0])  # the near tie flips
    assert prepare.decided_agreement(got, ref, movable=0.1) == (1.0, 0.75, 0.0)
    got[0, :, 0, 0] = torch.tensor([0.0, 1.0])  # a decided pixel flips too
    assert prepare.decided_agreement(got, ref, movable=0.1) == pytest.approx((2 / 3, 0.75, 0.0))
