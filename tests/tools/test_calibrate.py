"""tools/calibrate.py: the sparse engine's calibration, run as docs/benchmarks.md writes it."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_calibrate_entry_point_runs_from_the_repository_root():
    proc = subprocess.run([sys.executable, 'tools/calibrate.py', '--help'], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert '--device' in proc.stdout and 'break-even' in proc.stdout


def test_the_policy_entry_is_what_policy_break_even_takes():
    """The CPU's entry is what the calibration's measurements give."""
    from models.sparse.calibrate import LAYERS, policy_entry
    from models.sparse.policy import BREAK_EVEN
    measured = list(zip(LAYERS, [0.5, 0.6, 0.7, 0.8, 0.6, 0.7]))  # the 2-core CPU's
    entry = policy_entry(measured)
    assert entry == BREAK_EVEN['cpu']
    assert list(entry) == list(BREAK_EVEN['cpu'])  # narrowest first: the first match applies
    assert policy_entry([((1, 8, 8, 4, 4), 0.0)]) == {(1, 256): 0.05}  # never faster
