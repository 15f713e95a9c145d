"""Evaluation modes end to end on synthetic data: benchmark-server submissions checked by
the official Cityscapes evaluator, predictions of an unlabelled list, and flip,
multi-scale and sliding-window evaluation through evaluation.run."""
import argparse
import glob
import importlib.util
import json
import os
import sys

import cv2
import numpy as np
import pytest
import torch

from config import config, update_config
from evaluation.run import run_evaluation
from datasets.labels import CITYSCAPES_CLASSES
from datasets.synthetic import generate_synthetic_cityscapes
from models import get_seg_model
from utils.distributed import DistContext

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'models'))
from tiny import spread_weights  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, 'experiments', 'synthetic', 'tiny_adpc.yaml')
HEIGHT, WIDTH = 32, 64


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """Synthetic data whose val labels hold every class, and a tiny ADP-C checkpoint
    with spread weights (its exits predict several classes and differ)."""
    root = str(tmp_path_factory.mktemp('synthetic'))
    generate_synthetic_cityscapes(root, num_train=1, num_val=3, num_test=2, height=HEIGHT,
                                  width=WIDTH)
    # Every class in the ground truth, so that no class IoU is undefined (0/0), which the
    # official script leaves out of its mean and this project counts as 0.
    first = sorted(glob.glob(os.path.join(root, 'cityscapes', 'gtFine', 'val', '*', '*.png')))[0]
    label_ids = cv2.imread(first, cv2.IMREAD_UNCHANGED)
    label_ids[0, :len(CITYSCAPES_CLASSES)] = [label_id for _, label_id in CITYSCAPES_CLASSES]
    cv2.imwrite(first, label_ids)
    checkpoint = os.path.join(root, 'tiny.pth')
    torch.save(spread_weights(get_seg_model(cfg_of(root, root))).state_dict(), checkpoint)
    return root, checkpoint


def cfg_of(root, out, *opts):
    args = argparse.Namespace(cfg=TINY, opts=[str(o) for o in (
        'DATASET.ROOT', root, 'OUTPUT_DIR', out, 'MASK.EXECUTION', 'dense',
        'TEST.BASE_SIZE', WIDTH, 'TEST.IMAGE_SIZE', [WIDTH, HEIGHT]) + opts])
    return update_config(config.clone(), args)


def evaluate(setup, out, *opts, **submit):
    root, checkpoint = setup
    cfg = cfg_of(root, str(out), 'TEST.MODEL_FILE', checkpoint, *opts)
    results = run_evaluation(cfg, TINY, DistContext(), **submit)
    return results, os.path.join(str(out), 'cityscapes', 'tiny_adpc')


def official_scores(submit_dir, k, root):
    """Class IoUs and their mean from cityscapesscripts' evalPixelLevelSemanticLabeling."""
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official
    from cityscapesscripts.helpers.labels import id2label
    official.args.evalInstLevelScore = False  # the synthetic data have no instanceIds
    official.args.JSONOutput = False
    official.args.quiet = True
    gts = sorted(glob.glob(os.path.join(root, 'cityscapes', 'gtFine', 'val', '*',
                                        '*_gtFine_labelIds.png')))
    preds = [os.path.join(submit_dir, f'exit{k}', os.path.basename(gt).replace(
        '_gtFine_labelIds.png', '_leftImg8bit.png')) for gt in gts]
    scores = official.evaluateImgLists(preds, gts, official.args)
    ious = [scores['classScores'][id2label[label_id].name] for _, label_id in CITYSCAPES_CLASSES]
    return ious, scores['averageScoreClasses']


@pytest.mark.skipif(importlib.util.find_spec('cityscapesscripts') is None,
                    reason='the official evaluator is a test dependency: '
                           'pip install cityscapesscripts (see INSTALL.md)')
def test_submission_on_val_agrees_with_the_official_evaluator(setup, tmp_path):
    submit = str(tmp_path / 'submit')
    results, out = evaluate(setup, tmp_path / 'out', submit_dir=submit)
    assert os.path.isfile(os.path.join(out, 'result.txt'))  # val: also evaluated
    for k in range(1, 5):
        files = sorted(os.listdir(os.path.join(submit, f'exit{k}')))
        assert len(files) == 3 and all(f.endswith('_000019_leftImg8bit.png') for f in files)
        predicted = np.unique(np.concatenate([cv2.imread(os.path.join(submit, f'exit{k}', f),
                                                         cv2.IMREAD_UNCHANGED).ravel()
                                              for f in files]))
        assert set(predicted.tolist()) <= {label_id for _, label_id in CITYSCAPES_CLASSES}
        ious, mean = official_scores(submit, k, setup[0])
        assert results['class_IoU'][k - 1] == pytest.approx(ious, abs=1e-4)  # 0.01 points
        assert results['mIoU'][k - 1] == pytest.approx(mean, abs=1e-4)
    assert sum(results['mIoU']) > 0  # the check compares something


def test_unlabelled_list_gives_predictions_only_and_says_so(setup, tmp_path, capsys):
    submit = tmp_path / 'submit'
    results, out = evaluate(setup, tmp_path / 'out', 'DATASET.TEST_SET',
                            'list/cityscapes/test.lst', submit_dir=str(submit), submit_exit=2)
    assert os.listdir(submit) == ['exit2']
    assert sorted(os.listdir(submit / 'exit2')) == [
        'berlin_000000_000019_leftImg8bit.png', 'bielefeld_000000_000019_leftImg8bit.png']
    image = cv2.imread(str(submit / 'exit2' / 'berlin_000000_000019_leftImg8bit.png'),
                       cv2.IMREAD_UNCHANGED)
    assert image.shape == (HEIGHT, WIDTH)
    assert 'mIoU' not in results and not os.path.exists(os.path.join(out, 'result.txt'))
    assert os.path.isfile(os.path.join(out, 'test_stats.json'))
    assert 'has no labels: predictions only' in capsys.readouterr().out


def test_unlabelled_list_without_submit_names_the_fix(setup, tmp_path):
    from utils.errors import ConfigError
    with pytest.raises(ConfigError, match='add --submit DIR'):
        evaluate(setup, tmp_path, 'DATASET.TEST_SET', 'list/cityscapes/test.lst')


@pytest.fixture(scope='module')
def plain(setup, tmp_path_factory):
    """Plain evaluation, every pixel computed (CONF_THRE 1), so a flipped image or a crop
    costs exactly what its size says."""
    return evaluate(setup, tmp_path_factory.mktemp('plain'), 'MASK.CONF_THRE', 1.0)[0]


def test_single_scale_one_without_flip_is_todays_evaluation_exactly(setup, tmp_path):
    default, _ = evaluate(setup, tmp_path / 'default')
    single, out = evaluate(setup, tmp_path / 'single', 'TEST.MULTI_SCALE', True,
                           'TEST.SCALE_LIST', [1.0])
    assert single['result'] == default['result']
    assert single['class_IoU'] == default['class_IoU'] and single['Gflops'] == default['Gflops']
    stats = json.load(open(os.path.join(out, 'test_stats.json')))
    assert stats['scales'] == [1.0] and stats['flip'] is False


def test_flip_costs_two_passes_and_is_recorded(setup, plain, tmp_path):
    flipped, out = evaluate(setup, tmp_path, 'MASK.CONF_THRE', 1.0, 'TEST.FLIP_TEST', True)
    assert flipped['Gflops'] == pytest.approx([2 * g for g in plain['Gflops']], rel=1e-9)
    stats = json.load(open(os.path.join(out, 'test_stats.json')))
    assert stats['flip'] is True and stats['forwards_per_image'] == 2


def test_multi_scale_sums_the_cost_of_every_scale(setup, plain, tmp_path):
    both, out = evaluate(setup, tmp_path, 'MASK.CONF_THRE', 1.0, 'TEST.MULTI_SCALE', True,
                         'TEST.SCALE_LIST', [1.0, 2.0], 'TEST.IMAGE_SIZE', [2 * WIDTH, 2 * HEIGHT])
    # Twice the size (within the crop) costs four times as much: 1 + 4 = 5 plain ones.
    assert both['Gflops'] == pytest.approx([5 * g for g in plain['Gflops']], rel=1e-9)
    stats = json.load(open(os.path.join(out, 'test_stats.json')))
    assert stats['scales'] == [1.0, 2.0] and stats['base_size'] == WIDTH


def test_sliding_windows_count_every_crop(setup, plain, tmp_path):
    # 32 x 64 images, 32 x 32 crops at columns 0, 21 and 32: three half-size forwards.
    slid, out = evaluate(setup, tmp_path, 'MASK.CONF_THRE', 1.0, 'TEST.IMAGE_SIZE',
                         [HEIGHT, HEIGHT])
    assert slid['Gflops'] == pytest.approx([1.5 * g for g in plain['Gflops']], rel=1e-9)
    stats = json.load(open(os.path.join(out, 'test_stats.json')))
    assert stats['forwards_per_image'] == 3 and stats['crop_size'] == [HEIGHT, HEIGHT]


def test_command_line_takes_submit_after_the_overrides(setup, tmp_path):
    import subprocess
    root, checkpoint = setup
    proc = subprocess.run(
        [sys.executable, 'tools/test_ee.py', '--cfg', TINY, 'DATASET.ROOT', root,
         'OUTPUT_DIR', str(tmp_path), 'TEST.MODEL_FILE', checkpoint,
         'DATASET.TEST_SET', 'list/cityscapes/test.lst', '--submit', str(tmp_path / 'sub'),
         '--exit', '4'], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, CUDA_VISIBLE_DEVICES=''))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert os.listdir(tmp_path / 'sub') == ['exit4']
    assert len(os.listdir(tmp_path / 'sub' / 'exit4')) == 2
    assert 'predictions only' in proc.stdout + proc.stderr


def test_single_scale_one_is_exact_on_sizes_off_the_stride(setup, tmp_path):
    """40 x 72 images run padded to 64 x 96; the passes of a 40 x 72 image must be taken
    from the image itself, not from its padded copy, to give the plain figures."""
    root = str(tmp_path / 'data')
    generate_synthetic_cityscapes(root, num_train=1, num_val=2, num_test=0, height=40,
                                  width=72)
    sized = ('DATASET.ROOT', root, 'TEST.BASE_SIZE', 72, 'TEST.IMAGE_SIZE', [72, 40])
    default, _ = evaluate(setup, tmp_path / 'default', *sized)
    single, _ = evaluate(setup, tmp_path / 'single', *sized, 'TEST.MULTI_SCALE', True,
                         'TEST.SCALE_LIST', [1.0])
    assert single['class_IoU'] == default['class_IoU'] and single['Gflops'] == default['Gflops']


def test_show_dir_draws_every_image_in_flip_and_sliding_window_evaluation(setup, tmp_path,
                                                                          capsys):
    show = tmp_path / 'show'
    results, _ = evaluate(setup, tmp_path / 'out', 'TEST.FLIP_TEST', True,
                          'TEST.IMAGE_SIZE', [HEIGHT, HEIGHT], show_dir=str(show))
    names = sorted(os.path.basename(p).replace('_gtFine_labelIds.png', '.png')
                   for p in glob.glob(os.path.join(setup[0], 'cityscapes', 'gtFine', 'val',
                                                   '*', '*_gtFine_labelIds.png')))
    assert sorted(os.listdir(show)) == names and len(names) == 3
    assert f'wrote 3 panel(s) to {show}' in capsys.readouterr().out
    assert results['forwards_per_image'] == 6  # 3 crops, each also flipped


@pytest.mark.parametrize('show', [False, True], ids=['plain', 'show-dir'])
def test_an_empty_test_list_is_one_line_before_any_work(setup, tmp_path, show):
    import subprocess
    root, checkpoint = setup
    with open(os.path.join(root, 'list', 'cityscapes', 'empty.lst'), 'w'):
        pass
    out = tmp_path / 'out'
    proc = subprocess.run(
        [sys.executable, 'tools/test_ee.py', '--cfg', TINY, 'DATASET.ROOT', root,
         'OUTPUT_DIR', str(out), 'TEST.MODEL_FILE', checkpoint,
         'DATASET.TEST_SET', 'list/cityscapes/empty.lst']
        + (['--show-dir', str(tmp_path / 'show')] if show else []),
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, CUDA_VISIBLE_DEVICES=''))
    errors = [line for line in proc.stderr.splitlines() if line.startswith('error:')]
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    assert len(errors) == 1 and 'empty.lst lists no samples' in proc.stderr
    assert not out.exists() and not (tmp_path / 'show').exists()
