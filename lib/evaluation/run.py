"""Evaluation of a trained anytime network: per-exit mIoU, per-class IoU, GFLOPs and
parameters, written to ``result.txt`` and ``test_stats.json`` (spec section 4).

Used by ``tools/test_ee.py`` (and ``tools/test.py``) and at the end of training.
"""
import logging
import os

import torch

import datasets
import models
from datasets.checks import check_evaluation_inputs
from datasets.loaders import eval_loader
from datasets.spec import dataset_spec
from models.flops import FlopsCounter
from models.layout import to_inference
from utils.checkpoint import load_model_weights
from utils.distributed import all_reduce, barrier
from utils.errors import ConfigError, UserError
from utils.io import atomic_write_text, check_writable, run_directory
from utils.logger import log_to_file, setup_logger
from utils.run_dir import EVAL_DIR, FINAL_STATE, RUN_CONFIG, evaluation_directory
from utils.runtime import apply_cudnn, autocast
from .loop import evaluate
from .metrics import FlopsMeter, result_line
from .panel_writer import PanelWriter
from .passes import EvalModes
from .report import modes_json, stats_json, write_report
from .submission import DEFAULT_THREADS, SubmissionWriter

logger = logging.getLogger(__name__)


def resolve_test_paths(cfg, cfg_path):
    """Where an evaluation reads its weights and writes its results.

    - ``--cfg <run dir>/config.yaml``: the run's directory, and its ``final_state.pth``
      unless TEST.MODEL_FILE names another file;
    - any other experiment file: ``OUTPUT_DIR/<dataset>/<cfg stem>`` and TEST.MODEL_FILE.

    When that directory holds a run of another configuration or other weights, the
    results go to its subdirectory ``eval/<KEY=value,...>`` instead (see
    :func:`utils.run_dir.evaluation_directory`), so that the run's own result.txt and
    test_stats.json keep matching its config.yaml.

    Args:
        cfg (CfgNode): the merged config.
        cfg_path (str): the ``--cfg`` argument.

    Returns:
        tuple[str, str]: (output directory, model file).
    """
    if os.path.basename(cfg_path) == RUN_CONFIG:
        base_dir = os.path.dirname(os.path.abspath(cfg_path))
        model_file = cfg.TEST.MODEL_FILE or os.path.join(base_dir, FINAL_STATE)
    elif not cfg.TEST.MODEL_FILE:
        raise ConfigError(f'TEST.MODEL_FILE is empty: add TEST.MODEL_FILE <checkpoint>.pth to '
                          f'the command line, or pass --cfg <run dir>/{RUN_CONFIG} to evaluate '
                          f"a training run's {FINAL_STATE}")
    else:
        base_dir, model_file = run_directory(cfg, cfg_path), cfg.TEST.MODEL_FILE
    return evaluation_directory(cfg, base_dir, model_file), model_file


def build_eval_modes(cfg):
    """The passes of evaluation from TEST.{MULTI_SCALE, SCALE_LIST, BASE_SIZE, FLIP_TEST,
    IMAGE_SIZE}: scales only with MULTI_SCALE (otherwise the image keeps its size), and
    sliding windows of TEST.IMAGE_SIZE [w, h] where a pass is larger; a flipped pass
    swaps the classes of DATASET.FLIP_PAIRS.

    Args:
        cfg (CfgNode): the merged config.

    Returns:
        EvalModes
    """
    test = cfg.TEST
    scales = tuple(float(s) for s in test.SCALE_LIST) if test.MULTI_SCALE else ()
    if test.MULTI_SCALE and (not scales or min(scales) <= 0 or test.BASE_SIZE <= 0):
        raise ConfigError(f'TEST.MULTI_SCALE needs a non-empty TEST.SCALE_LIST of positive '
                          f'scales and a positive TEST.BASE_SIZE, got {list(test.SCALE_LIST)} '
                          f'and {test.BASE_SIZE}')
    if len(test.IMAGE_SIZE) != 2 or min(test.IMAGE_SIZE) <= 0:
        raise ConfigError(f'TEST.IMAGE_SIZE must be [width, height], got {list(test.IMAGE_SIZE)}')
    width, height = test.IMAGE_SIZE
    spec = dataset_spec(cfg)
    return EvalModes(scales=scales, base_size=test.BASE_SIZE, flip=bool(test.FLIP_TEST),
                     crop_size=(height, width),
                     flip_permutation=tuple(spec.flip_permutation().tolist())
                     if spec.flip_pairs else ())


def submission_exits(submit_exit, num_exits=4):
    """The exits ``--submit`` writes: ``--exit K`` alone, or every exit."""
    if submit_exit is None:
        return list(range(1, num_exits + 1))
    if submit_exit not in range(1, num_exits + 1):
        raise ConfigError(f'--exit must be 1..{num_exits}, got {submit_exit}')
    return [submit_exit]


def evaluate_model(model, cfg, out_dir, ctx, submit_dir=None, submit_exit=None,
                   submit_threads=DEFAULT_THREADS, show_dir=None):
    """Evaluate ``model`` on DATASET.TEST_SET and write ``result.txt`` and
    ``test_stats.json`` into ``out_dir`` (rank 0).

    Every process evaluates its shard of the images; confusion matrices and FLOPs are
    combined over processes. FLOPs are counted per image from the masks of the
    evaluation's own forward (``models.flops.FlopsCounter``); with flip, multi-scale or
    sliding windows (see :func:`build_eval_modes`), every pass of every image is counted
    and an image's figure is the sum over its passes.

    Args:
        model (nn.Module): the anytime network on ``ctx.device``.
        cfg (CfgNode): the merged config.
        out_dir (str): where to write the results.
        ctx (DistContext): this process.
        submit_dir (str or None): also write labelId PNGs for the benchmark server here
            (``evaluation.submission``); required for a list without labels.
        submit_exit (int or None): with ``submit_dir``, write exit K only (1-based).
        submit_threads (int): threads that write the PNGs (0: the evaluating thread).
        show_dir (str or None): also write a panel of every image there, in every
            evaluation mode (``evaluation.panel_writer``).

    Returns:
        dict: ``mIoU`` and ``class_IoU`` (per exit, in [0, 1]; absent without labels),
        ``result`` (the result.txt line), and the test_stats entries.
    """
    dataset = datasets.build_dataset(cfg, cfg.DATASET.TEST_SET, train=False)
    labelled = getattr(dataset, 'labelled', True)
    if not labelled and submit_dir is None:
        raise ConfigError(f'{cfg.DATASET.TEST_SET} (DATASET.TEST_SET) lists images without '
                          'labels, so there is no mIoU to compute: add --submit DIR to write '
                          'their predictions')
    modes = build_eval_modes(cfg)
    writer = None
    if submit_dir is not None:
        writer = SubmissionWriter(submit_dir, submission_exits(submit_exit), submit_threads,
                                  dataset_spec(cfg))
        barrier()  # every process checked the folders before any writes into them
    loader = eval_loader(dataset, cfg.TEST.BATCH_SIZE_PER_GPU, ctx, cfg.WORKERS, cfg.PIN_MEMORY,
                         cfg.TRAIN.IGNORE_LABEL)
    logger.info(f'evaluating {dataset} on {ctx.world_size} process(es)')
    if modes.scales or modes.flip:
        logger.info(f'passes per image: scales {list(modes.scales) or "as is"}, flip '
                    f'{modes.flip}, sliding windows of {cfg.TEST.IMAGE_SIZE} where larger')
    meter = FlopsMeter(FlopsCounter(model))
    panels = None
    if show_dir:
        panels = PanelWriter(model, show_dir, cfg.TRAIN.IGNORE_LABEL, dataset_spec(cfg))
    try:
        with autocast(ctx.device, cfg.TEST.AMP):
            matrices = evaluate(model, loader, cfg.DATASET.NUM_CLASSES,
                                cfg.TRAIN.IGNORE_LABEL, ctx, flops_meter=meter, desc='test',
                                modes=modes, writer=writer, on_batch=panels)
    finally:
        if writer is not None:
            writer.close()
    if panels is not None:
        report_panels(panels.count, meter.count, show_dir, cfg.DATASET.TEST_SET, labelled)
    gflops, params = meter.gflops(), meter.params
    stats = stats_json(gflops, params)
    if modes.scales or modes.flip or meter.forwards != meter.count:
        stats.update(modes_json(modes, meter.forwards / meter.count))
    results = dict(stats)
    if labelled:
        mious = [m.mean_iou() for m in matrices]
        results.update(mIoU=mious, result=result_line(mious),
                       class_IoU=[m.iou().tolist() for m in matrices])
    if ctx.is_main:
        write_report(cfg, out_dir, matrices if labelled else None, meter, stats, results)
        if writer is not None:
            exits = ', '.join(f'exit{k}' for k in writer.exits)
            logger.info(f'wrote the predictions of {len(dataset)} images ({exits}) as '
                        f'labelId PNGs to {submit_dir}')
    return results


def report_panels(count, images, show_dir, test_set, labelled=True):
    """Say how many panels ``--show-dir`` wrote, over all processes, and how many
    evaluated images got none; none at all is an error.

    Args:
        count (int): panels this process wrote.
        images (int): images evaluated, over all processes.
        show_dir (str): the ``--show-dir`` folder.
        test_set (str): DATASET.TEST_SET.
        labelled (bool): whether the list has labels (otherwise panels show none).

    Raises:
        UserError: no panel was written.
    """
    count = int(all_reduce(torch.tensor(count)))
    if not count:
        why = f'none of the {images} evaluated images got one' if images else \
            f'no image was evaluated: list images in DATASET.TEST_SET ({test_set})'
        raise UserError(f'--show-dir {show_dir}: no panel was drawn, since {why}')
    logger.info(f'wrote {count} panel(s) to {show_dir}'
                + ('' if labelled else f', without ground truth ({test_set} has no labels)'))
    if count < images:
        logger.warning(f'{images - count} of the {images} evaluated images got no panel in '
                       f'{show_dir}')


def _evaluation_config(cfg, model_file):
    """The merged config of an evaluation, naming the weights it evaluated, so that
    ``--cfg`` on it repeats the evaluation."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.TEST.MODEL_FILE = os.path.abspath(model_file)
    return cfg.dump()


def check_evaluation_outputs(cfg_path, out_dir, submit_dir=None, show_dir=None):
    """Refuse an output folder of an evaluation that cannot be written, before any work
    (see ``utils.io.check_writable``).

    Args:
        cfg_path (str): the ``--cfg`` argument (a run's config.yaml puts the results in
            the run's folder, any other file under OUTPUT_DIR).
        out_dir (str): the results' folder, from :func:`resolve_test_paths`.
        submit_dir, show_dir (str or None): ``--submit`` and ``--show-dir``.
    """
    check_writable(out_dir, '--cfg' if os.path.basename(cfg_path) == RUN_CONFIG
                   else 'OUTPUT_DIR')
    for option, folder in (('--submit', submit_dir), ('--show-dir', show_dir)):
        if folder:
            check_writable(folder, option)


def run_evaluation(cfg, cfg_path, ctx, submit_dir=None, submit_exit=None, show_dir=None):
    """Everything ``tools/test_ee.py`` does: build the model of the config, load its
    weights strictly (TEST.MODEL_FILE, or a run's ``final_state.pth``) and test it.

    Args:
        cfg (CfgNode): the merged config.
        cfg_path (str): the ``--cfg`` argument.
        ctx (DistContext): this process.
        submit_dir (str or None): ``--submit``: also write benchmark-server PNGs there.
        submit_exit (int or None): ``--exit``: only this exit's PNGs.
        show_dir (str or None): ``--show-dir``: also write a panel of every image there.
    """
    out_dir, model_file = resolve_test_paths(cfg, cfg_path)
    if submit_dir is not None:
        submission_exits(submit_exit)  # a wrong --exit fails before the model loads
    # Nothing is written before the data, the output folders and the weights are known
    # to work: a refused evaluation leaves no folder behind.
    check_evaluation_inputs(cfg)
    check_evaluation_outputs(cfg_path, out_dir, submit_dir, show_dir)
    setup_logger(None, None, 'test', ctx.is_main)  # console only, until the checks pass
    apply_cudnn(cfg)
    # The checkpoint replaces every weight, so ImageNet initialisation would only cost
    # time (and fail where the pretrained file is absent).
    model = models.get_seg_model(cfg, pretrained=False)
    load_model_weights(model, model_file)
    stem = os.path.splitext(os.path.basename(cfg_path))[0]
    log_file = setup_logger(out_dir, stem, 'test', ctx.is_main)
    logger.info(f'log file: {log_file}')
    logger.info(f'weights: {model_file}')
    if ctx.is_main:
        log_to_file(cfg.dump())
        if os.path.basename(os.path.dirname(out_dir)) == EVAL_DIR:
            atomic_write_text(os.path.join(out_dir, RUN_CONFIG),
                              _evaluation_config(cfg, model_file))
    model = to_inference(model, ctx.device)  # once; evaluation keeps it in this layout
    return evaluate_model(model, cfg, out_dir, ctx, submit_dir, submit_exit,
                          show_dir=show_dir)
