import json
import os
import subprocess
import sys

import cv2
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'models'))
from tiny import TINY_STAGES  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REFERENCE = json.load(open(os.path.join(ROOT, 'tests', 'data', 'reference_figures.json')))['code']


def get_flops(*args):
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'get_flops.py'), *args],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_w18_rh_reference_figures_and_json(tmp_path):
    out = get_flops('--cfg', 'experiments/cityscapes/w18_rh.yaml', '--shape', '1024', '2048',
                    '--json', str(tmp_path / 'f.json'))
    figures = json.load(open(tmp_path / 'f.json'))
    assert [round(g, 1) for g in figures['gflops']] == REFERENCE['w18_rh_inter64']['gflops']
    assert figures['params'] == REFERENCE['w18_rh_inter64']['params']
    assert abs(figures['gflops_mean'] - sum(figures['gflops']) / 4) < 1e-9
    assert '   4     73.2  3,997,492' in out


def test_masked_model_without_image_reports_upper_bound():
    out = get_flops('--cfg', 'experiments/cityscapes/w18_adpc.yaml', '--shape', '64', '128')
    assert 'unmasked upper bound' in out


def test_masked_model_counts_the_masks_of_the_image(tmp_path):
    image = (np.random.RandomState(0).rand(64, 64, 3) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / 'img.png'), image)
    tiny = [str(o) for o in TINY_STAGES] + ['MODEL.PRETRAINED', '', 'EXIT.INTER_CHANNEL', '8']
    upper, masked = tmp_path / 'upper.json', tmp_path / 'masked.json'
    get_flops('--cfg', 'experiments/cityscapes/w48_adpc.yaml', '--shape', '64', '64',
              '--json', str(upper), *tiny)
    # Threshold 0: no pixel is computed after exit 1, so every exit costs exit 1's figure.
    get_flops('--cfg', 'experiments/cityscapes/w48_adpc.yaml', '--image', str(tmp_path / 'img.png'),
              '--json', str(masked), *tiny, 'MASK.CONF_THRE', '0.0')
    upper, masked = json.load(open(upper)), json.load(open(masked))
    assert masked['gflops'] == [upper['gflops'][0]] * 4
    assert masked['params'] == upper['params']


def test_unreadable_image_is_named(tmp_path):
    result = subprocess.run([sys.executable, 'tools/get_flops.py', '--cfg',
                             'experiments/cityscapes/w18_adpc.yaml', '--image',
                             str(tmp_path / 'missing.png')], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode != 0 and 'missing.png' in result.stderr
