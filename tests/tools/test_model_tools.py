"""The command lines of tools/predict.py, tools/profile_latency.py, tools/visualize.py and
tools/time_eval_modes.py on the tiny synthetic ADP-C with random weights: config
overrides before or after the options, outputs at the image's own size, and a profile
the predictor accepts."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from datasets.labels import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, LABEL_ID_TO_TRAIN_ID
from evaluation.figure import LEGEND_LINE_PX, LEGEND_SWATCH_PX, MARGIN_PX

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = 'experiments/synthetic/tiny_adpc.yaml'
HEIGHT, WIDTH = 40, 70  # padded to 64 x 96 for the network
PADDED = ['64', '96']


def run_tool(*args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, CUDA_VISIBLE_DEVICES=''))


@pytest.fixture(scope='module')
def image(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('images') / 'street.png')
    rng = np.random.default_rng(0)
    cv2.imwrite(path, rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8))
    return path


def test_predict_writes_label_ids_at_the_image_size(image, tmp_path):
    out = tmp_path / 'pred'
    # An override before the options: the tools parse them intermixed.
    proc = run_tool('tools/predict.py', 'MASK.CONF_THRE', '0.5', '--cfg', TINY,
                    '--image', image, '--out', str(out), '--threads', '1')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'random initialisation' in proc.stdout
    ids = cv2.imread(str(out / 'street_labelIds.png'), cv2.IMREAD_UNCHANGED)
    assert ids.shape == (HEIGHT, WIDTH)
    assert set(np.unique(ids).tolist()) <= set(LABEL_ID_TO_TRAIN_ID)
    color = cv2.imread(str(out / 'street_color.png'), cv2.IMREAD_COLOR)
    assert color.shape == (HEIGHT, WIDTH, 3)
    # The colour PNG is the plain palette picture of the labelIds, without a legend...
    train_ids = np.vectorize(LABEL_ID_TO_TRAIN_ID.get)(ids)
    assert (color[:, :, ::-1] == np.asarray(CITYSCAPES_PALETTE)[train_ids]).all()
    # ... which lies beside it: one line per class, its colour square first.
    assert f'class colours and labelIds: {out / "legend.png"}' in proc.stdout
    legend = cv2.imread(str(out / 'legend.png'), cv2.IMREAD_COLOR)[:, :, ::-1]
    assert legend.shape[0] == len(CITYSCAPES_CLASSES) * LEGEND_LINE_PX + 2 * MARGIN_PX
    centre = MARGIN_PX + LEGEND_SWATCH_PX // 2
    for train_id, rgb in enumerate(CITYSCAPES_PALETTE):
        row = MARGIN_PX + train_id * LEGEND_LINE_PX + LEGEND_LINE_PX // 2
        assert tuple(legend[row, centre]) == rgb, CITYSCAPES_CLASSES[train_id]
    # A legend.png already there (the same legend, or a file of the user's) stays.
    (out / 'legend.png').write_bytes(b'mine')
    assert run_tool('tools/predict.py', '--cfg', TINY, '--image', image, '--out', str(out),
                    '--threads', '1').returncode == 0
    assert (out / 'legend.png').read_bytes() == b'mine'


def test_profile_drives_a_budgeted_prediction(image, tmp_path):
    profile = tmp_path / 'profile.json'
    proc = run_tool('tools/profile_latency.py', '--cfg', TINY, '--shape', *PADDED,
                    '--threads', '1', '--densities', '0.5', '--repeats', '1',
                    '--out', str(profile))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(profile.read_text())['input_shape'] == [1, 3, 64, 96]
    proc = run_tool('tools/predict.py', '--cfg', TINY, '--image', image, '--out',
                    str(tmp_path / 'pred'), '--threads', '1', '--budget-ms', '1e6',
                    '--profile', str(profile))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'exit 4' in proc.stdout
    # The profile is for one thread: another thread count is refused in one line.
    proc = run_tool('tools/predict.py', '--cfg', TINY, '--image', image, '--out',
                    str(tmp_path / 'pred2'), '--threads', '2', '--budget-ms', '1e6',
                    '--profile', str(profile))
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith('error: ')]
    assert len(errors) == 1 and 'CPU threads' in errors[0]
    assert 'Traceback' not in proc.stderr
    assert not (tmp_path / 'pred2').exists()


def test_profile_latency_asks_for_an_output_or_a_profile():
    proc = run_tool('tools/profile_latency.py', '--cfg', TINY)
    assert proc.returncode == 2
    assert '--out' in proc.stderr.splitlines()[-1]


def test_visualize_draws_a_panel_per_image(image, tmp_path):
    out = tmp_path / 'panels'
    proc = run_tool('tools/visualize.py', '--cfg', TINY, '--images', image, '--out', str(out),
                    'MASK.CONF_THRE', '0.5')
    assert proc.returncode == 0, proc.stderr[-3000:]
    panel = cv2.imread(str(out / 'street.png'), cv2.IMREAD_COLOR)
    assert panel is not None and panel.shape[0] > HEIGHT and panel.shape[1] > WIDTH


def test_time_eval_modes_prints_the_cost_of_each_mode_against_plain():
    proc = run_tool('tools/time_eval_modes.py', '--cfg', TINY, '--images', '2', '--height',
                    '32', '--width', '64', '--threads', '1', '--modes', 'plain', 'flip')
    assert proc.returncode == 0, proc.stderr[-3000:]
    flip = next(line for line in proc.stdout.splitlines() if line.startswith('| flip |'))
    assert flip.rstrip(' |').endswith('| 2.00')  # two passes, each counted from its masks


def test_time_eval_modes_applies_overrides_given_before_the_modes(tmp_path):
    missing = str(tmp_path / 'missing.pth')
    proc = run_tool('tools/time_eval_modes.py', '--cfg', TINY, 'TEST.MODEL_FILE', missing,
                    '--images', '1', '--height', '32', '--width', '64', '--modes', 'plain')
    assert proc.returncode == 2
    assert missing in proc.stderr and 'Traceback' not in proc.stderr
