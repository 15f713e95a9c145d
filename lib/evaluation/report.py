"""The result files of an evaluation: per-exit mIoU, GFLOPs and parameters, per-class IoU
(``result.txt``, the log's tables) and ``test_stats.json`` with the original's keys."""
import logging
import os

import numpy as np

from datasets.spec import dataset_spec
from models.flops import GIGA
from utils.io import atomic_write_text, save_json

logger = logging.getLogger(__name__)


def format_report(matrices, gflops, params, class_names):
    """Human-readable tables: per-exit mIoU, GFLOPs and parameters, then per-class IoU.

    Args:
        matrices (list[ConfusionMatrix]): one per exit.
        gflops (list[float]): mean GFLOPs of each exit.
        params (list[int]): parameters of each exit.
        class_names (sequence of str): one name per class.
    """
    mious = [m.mean_iou() for m in matrices]
    lines = [f"{'exit':<6}{'mIoU (%)':>10}{'GFLOPs':>12}{'Mparams':>10}"]
    for k, (miou, g, p) in enumerate(zip(mious, gflops, params), start=1):
        lines.append(f'{k:<6}{miou * 100:>10.2f}{g:>12.4f}{p / 1e6:>10.3f}')
    lines.append(f"{'mean':<6}{np.mean(mious) * 100:>10.2f}{np.mean(gflops):>12.4f}")
    lines.append('')
    lines.append(f"{'class IoU (%)':<16}" + ''.join(f'{"exit" + str(k):>8}'
                                                    for k in range(1, len(matrices) + 1)))
    ious = np.stack([m.iou() for m in matrices], axis=1)  # classes x exits
    for name, row in zip(class_names, ious):
        lines.append(f'{name:<16}' + ''.join(f'{v * 100:>8.2f}' for v in row))
    return '\n'.join(lines)


def stats_json(gflops, params):
    """The ``test_stats.json`` content, with the original's keys: ``params``, ``flops``
    (multiply-adds) and ``Gflops`` per exit, ``Gflops_mean``, ``Mparams`` per exit."""
    return {
        'params': [int(p) for p in params],
        'flops': [float(g) * GIGA for g in gflops],
        'Gflops': [float(g) for g in gflops],
        'Gflops_mean': float(np.mean(gflops)),
        'Mparams': [p / 1e6 for p in params],
    }


def modes_json(modes, forwards):
    """``test_stats.json`` entries that record the passes of a non-plain evaluation."""
    return {'scales': list(modes.scales) or [1.0], 'base_size': modes.base_size if
            modes.scales else None, 'flip': modes.flip,
            'crop_size': [modes.crop_size[1], modes.crop_size[0]],
            'forwards_per_image': forwards}


def write_report(cfg, out_dir, matrices, meter, stats, results):
    """Log the tables and write result.txt (with labels) and test_stats.json (rank 0)."""
    gflops = stats['Gflops']
    counted = f'mean over {meter.count} images'
    if cfg.MASK.USE:
        counted += ', each with its own masks'
    if 'scales' in stats:
        counted += f', summed over {stats["forwards_per_image"]:g} forwards per image'
    if matrices is not None:  # one table holds every figure, printed once
        names = dataset_spec(cfg).classes
        logger.info(f'results (GFLOPs per exit {counted}):\n'
                    + format_report(matrices, gflops, stats['params'], names))
        atomic_write_text(os.path.join(out_dir, 'result.txt'), results['result'])
    else:
        logger.info(f'GFLOPs per exit ({counted}): '
                    + ' / '.join(f'{g:.4f}' for g in gflops)
                    + f' (mean {stats["Gflops_mean"]:.4f})')
        logger.info(f'{cfg.DATASET.TEST_SET} has no labels: predictions only, no mIoU and '
                    'no result.txt')
    save_json(os.path.join(out_dir, 'test_stats.json'), stats)
    logger.info(f'wrote {"result.txt and " if matrices is not None else ""}test_stats.json '
                f'to {out_dir}')
