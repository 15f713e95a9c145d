"""The evaluation command lines of the original README (spec section 5) run as written,
on HRNet-W48 checkpoints in the original format (random weights, tiny images)."""
import argparse
import json
import os
import re
import subprocess
import sys

import pytest
import torch

from config import config, update_config
from engine.criterion import FullModel, build_criterion
from datasets.cityscapes import CITYSCAPES_CLASS_WEIGHTS
from datasets.synthetic import generate_synthetic_cityscapes
from models import get_seg_model

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
W48 = 'experiments/cityscapes/w48.yaml'
RH = ['EXIT.TYPE', "'flex'", 'EXIT.INTER_CHANNEL', '128']
# The three lines of the README, as a shell would receive them.
LINES = {
    'EE': f'python tools/test_ee.py --cfg {W48} TEST.MODEL_FILE {{ckpt}}',
    'RH': f"python tools/test_ee.py --cfg {W48} EXIT.TYPE 'flex' EXIT.INTER_CHANNEL 128 "
          'TEST.MODEL_FILE {ckpt}',
    'ADP-C': f"python tools/test_ee.py --cfg {W48} MODEL.NAME model_anytime EXIT.TYPE 'flex' "
             'EXIT.INTER_CHANNEL 128 MASK.USE True MASK.CONF_THRE 0.998 TEST.MODEL_FILE {ckpt}',
}
# GFLOPs of the original code at 1024x2048 (spec section 3); a 32x64 image costs 1/1024.
REFERENCE_GFLOPS = {'EE': [48.4, 113.5, 388.9, 722.2], 'RH': [41.9, 105.6, 368.0, 701.3],
                    'ADP-C': [41.9, 105.6, 368.0, 701.3]}  # untrained: nothing is confident


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('synthetic'))
    generate_synthetic_cityscapes(root, num_train=1, num_val=1, num_test=0, height=32, width=64)
    return root


def original_checkpoint(variant, path):
    """A W48 checkpoint of ``variant`` in the original format (FullModel state dict)."""
    opts = {'EE': [], 'RH': RH, 'ADP-C': RH + ['MASK.USE', 'True', 'MASK.CONF_THRE', '0.998']}
    opts = [o.strip("'") for o in opts[variant]] + ['MODEL.PRETRAINED', '']
    cfg = update_config(config.clone(), argparse.Namespace(cfg=os.path.join(ROOT, W48), opts=opts))
    torch.manual_seed(0)
    full = FullModel(get_seg_model(cfg), build_criterion(cfg, CITYSCAPES_CLASS_WEIGHTS))
    torch.save(full.state_dict(), path)


@pytest.mark.parametrize('variant', list(LINES))
def test_readme_evaluation_line_runs_as_written(variant, tiny_data, tmp_path):
    ckpt = str(tmp_path / f'{variant}.pth')
    original_checkpoint(variant, ckpt)
    try:
        # Real paths for the placeholders, plus where the data and outputs are.
        line = LINES[variant].format(ckpt=ckpt) + \
            f' DATASET.ROOT {tiny_data} OUTPUT_DIR {tmp_path} TEST.NUM_SAMPLES 1'
        line = line.replace('python ', f'{sys.executable} ', 1)
        proc = subprocess.run(line, shell=True, cwd=ROOT, capture_output=True, text=True,
                              timeout=300, env=dict(os.environ, CUDA_VISIBLE_DEVICES=''))
    finally:
        os.remove(ckpt)  # 250 MB each
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / 'cityscapes' / 'w48'
    assert re.fullmatch(r'\d+\.\d\d(\t\d+\.\d\d){4}', (out / 'result.txt').read_text())
    stats = json.loads((out / 'test_stats.json').read_text())
    scaled = [g * 1024 for g in stats['Gflops']]
    assert scaled == pytest.approx(REFERENCE_GFLOPS[variant], abs=0.06)


def test_benchmark_command_line(tmp_path):
    """tools/benchmark.py on the tiny synthetic ADP-C: per-segment figures as JSON, the
    RBF Lambda it was told, and the outputs' agreement with dense checked."""
    out = tmp_path / 'bench.json'
    result = subprocess.run(
        [sys.executable, 'tools/benchmark.py', '--cfg', 'experiments/synthetic/tiny_adpc.yaml',
         '--shape', '64', '96', '--densities', '0.3', '--warmup', '0', '--repeats', '1',
         '--skip-end-to-end', '--rbf-lambda', '1.0', '--json', str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert 'outputs agree with dense' in result.stdout
    figures = json.loads(out.read_text())
    assert [row['segment'] for row in figures['segments']] == [1, 2, 3]
    assert figures['machine']['rbf_lambda'] == 1.0 and 'end_to_end' not in figures
    both = subprocess.run([sys.executable, 'tools/benchmark.py', '--cfg',
                           'experiments/synthetic/tiny_adpc.yaml', '--skip-segments',
                           '--skip-end-to-end'], cwd=ROOT, capture_output=True, text=True)
    assert both.returncode != 0 and 'nothing to measure' in both.stderr
