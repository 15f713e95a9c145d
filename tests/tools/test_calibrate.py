"""tools/calibrate.py: the sparse engine's calibration, run as the README writes it."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_calibrate_entry_point_runs_from_the_repository_root():
    proc = subprocess.run([sys.executable, 'tools/calibrate.py', '--help'], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert '--device' in proc.stdout and 'break-even' in proc.stdout
