"""A checkpoint that would run code when unpickled is refused by every entry point that
reads weights, before anything is trained or evaluated, and its code never runs."""
import argparse
import os
import subprocess
import sys

import pytest
import torch

from config import config, update_config
from engine.criterion import FullModel, build_criterion
from datasets.cityscapes import CITYSCAPES_CLASS_WEIGHTS
from datasets.synthetic import generate_synthetic_cityscapes
from malicious import Touch
from models import get_seg_model

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = 'experiments/synthetic/tiny_adpc.yaml'
ENV = dict(os.environ, CUDA_VISIBLE_DEVICES='', OMP_NUM_THREADS='1')


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('synthetic'))
    generate_synthetic_cityscapes(root, num_train=2, num_val=1, num_test=0, height=64, width=128)
    return root


def tiny_checkpoint(optimizer):
    """A resume checkpoint of the tiny ADP-C whose 'optimizer' entry is ``optimizer``."""
    cfg = update_config(config.clone(), argparse.Namespace(cfg=os.path.join(ROOT, TINY), opts=[]))
    full = FullModel(get_seg_model(cfg), build_criterion(cfg, CITYSCAPES_CLASS_WEIGHTS))
    return {'epoch': 1, 'iteration': 1, 'best_mIoU': 0.0, 'state_dict': full.state_dict(),
            'optimizer': optimizer}


def run_tool(*args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=180)


def tool_command(entry, evil, data_root, out):
    common = ['DATASET.ROOT', data_root, 'OUTPUT_DIR', out]
    if entry == 'TEST.MODEL_FILE':
        return ['tools/test_ee.py', '--cfg', TINY, 'TEST.MODEL_FILE', evil] + common
    if entry == 'MODEL.PRETRAINED':
        return ['tools/train_ee.py', '--cfg', TINY, 'MODEL.PRETRAINED', evil,
                'TRAIN.END_EPOCH', '1', 'TRAIN.BATCH_SIZE_PER_GPU', '1'] + common
    if entry == 'AUTO_RESUME':
        return ['tools/train_ee.py', '--cfg', TINY, 'AUTO_RESUME', 'True',
                'TRAIN.END_EPOCH', '1', 'TRAIN.BATCH_SIZE_PER_GPU', '1'] + common
    image = os.path.join(data_root, 'cityscapes', 'leftImg8bit', 'val')
    image = os.path.join(image, os.listdir(image)[0])
    image = os.path.join(image, os.listdir(image)[0])
    if entry == 'get_flops':
        return ['tools/get_flops.py', '--cfg', TINY, '--image', image, 'TEST.MODEL_FILE', evil]
    return ['tools/benchmark.py', '--cfg', TINY, '--shape', '64', '64', '--warmup', '0',
            '--repeats', '1', '--skip-end-to-end', 'TEST.MODEL_FILE', evil]


@pytest.mark.parametrize('entry,layout', [
    ('TEST.MODEL_FILE', 'whole file'), ('TEST.MODEL_FILE', 'optimizer entry'),
    ('MODEL.PRETRAINED', 'whole file'), ('AUTO_RESUME', 'optimizer entry'),
    ('get_flops', 'whole file'), ('benchmark', 'whole file')])
def test_code_in_a_checkpoint_never_runs(entry, layout, data_root, tmp_path):
    marker = tmp_path / 'MARKER'
    out = str(tmp_path / 'output')
    evil = str(tmp_path / 'evil.pth')
    if entry == 'AUTO_RESUME':
        evil = os.path.join(out, 'cityscapes', 'tiny_adpc', 'checkpoint.pth.tar')
        os.makedirs(os.path.dirname(evil))
    torch.save(Touch(str(marker)) if layout == 'whole file' else tiny_checkpoint(Touch(str(marker))),
               evil)

    proc = run_tool(*tool_command(entry, evil, data_root, out))
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert f'{evil} holds Python objects beyond tensors' in output, output
    assert 'could run code, so it is refused' in output
    assert f'python tools/convert_checkpoint.py {evil} ' in output
    assert not marker.exists()
    assert not os.path.exists(os.path.join(out, 'cityscapes', 'tiny_adpc', 'final_state.pth'))
    if entry in ('TEST.MODEL_FILE', 'MODEL.PRETRAINED', 'AUTO_RESUME'):  # the launched tools
        assert proc.stderr.startswith('error: ') or '\nerror: ' in proc.stderr
        assert 'Traceback' not in output
