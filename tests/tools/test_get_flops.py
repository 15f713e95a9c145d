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
    last = next(line for line in out.splitlines() if line.startswith('   4 '))
    assert last.split()[1].startswith('73.2') and last.split()[2] == '3,997,492'


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


def test_run_config_uses_final_state_pads_the_image_and_prints_small_figures(tmp_path):
    import torch
    from models.flops import anytime_flops
    from tiny import spread_weights, tiny_cfg
    from models import get_seg_model
    cfg = tiny_cfg('adpc', 'MASK.CONF_THRE', 0.5)
    model = spread_weights(get_seg_model(cfg)).eval()  # trained-like: mixed masks
    torch.save({'model.' + k: v for k, v in model.state_dict().items()},
               tmp_path / 'final_state.pth')
    with open(tmp_path / 'config.yaml', 'w') as f:
        f.write(cfg.dump())
    image = (np.random.RandomState(0).rand(90, 200, 3) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / 'img.png'), image)
    out = get_flops('--cfg', str(tmp_path / 'config.yaml'), '--image', str(tmp_path / 'img.png'),
                    '--json', str(tmp_path / 'f.json'))
    assert 'final_state.pth' in out and 'padded to (96, 224)' in out
    figures = json.load(open(tmp_path / 'f.json'))
    from datasets.transforms import normalize
    x = torch.from_numpy(normalize(cv2.imread(str(tmp_path / 'img.png'))))[None]
    expected = anytime_flops(model, torch.nn.functional.pad(x, (0, 24, 0, 6)))
    assert figures['gflops'] == expected['gflops']
    exit1 = next(line for line in out.splitlines() if line.startswith('   1 '))
    assert float(exit1.split()[1]) > 0  # tiny models do not show 0.0
