"""The cost of each evaluation mode relative to plain evaluation: wall-clock time and
GFLOPs of ``core.testing.evaluate_model`` on the same images and weights.

Used by ``tools/time_eval_modes.py``; the README's table of evaluation modes comes from it.
"""
import logging
import os
import tempfile
import time

from .testing import evaluate_model

logger = logging.getLogger(__name__)

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
