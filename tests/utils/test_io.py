import os

import pytest
import torch

from config import config
from utils.io import atomic_torch_save, atomic_write_text, run_directory, save_json, \
    tensorboard_directory


def test_atomic_save_replaces_the_file(tmp_path):
    path = str(tmp_path / 'sub' / 'ckpt.pth')
    atomic_torch_save({'a': torch.ones(2)}, path)
    atomic_torch_save({'a': torch.zeros(2)}, path)
    assert torch.equal(torch.load(path, weights_only=True)['a'], torch.zeros(2))
    assert os.listdir(tmp_path / 'sub') == ['ckpt.pth']


class Exploding:
    """Pickling fails half-way, like a process killed while writing."""

    def __reduce__(self):
        raise KeyboardInterrupt('killed while writing')


def test_failed_save_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    path = str(tmp_path / 'checkpoint.pth.tar')
    atomic_torch_save({'epoch': 1}, path)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({'epoch': 2, 'bad': Exploding()}, path)
    assert torch.load(path, weights_only=True) == {'epoch': 1}
    assert os.listdir(tmp_path) == ['checkpoint.pth.tar']


def test_text_and_json(tmp_path):
    atomic_write_text(str(tmp_path / 'result.txt'), '1.00\t2.00')
    assert (tmp_path / 'result.txt').read_text() == '1.00\t2.00'
    save_json(str(tmp_path / 's.json'), {'Gflops_mean': 1.5})
    assert '"Gflops_mean": 1.5' in (tmp_path / 's.json').read_text()


def test_run_directory_is_output_dataset_cfg_stem():
    cfg = config.clone()
    cfg.defrost()
    cfg.OUTPUT_DIR = 'output'
    assert run_directory(cfg, 'experiments/cityscapes/w48_adpc.yaml') == \
        os.path.join('output', 'cityscapes', 'w48_adpc')
    assert tensorboard_directory(cfg, 'a/w48.yaml') == os.path.join('output', 'cityscapes', 'w48')
    cfg.LOG_DIR = 'log'
    assert tensorboard_directory(cfg, 'a/w48.yaml') == os.path.join('log', 'cityscapes', 'w48')
