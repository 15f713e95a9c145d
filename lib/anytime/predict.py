"""Running a trained (or randomly initialised) anytime network on image files: the model
of a config, images read and padded for it, and predictions written as PNGs.

Used by ``tools/predict.py``, ``tools/visualize.py`` and ``tools/profile_latency.py``.
"""
import logging
import os
import time

import numpy as np
import torch

import models
from config import config, update_config
from datasets.images import read_image
from datasets.labels import colorize
from datasets.spec import CITYSCAPES
from datasets.loaders import pad_to_multiple
from models.layout import to_inference
from utils.checkpoint import load_model_weights
from utils.errors import DataError
from utils.io import atomic_write_png
from utils.run_dir import FINAL_STATE, RUN_CONFIG
from utils.launch import add_overrides_argument
from utils.runtime import apply_cudnn, sync
from evaluation.figure import write_legend
from evaluation.submission import label_id_map
from .predictor import AnytimePredictor
from .latency import LatencyProfile, finish

logger = logging.getLogger(__name__)

LEGEND = 'legend.png'  # beside the prediction PNGs: the colour and labelId of each class


def add_model_arguments(parser, cfg_help="experiment YAML, or a run's config.yaml"):
    """``--cfg``, ``--device``, ``--threads`` and ``KEY VALUE`` overrides, as read by
    :func:`model_from_args`. Parse with ``utils.launch.parse_command_line`` so that
    overrides may come before or after the options."""
    parser.add_argument('--cfg', required=True, help=cfg_help)
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--threads', type=int, help='torch CPU threads')
    add_overrides_argument(parser)


def model_from_args(args):
    """The merged config and the model (see :func:`load_model`) of a command line made
    with :func:`add_model_arguments`, with the config's CUDNN flags applied; prints where
    the weights came from.

    Returns:
        tuple[CfgNode, AnytimeHRNet]: the config, and the model on ``args.device``.
    """
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    cfg = update_config(config.clone(), args)
    apply_cudnn(cfg)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, weights = load_model(cfg, args.cfg, torch.device(args.device))
    print(f'{args.cfg}, weights: {weights}, {args.device}, {torch.get_num_threads()} threads')
    return cfg, model


def load_model(cfg, cfg_path, device):
    """The network of ``cfg`` in eval mode on ``device``, with TEST.MODEL_FILE's weights,
    a run's ``final_state.pth`` for ``--cfg <run dir>/config.yaml``, or random weights
    (a warning) when neither is given.

    Returns:
        tuple[AnytimeHRNet, str]: the model and where its weights came from.
    """
    model = models.get_seg_model(cfg, pretrained=False)  # the checkpoint replaces every weight
    weights = cfg.TEST.MODEL_FILE
    if not weights and os.path.basename(cfg_path) == RUN_CONFIG:
        weights = os.path.join(os.path.dirname(os.path.abspath(cfg_path)), FINAL_STATE)
    if weights:
        load_model_weights(model, weights)
    else:
        weights = 'random initialisation'
        logger.warning('no TEST.MODEL_FILE: the model has random weights')
    return to_inference(model, device), weights


def write_prediction(labels, out_dir, name, spec=CITYSCAPES):
    """Write H x W trainIds as ``<name>_color.png`` (the data set's palette) and
    ``<name>_labelIds.png`` (its raw label values, e.g. Cityscapes labelIds; see
    ``evaluation.submission.label_id_map``). Returns the two paths."""
    color = os.path.join(out_dir, f'{name}_color.png')
    ids = os.path.join(out_dir, f'{name}_labelIds.png')
    atomic_write_png(color, colorize(labels, palette=spec.palette)[:, :, ::-1])
    atomic_write_png(ids, label_id_map(labels, spec))
    return color, ids


def write_palette_legend(out_dir, spec=CITYSCAPES):
    """Write ``legend.png`` into ``out_dir``: each class's colour in the ``*_color.png``
    files (with its RGB values) and its value in the ``*_labelIds.png`` files. A file of
    that name already there is left as it is (it is the same legend, or the user's).

    Returns:
        str: the legend's path.
    """
    path = os.path.join(out_dir, LEGEND)
    if not os.path.exists(path):
        values = label_id_map(np.arange(spec.num_classes), spec)
        write_legend(path, [(f'{name}: labelId {value}, RGB {r},{g},{b}', (r, g, b))
                            for name, value, (r, g, b)
                            in zip(spec.classes, values.tolist(), spec.palette)])
    return path


def predict_files(model, paths, out_dir, device, budget_ms=None, profile_path=None, log=print,
                  spec=CITYSCAPES):
    """Predict every image of ``paths`` within ``budget_ms`` and write its PNGs.

    Without a profile, every exit runs (a budget needs a profile measured on this machine
    at the padded input size, see ``tools/profile_latency.py``).

    Args:
        model (AnytimeHRNet): in eval mode on ``device``.
        paths (list[str]): image files.
        out_dir (str): where the PNGs go.
        device (torch.device): the model's device.
        budget_ms (float or None): time budget per image.
        profile_path (str or None): latency profile for the budget.
        log (callable): prints one line per image.
        spec (DatasetSpec): the classes, palette and raw label values of the PNGs.

    Returns:
        list[dict]: per image: ``image``, ``exit``, ``elapsed_ms``, ``color``, ``labelIds``.
    """
    if budget_ms is not None and profile_path is None:
        raise DataError('--budget-ms needs --profile: measure one for this model, input size '
                        'and machine with tools/profile_latency.py --out profile.json')
    profile = LatencyProfile.load(profile_path) if profile_path else None
    rows = []
    for path in paths:
        image, _ = read_image(path)
        h, w = image.shape[-2:]
        x = pad_to_multiple(image)[None].to(device)
        if profile is None:
            start = time.perf_counter()
            with torch.no_grad():
                _, labels = finish(model(x)[-1], x.shape[-2:])
            sync(device)
            exit_, elapsed = 4, (time.perf_counter() - start) * 1000
        else:
            result = AnytimePredictor(model, profile)(x, budget_ms)
            exit_, labels, elapsed = result.exit, result.labels, result.elapsed_ms
        name = os.path.splitext(os.path.basename(path))[0]
        if labels is None:
            log(f'{path}: no exit fits in {budget_ms} ms (exit 1 alone needs about '
                f'{profile.exit_ms()[0]:.0f} ms); nothing written')
            rows.append({'image': path, 'exit': 0, 'elapsed_ms': elapsed})
            continue
        color, ids = write_prediction(labels[0, :h, :w].cpu().numpy(), out_dir, name, spec)
        log(f'{path}: exit {exit_} in {elapsed:.1f} ms'
            + (f' (budget {budget_ms:g} ms)' if budget_ms is not None else '')
            + f' -> {color}, {ids}')
        rows.append({'image': path, 'exit': exit_, 'elapsed_ms': elapsed, 'color': color,
                     'labelIds': ids})
    if any('color' in row for row in rows):
        log(f'class colours and labelIds: {write_palette_legend(out_dir, spec)}')
    return rows
