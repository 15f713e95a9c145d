"""The cost of each evaluation mode relative to plain evaluation: wall-clock time and
GFLOPs of ``evaluation.run.evaluate_model`` on the same images and weights.

Used by ``tools/time_eval_modes.py``; the table of evaluation modes in docs/evaluation.md
comes from it.
"""
import os
import tempfile
import time

import cv2
import numpy as np

from datasets.labels import label_ids_to_train_ids
from datasets.synthetic import render_scene
from models.layout import to_inference
from .submission import SubmissionWriter
from .run import evaluate_model

# Mode name -> (config overrides, submission writer threads or None for no --submit).
MODES = {
    'plain': ([], None),
    'submit, 1 thread': ([], 0),
    'submit, 4 threads': ([], 4),
    'flip': (['TEST.FLIP_TEST', True], None),
    'multi-scale': (['TEST.MULTI_SCALE', True,
                     'TEST.SCALE_LIST', [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]], None),
    'multi-scale + flip': (['TEST.MULTI_SCALE', True, 'TEST.FLIP_TEST', True,
                            'TEST.SCALE_LIST', [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]], None),
    'sliding windows (half-size crops)': (['TEST.IMAGE_SIZE', 'half'], None),
}


def mode_config(cfg, overrides):
    """``cfg`` with a mode's overrides; ``'half'`` for TEST.IMAGE_SIZE means crops of half
    the base size in each direction."""
    cfg = cfg.clone()
    cfg.defrost()
    for key, value in zip(overrides[::2], overrides[1::2]):
        if key == 'TEST.IMAGE_SIZE' and value == 'half':
            value = [s // 2 for s in cfg.TEST.IMAGE_SIZE]
        section, name = key.split('.')
        cfg[section][name] = value
    cfg.freeze()
    return cfg


def time_modes(model, cfg, ctx, names=tuple(MODES)):
    """Evaluate ``model`` on DATASET.TEST_SET once per mode, timing each run.

    Args:
        model (nn.Module): the anytime network on ``ctx.device``.
        cfg (CfgNode): the merged config (TEST.IMAGE_SIZE as large as the images).
        ctx (DistContext): this process.
        names (sequence of str): keys of :data:`MODES`; 'plain' is always measured first.

    Returns:
        list[dict]: per mode ``mode``, ``seconds``, ``gflops_mean``, and both relative
        to plain (``time_ratio``, ``gflops_ratio``).
    """
    to_inference(model)  # once, not at every evaluation
    names = ['plain'] + [n for n in names if n != 'plain']
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        warm = mode_config(cfg, [])
        warm.defrost()
        warm.TEST.NUM_SAMPLES = 1
        evaluate_model(model, warm, scratch, ctx)  # first-call costs out of the figures
        for i, name in enumerate(names):
            overrides, threads = MODES[name]
            submit = None if threads is None else os.path.join(scratch, f'submit{i}')
            start = time.perf_counter()
            stats = evaluate_model(model, mode_config(cfg, overrides), scratch, ctx,
                                   submit_dir=submit, submit_threads=threads or 0)
            seconds = time.perf_counter() - start
            rows.append({'mode': name, 'seconds': seconds, 'gflops_mean': stats['Gflops_mean']})
    for row in rows:
        row['time_ratio'] = row['seconds'] / rows[0]['seconds']
        row['gflops_ratio'] = row['gflops_mean'] / rows[0]['gflops_mean']
    return rows


def cost_table(rows):
    """Markdown table of :func:`time_modes`'s rows."""
    lines = ['| mode | time (s) | time / plain | GFLOPs (mean of exits) | GFLOPs / plain |',
             '|---|---|---|---|---|']
    for r in rows:
        lines.append(f"| {r['mode']} | {r['seconds']:.1f} | {r['time_ratio']:.2f} | "
                     f"{r['gflops_mean']:.3f} | {r['gflops_ratio']:.2f} |")
    return '\n'.join(lines)


def scene_predictions(count, height, width, seed=0):
    """``count`` trainId maps of street scenes (synthetic labels, drawn at a quarter of
    the size and enlarged: regions as large as a network's predictions have), as
    stand-ins for predictions when timing the PNG writer."""
    maps = []
    for i in range(count):
        _, label_ids = render_scene(height // 4, width // 4, np.random.default_rng([seed, i]))
        train_ids = label_ids_to_train_ids(label_ids, ignore_label=0)
        maps.append(cv2.resize(train_ids.astype(np.uint8), (width, height),
                               interpolation=cv2.INTER_NEAREST).astype(np.int64))
    return maps


def time_writer(predictions, threads, num_exits=4):
    """Seconds the evaluating thread spends handing ``predictions`` (trainId maps, one
    image each) to a :class:`SubmissionWriter` for ``num_exits`` exits and waiting for
    the last file: all of the writing with ``threads`` 0, only what the pool cannot
    absorb otherwise."""
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        with SubmissionWriter(root, list(range(1, num_exits + 1)), threads) as writer:
            for i, prediction in enumerate(predictions):
                for k in range(1, num_exits + 1):
                    writer.add(k, f'city_{i:06d}_000019', prediction)
        return time.perf_counter() - start
