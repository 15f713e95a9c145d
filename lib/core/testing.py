"""Evaluation of a trained anytime network: per-exit mIoU, per-class IoU, GFLOPs and
parameters, written to ``result.txt`` and ``test_stats.json`` (spec section 4).

Used by ``tools/test_ee.py`` (and ``tools/test.py``) and at the end of training.
"""
import logging
import os

import numpy as np

import datasets
import models
from datasets.labels import CLASS_NAMES
from utils.checkpoint import load_model_weights
from models.flops import GIGA, FlopsCounter
from utils.io import atomic_write_text, run_directory, save_json
from utils.logger import setup_logger
from utils.runtime import apply_cudnn
from .engine import evaluate
from .loaders import eval_loader
from .metrics import FlopsMeter, result_line

logger = logging.getLogger(__name__)

RUN_CONFIG = 'config.yaml'  # written by training into its output directory
FINAL_STATE = 'final_state.pth'


def resolve_test_paths(cfg, cfg_path):
    """Where an evaluation reads its weights and writes its results.

    - ``--cfg <run dir>/config.yaml``: the run's directory, and its ``final_state.pth``
      unless TEST.MODEL_FILE names another file;
    - any other experiment file: ``OUTPUT_DIR/<dataset>/<cfg stem>`` and TEST.MODEL_FILE.

    Args:
        cfg (CfgNode): the merged config.
        cfg_path (str): the ``--cfg`` argument.

    Returns:
        tuple[str, str]: (output directory, model file).
    """
    if os.path.basename(cfg_path) == RUN_CONFIG:
        out_dir = os.path.dirname(os.path.abspath(cfg_path))
        return out_dir, cfg.TEST.MODEL_FILE or os.path.join(out_dir, FINAL_STATE)
    if not cfg.TEST.MODEL_FILE:
        raise ValueError(f'TEST.MODEL_FILE is empty: add TEST.MODEL_FILE <checkpoint>.pth to '
                         f'the command line, or pass --cfg <run dir>/{RUN_CONFIG} to evaluate '
                         f"a training run's {FINAL_STATE}")
    return run_directory(cfg, cfg_path), cfg.TEST.MODEL_FILE


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


def evaluate_model(model, cfg, out_dir, ctx):
    """Evaluate ``model`` on DATASET.TEST_SET and write ``result.txt`` and
    ``test_stats.json`` into ``out_dir`` (rank 0).

    Every process evaluates its shard of the images; confusion matrices and FLOPs are
    combined over processes. FLOPs are counted per image from the masks of the
    evaluation's own forward (``models.flops.FlopsCounter``).

    Args:
        model (nn.Module): the anytime network on ``ctx.device``.
        cfg (CfgNode): the merged config.
        out_dir (str): where to write the results.
        ctx (DistContext): this process.

    Returns:
        dict: ``mIoU`` (per exit, in [0, 1]), ``result`` (the result.txt line), and the
        test_stats entries.
    """
    dataset = datasets.build_dataset(cfg, cfg.DATASET.TEST_SET, train=False)
    loader = eval_loader(dataset, cfg.TEST.BATCH_SIZE_PER_GPU, ctx, cfg.WORKERS, cfg.PIN_MEMORY,
                         cfg.TRAIN.IGNORE_LABEL)
    logger.info(f'evaluating {dataset} on {ctx.world_size} process(es)')
    meter = FlopsMeter(FlopsCounter(model))
    matrices = evaluate(model, loader, cfg.DATASET.NUM_CLASSES, cfg.TRAIN.IGNORE_LABEL, ctx,
                        flops_meter=meter, desc='test')
    gflops, params = meter.gflops(), meter.params
    names = CLASS_NAMES if cfg.DATASET.NUM_CLASSES == len(CLASS_NAMES) else \
        [f'class {c}' for c in range(cfg.DATASET.NUM_CLASSES)]
    mious = [m.mean_iou() for m in matrices]
    line = result_line(mious)
    stats = stats_json(gflops, params)
    if ctx.is_main:
        logger.info('\n' + format_report(matrices, gflops, params, names))
        masks = ', each with its own masks' if cfg.MASK.USE else ''
        logger.info(f'GFLOPs per exit (mean over {meter.count} images{masks}): '
                    + ' / '.join(f'{g:.4f}' for g in gflops)
                    + f' (mean {stats["Gflops_mean"]:.4f})')
        logger.info(f'result.txt: {line}')
        atomic_write_text(os.path.join(out_dir, 'result.txt'), line)
        save_json(os.path.join(out_dir, 'test_stats.json'), stats)
        logger.info(f'wrote result.txt and test_stats.json to {out_dir}')
    return dict(stats, mIoU=mious, result=line)


def run_evaluation(cfg, cfg_path, ctx):
    """Everything ``tools/test_ee.py`` does: build the model of the config, load its
    weights strictly (TEST.MODEL_FILE, or a run's ``final_state.pth``) and test it.

    Args:
        cfg (CfgNode): the merged config.
        cfg_path (str): the ``--cfg`` argument.
        ctx (DistContext): this process.
    """
    out_dir, model_file = resolve_test_paths(cfg, cfg_path)
    stem = os.path.splitext(os.path.basename(cfg_path))[0]
    log_file = setup_logger(out_dir, stem, 'test', ctx.is_main)
    logger.info(f'log file: {log_file}')
    logger.info(f'weights: {model_file}')
    # The checkpoint replaces every weight, so ImageNet initialisation would only cost
    # time (and fail where the pretrained file is absent).
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.PRETRAINED = ''
    cfg.freeze()
    apply_cudnn(cfg)
    model = models.get_seg_model(cfg)
    load_model_weights(model, model_file)
    return evaluate_model(model.to(ctx.device), cfg, out_dir, ctx)
