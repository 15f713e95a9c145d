"""Results, logs and checkpoints get the permissions of any file the user creates (0666
less the umask), so that collaborators on a shared cluster can read them: 0644 under the
usual umask 022, not the 0600 of a private temporary file."""
import argparse
import glob
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from config import default_config, update_config
from datasets.synthetic import generate_synthetic_cityscapes
from models import get_seg_model
from utils.io import atomic_torch_save, atomic_write_text, save_json
from utils.logger import setup_logger

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, 'experiments', 'synthetic', 'tiny_adpc.yaml')


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(params=[0o022, 0o027], ids=['umask-022', 'umask-027'])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_atomic_writers_follow_the_umask(umask, tmp_path):
    atomic_torch_save({'a': torch.ones(1)}, str(tmp_path / 'checkpoint.pth.tar'))
    atomic_write_text(str(tmp_path / 'result.txt'), '1.00')
    save_json(str(tmp_path / 'test_stats.json'), {'mIoU': 1.0})
    log = setup_logger(str(tmp_path), 'tiny', 'test')
    setup_logger(None, 'tiny', 'test')  # closes the log file
    expected = 0o666 & ~umask  # 0644 under 022, 0640 under 027
    assert {name: mode(tmp_path / name) for name in os.listdir(tmp_path)} == {
        'checkpoint.pth.tar': expected, 'result.txt': expected, 'test_stats.json': expected,
        os.path.basename(log): expected}


def test_replacing_a_file_keeps_it_readable(tmp_path):
    old = os.umask(0o022)
    try:
        path = str(tmp_path / 'final_state.pth')
        atomic_torch_save({'a': torch.ones(1)}, path)
        atomic_torch_save({'a': torch.zeros(1)}, path)
    finally:
        os.umask(old)
    assert mode(path) == 0o644 and os.listdir(tmp_path) == ['final_state.pth']


def test_an_evaluation_writes_its_results_and_log_with_mode_644(tmp_path):
    data = str(tmp_path / 'data')
    generate_synthetic_cityscapes(data, num_train=0, num_val=1, num_test=0, height=32, width=64)
    cfg = update_config(default_config(), argparse.Namespace(cfg=TINY, opts=[]))
    weights = str(tmp_path / 'weights.pth')
    torch.save(get_seg_model(cfg).state_dict(), weights)
    out = tmp_path / 'out'
    proc = subprocess.run(
        [sys.executable, 'tools/test_ee.py', '--cfg', TINY, 'TEST.MODEL_FILE', weights,
         'DATASET.ROOT', data, 'OUTPUT_DIR', str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, umask=0o022,
        env=dict(os.environ, CUDA_VISIBLE_DEVICES='', OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = out / 'cityscapes' / 'tiny_adpc'
    written = [run / 'result.txt', run / 'test_stats.json'] + \
        [Path(p) for p in glob.glob(str(run / '*.log'))]
    assert len(written) == 3
    assert {p.name: mode(p) for p in written} == {p.name: 0o644 for p in written}
