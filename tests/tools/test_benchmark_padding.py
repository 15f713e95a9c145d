"""tools/benchmark.py pads its input as evaluation does (issue 10, section 4)."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'models'))
from tiny import TINY_STAGES  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_an_odd_shape_is_padded_to_the_stride_and_said_so():
    tiny = [str(o) for o in TINY_STAGES] + ['MODEL.PRETRAINED', '', 'EXIT.INTER_CHANNEL', '8']
    result = subprocess.run(
        [sys.executable, 'tools/benchmark.py', '--cfg', 'experiments/cityscapes/w48_adpc.yaml',
         '--shape', '60', '90', '--skip-segments', '--warmup', '0', '--repeats', '1', *tiny],
        capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert 'input (60, 90) padded to (64, 96)' in result.stdout
    assert 'outputs agree with dense' in result.stdout
