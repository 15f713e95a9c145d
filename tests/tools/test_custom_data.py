"""A folder of one's own images and label PNGs, from lists to predictions with the
anytime tools (docs/datasets.md, "Your own data"): a 2-class set of bright blobs
('person') on a dark background learns far above chance."""
import glob
import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'datasets'))
from blobs import CLASSES, make_blob_folder  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, 'experiments', 'synthetic', 'tiny_adpc.yaml')
ENV = dict(os.environ, CUDA_VISIBLE_DEVICES='', OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
PALETTE = [[0, 0, 0], [220, 20, 60]]
# The tiny network on 64 x 64 blobs, at the scale of experiments/custom/w18_adpc.yaml.
EXPERIMENT = f"""_BASE_: {TINY}
DATASET:
  DATASET: custom
  TRAIN_SET: list/train.lst
  TEST_SET: list/val.lst
  NUM_CLASSES: 2
  CLASSES: {CLASSES}
  PALETTE: {PALETTE}
LOSS:
  CLASS_BALANCE: false
TRAIN:
  IMAGE_SIZE: [64, 64]
  BASE_SIZE: 64
  END_EPOCH: 20
  EVAL_INTERVAL: 0
TEST:
  IMAGE_SIZE: [64, 64]
  BASE_SIZE: 64
"""


def run(args, expect=0):
    proc = subprocess.run([sys.executable] + args, cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == expect, f'{args}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}'
    return proc


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    """The folder, its lists (made by the tool) and the experiment file."""
    root = str(tmp_path_factory.mktemp('mine'))
    images, labels = make_blob_folder(root, count=20)
    proc = run(['tools/make_lists.py', 'custom', '--images', images, '--labels', labels,
                '--val', '4'])
    assert f'DATASET.ROOT {root}' in proc.stdout
    experiment = os.path.join(root, 'blobs.yaml')
    with open(experiment, 'w') as f:
        f.write(EXPERIMENT)
    return root, experiment


@pytest.fixture(scope='module')
def trained(data, tmp_path_factory):
    root, experiment = data
    out = str(tmp_path_factory.mktemp('out'))
    run(['tools/train_ee.py', '--cfg', experiment, 'DATASET.ROOT', root, 'OUTPUT_DIR', out])
    return os.path.join(out, 'custom', 'blobs')


def val_labels(root):
    with open(os.path.join(root, 'list', 'val.lst')) as f:
        pairs = [line.split() for line in f if line.strip()]
    return pairs, [cv2.imread(os.path.join(root, label), cv2.IMREAD_UNCHANGED)
                   for _, label in pairs]


def test_the_lists_pair_every_image_with_its_label(data):
    root, _ = data
    lines = []
    for name in ('train', 'val'):
        with open(os.path.join(root, 'list', f'{name}.lst')) as f:
            lines += [line.split() for line in f if line.strip()]
    assert len(lines) == 20 and len({image for image, _ in lines}) == 20
    for image, label in lines:
        assert os.path.splitext(os.path.basename(image))[0] == \
            os.path.splitext(os.path.basename(label))[0]
        assert image.startswith('images/') and label.startswith('labels/')


def test_check_dataset_finds_the_set_usable(data):
    root, experiment = data
    proc = run(['tools/check_dataset.py', '--cfg', experiment, 'DATASET.ROOT', root])
    assert 'train list/train.lst: 16 samples, images 64x64 (16)' in proc.stdout
    assert 'class pixels (train): background' in proc.stdout
    assert 'usable' in proc.stdout and 'error' not in proc.stderr


def test_training_learns_far_above_chance(data, trained):
    root, _ = data
    with open(os.path.join(trained, 'result.txt')) as f:
        mious = [float(v) / 100 for v in f.read().split('\t')]
    _, labels = val_labels(root)
    frequencies = np.bincount(np.concatenate([l.ravel() for l in labels]), minlength=2) / \
        sum(l.size for l in labels)
    # The best guess without looking: every pixel the most frequent class, whose IoU is
    # its frequency, the other class's 0.
    chance = frequencies.max() / 2
    assert mious[3] > (1 + chance) / 2, (mious, chance)  # half-way from chance to perfect


def test_evaluation_names_the_classes_and_submits_raw_values(data, trained, tmp_path):
    root, _ = data
    submit, panels = str(tmp_path / 'submit'), str(tmp_path / 'panels')
    proc = run(['tools/test_ee.py', '--cfg', os.path.join(trained, 'config.yaml'),
                '--submit', submit, '--exit', '4', '--show-dir', panels])
    assert 'person' in proc.stdout + proc.stderr and 'background' in proc.stdout + proc.stderr
    pairs, _ = val_labels(root)
    for image, _ in pairs:
        stem = os.path.splitext(os.path.basename(image))[0]
        png = cv2.imread(os.path.join(submit, 'exit4', f'{stem}.png'), cv2.IMREAD_UNCHANGED)
        assert png.shape == (64, 64) and set(np.unique(png)) <= {0, 1}
        assert os.path.isfile(os.path.join(panels, f'{stem}.png'))


def test_sweep_and_predict_follow_the_data_set(data, trained, tmp_path):
    root, _ = data
    config = os.path.join(trained, 'config.yaml')
    run(['tools/sweep_threshold.py', '--cfg', config, '--thresholds', '0.9',
         '--out', str(tmp_path / 'sweep')])
    with open(tmp_path / 'sweep' / 'sweep.json') as f:
        assert json.load(f)
    pairs, labels = val_labels(root)
    out = str(tmp_path / 'pred')
    run(['tools/predict.py', '--cfg', config, '--image', os.path.join(root, pairs[0][0]),
         '--out', out])
    stem = os.path.splitext(os.path.basename(pairs[0][0]))[0]
    colours = cv2.imread(os.path.join(out, f'{stem}_color.png'))[:, :, ::-1].reshape(-1, 3)
    assert {tuple(c) for c in np.unique(colours, axis=0)} <= {tuple(c) for c in PALETTE}
    ids = cv2.imread(os.path.join(out, f'{stem}_labelIds.png'), cv2.IMREAD_UNCHANGED)
    assert set(np.unique(ids)) <= {0, 1}
    assert (ids == labels[0]).mean() > 0.9  # the prediction is the blobs'
    assert glob.glob(os.path.join(out, 'legend.png'))


def test_a_broken_label_stops_training_with_one_line(data, tmp_path):
    root, experiment = data
    copy = str(tmp_path / 'broken')
    shutil.copytree(root, copy)
    with open(os.path.join(root, 'list', 'train.lst')) as f:
        label = f.readline().split()[1]
    broken = cv2.imread(os.path.join(copy, label), cv2.IMREAD_UNCHANGED)
    broken[0, 0] = 7
    cv2.imwrite(os.path.join(copy, label), broken)
    proc = run(['tools/train_ee.py', '--cfg', experiment, 'DATASET.ROOT', copy,
                'OUTPUT_DIR', str(tmp_path / 'out'), 'WORKERS', '1', 'TRAIN.END_EPOCH', '1'],
               expect=2)
    errors = [line for line in proc.stderr.splitlines() if line.startswith('error:')]
    assert len(errors) == 1 and label in errors[0] and 'values 7' in errors[0]
    assert 'Traceback' not in proc.stderr
