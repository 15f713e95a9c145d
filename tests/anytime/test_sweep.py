"""The threshold sweep equals tools/test_ee.py at every threshold, on a tiny trained model,
and never writes over the run's own results."""
import argparse
import json
import os
import subprocess
import sys

import pytest
import torch

from config import config, update_config
from anytime.predict import load_model
from anytime.sweep import label_groups, read_compare, run_sweep, sweep_title
from evaluation.run import run_evaluation
from engine.train import train
from datasets import build_dataset
from datasets.synthetic import generate_synthetic_cityscapes
from models import get_seg_model
from utils.checkpoint import describe_variant, variant_name
from utils.distributed import DistContext

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'models'))
from tiny import spread_weights  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, 'experiments', 'synthetic', 'tiny_adpc.yaml')
# GFLOPs summed over the images in another order: float64 rounding of a sum of at most
# 2^10 positive terms, n·u relative (u = 2^-53).
SUM_ORDER = 2 ** 10 * 2.0 ** -53


def make_cfg(path, *opts):
    return update_config(config.clone(), argparse.Namespace(cfg=path, opts=list(opts)))


@pytest.fixture(scope='module')
def trained_run(tmp_path_factory):
    """A tiny ADP-C trained for 1 epoch on 8 synthetic images (a run directory), from
    He-normal weights, so that its exits are confident about part of the pixels after
    so short a training (the std-0.001 init is confident nowhere)."""
    root = str(tmp_path_factory.mktemp('data'))
    generate_synthetic_cityscapes(root, num_train=8, num_val=2, num_test=0, height=64,
                                  width=128)
    out = str(tmp_path_factory.mktemp('out'))
    start = os.path.join(out, 'start.pth')
    torch.save(spread_weights(get_seg_model(make_cfg(TINY))).state_dict(), start)
    train(make_cfg(TINY, 'DATASET.ROOT', root, 'OUTPUT_DIR', out, 'TRAIN.END_EPOCH', '1',
                   'TRAIN.EVAL_INTERVAL', '0', 'TRAIN.BATCH_SIZE_PER_GPU', '4',
                   'MODEL.PRETRAINED', start), TINY, DistContext())
    return os.path.join(out, 'cityscapes', 'tiny_adpc'), root


def confidence_quantiles(cfg, cfg_path, qs):
    """Thresholds that mask part of exit 1's pixels on the first validation image."""
    model, _ = load_model(cfg, cfg_path, torch.device('cpu'))
    image = build_dataset(cfg, cfg.DATASET.TEST_SET, train=False)[0][0]
    with torch.no_grad():
        conf = torch.softmax(model(image[None], stop_at=1)[0], 1).amax(1)
    return [torch.quantile(conf, q).item() for q in qs]


def test_sweep_rows_equal_test_ee_at_each_threshold(trained_run, tmp_path):
    run_dir, root = trained_run
    cfg_path = os.path.join(run_dir, 'config.yaml')
    cfg = make_cfg(cfg_path)
    with open(os.path.join(run_dir, 'result.txt')) as f:
        result = f.read()
    thresholds = confidence_quantiles(cfg, cfg_path, [0.1, 0.3])
    assert thresholds[0] < thresholds[1]
    rows = run_sweep(cfg, cfg_path, DistContext(), thresholds, latency=True)
    assert [r['threshold'] for r in rows] == sorted(set(thresholds + [1.0]))
    assert 0 < rows[0]['density'][0] < 1  # the lowest threshold skips some pixels
    for row in rows:
        expected = run_evaluation(make_cfg(cfg_path, 'MASK.CONF_THRE', str(row['threshold'])),
                                  cfg_path, DistContext())
        # The sweep runs the same forwards on the same batches (a continued state equals
        # a fresh forward bit for bit): the same confusion matrices; its GFLOPs are the
        # same per-image figures summed in float64 in another order.
        assert row['mIoU'] == expected['mIoU'], row['threshold']
        assert row['gflops'] == pytest.approx(expected['Gflops'], rel=SUM_ORDER), \
            row['threshold']
        assert len(row['latency_ms']) == 4 and row['latency_ms'] == sorted(row['latency_ms'])
    # A lower threshold computes fewer pixels: cheaper exits 2-4.
    assert rows[0]['gflops'][3] < rows[-1]['gflops'][3]
    # Results went to <run>/sweep/; the run's own result is untouched.
    sweep = os.path.join(run_dir, 'sweep')
    assert {'sweep.csv', 'sweep.json', 'sweep.png'} <= set(os.listdir(sweep))
    with open(os.path.join(sweep, 'sweep.csv')) as f:
        lines = f.read().splitlines()
    assert len(lines) == 1 + len(rows) and lines[0].startswith('threshold,criterion,images')
    # A second sweep goes next to the first one instead of over it.
    rows_again = run_sweep(cfg, cfg_path, DistContext(), thresholds[:1])
    assert os.path.isfile(os.path.join(run_dir, 'sweep_2', 'sweep.json'))
    assert rows_again[0]['mIoU'] == rows[0]['mIoU']
    with open(os.path.join(run_dir, 'result.txt')) as f:
        assert f.read() == result
    # The compare reader reads an evaluation folder (the run's own result.txt).
    name, mious, gflops = read_compare(run_dir)
    assert name == 'tiny_adpc' and len(mious) == len(gflops) == 4


def test_unmasked_model_gives_its_single_point(trained_run, tmp_path):
    _, root = trained_run
    cfg = make_cfg(TINY, 'DATASET.ROOT', root, 'MASK.USE', 'False', 'OUTPUT_DIR', str(tmp_path))
    model, _ = load_model(cfg, TINY, torch.device('cpu'))
    weights = str(tmp_path / 'rh.pth')
    torch.save(model.state_dict(), weights)
    cfg = make_cfg(TINY, 'DATASET.ROOT', root, 'MASK.USE', 'False', 'OUTPUT_DIR', str(tmp_path),
                   'TEST.MODEL_FILE', weights)
    out = str(tmp_path / 'sweep_out')
    rows = run_sweep(cfg, TINY, DistContext(), [0.5, 0.9], out_dir=out)
    assert len(rows) == 1 and rows[0]['threshold'] is None
    expected = run_evaluation(cfg, TINY, DistContext())
    assert rows[0]['mIoU'] == expected['mIoU']  # the same forwards (see above)
    assert rows[0]['gflops'] == pytest.approx(expected['Gflops'], rel=SUM_ORDER)
    assert os.path.isfile(os.path.join(out, 'sweep.png'))


def test_two_processes_sweep_as_one(trained_run, tmp_path):
    """Under torchrun each process sweeps its shard of the images; the rows, reduced over
    processes, equal the single-process sweep."""
    run_dir, _ = trained_run
    cfg_path = os.path.join(run_dir, 'config.yaml')
    thresholds = confidence_quantiles(make_cfg(cfg_path), cfg_path, [0.1, 0.3])
    # One thread, as each of the two processes: every image (a batch of its own) runs the
    # same operations in the same order in both sweeps.
    torch.set_num_threads(1)
    single = run_sweep(make_cfg(cfg_path), cfg_path, DistContext(), thresholds,
                       out_dir=str(tmp_path / 'single'))
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='', OMP_NUM_THREADS='1')
    proc = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
         'tools/sweep_threshold.py', '--cfg', cfg_path, '--out', str(tmp_path / 'two'),
         '--thresholds', *[repr(t) for t in thresholds]],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(tmp_path / 'two' / 'sweep.json') as f:
        two = json.load(f)
    rows = two['rows']
    assert two['processes'] == 2
    assert len(rows) == len(single)
    for mine, theirs in zip(rows, single):
        assert mine['threshold'] == theirs['threshold']  # repr() round-trips a float
        assert mine['mIoU'] == theirs['mIoU']  # confusion matrices: integer sums
        assert mine['gflops'] == pytest.approx(theirs['gflops'], rel=SUM_ORDER)


def test_the_plot_title_names_the_config_the_variant_the_weights_and_the_data(tmp_path):
    cfg = make_cfg(TINY, 'DATASET.ROOT', 'data/synthetic', 'DATASET.TEST_SET',
                   'list/cityscapes/val.lst')
    model = get_seg_model(cfg, pretrained=False)
    weights = tmp_path / 'final_state.pth'
    weights.write_bytes(b'')
    run_config = tmp_path / 'tiny_run' / 'config.yaml'
    assert sweep_title(cfg, str(run_config), model, str(weights), 4) == (
        f'tiny_run ({variant_name(describe_variant(model.state_dict()))}), weights '
        'final_state.pth, on 4 images of data/synthetic/list/cityscapes/val.lst')
    assert sweep_title(cfg, TINY, model, 'random initialisation', 2).startswith(
        'tiny_adpc (W')


def test_labels_of_points_closer_than_the_gap_are_one_label():
    points = [(0.50, 38.0, 0.9), (0.501, 38.01, 0.95), (0.70, 39.0, 0.99), (0.701, 39.0, 1.0),
              (0.30, 35.0, 0.8)]
    pixels = lambda xy: [(x * 1000, y * 10) for x, y in xy]  # noqa: E731  (0.01 GFLOPs: 10 px)
    assert label_groups(points, pixels, min_gap_px=30) == [
        (0.30, 35.0, [0.8]), (0.50, 38.0, [0.9, 0.95]), (0.70, 39.0, [0.99, 1.0])]
    # A point 1 px right of another on the same line would still print under its label.
    assert [g[2] for g in label_groups(points, pixels, min_gap_px=0.5)] == \
        [[0.8], [0.9, 0.95], [0.99, 1.0]]
    assert [g[2] for g in label_groups(points, pixels, min_gap_px=0.5, line_px=0)] == \
        [[0.8], [0.9], [0.95], [0.99], [1.0]]


def test_a_label_that_would_start_under_the_one_before_joins_it():
    pixels = lambda xy: [(x * 1000, y * 10) for x, y in xy]  # noqa: E731
    # 50 px right of '0.9, 0.95' (9 characters of 7 px): under that label, on its line.
    points = [(0.50, 38.0, 0.9), (0.501, 38.0, 0.95), (0.55, 38.0, 0.99)]
    assert [g[2] for g in label_groups(points, pixels, min_gap_px=30, char_px=7,
                                       line_px=14)] == [[0.9, 0.95, 0.99]]
    # Past the label's end, or a line below it: a label of its own.
    far = [(0.50, 38.0, 0.9), (0.501, 38.0, 0.95), (0.58, 38.0, 0.99)]
    lower = [(0.50, 38.0, 0.9), (0.501, 38.0, 0.95), (0.55, 34.0, 0.99)]
    for points in (far, lower):
        assert [g[2] for g in label_groups(points, pixels, min_gap_px=30, char_px=7,
                                           line_px=14)] == [[0.9, 0.95], [0.99]]
