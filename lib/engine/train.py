"""A whole training run of the anytime network (spec section 4): what
``tools/train_ee.py`` does, under any launcher.

Per epoch: train, validate every TRAIN.EVAL_INTERVAL epochs (keeping ``best.pth`` by the
mean mIoU of the exits), then write ``checkpoint.pth.tar`` atomically. With AUTO_RESUME
a run continues from that checkpoint and ends as if it had never stopped: the data
order, augmentation and learning rate of an epoch depend only on the epoch (the weights
are bit-identical on the CPU; on CUDA see CUDNN.DETERMINISTIC in docs/training.md). At the end:
``final_state.pth``, then the evaluation's ``result.txt`` and ``test_stats.json``.
"""
import logging
import os
from dataclasses import dataclass
from typing import Optional

import torch

import datasets
import models
from datasets.checks import check_training_inputs
from datasets.loaders import STRIDE, eval_loader, train_loader
from datasets.spec import dataset_spec
from utils.checkpoint import check_pretrained_file
from utils.distributed import barrier, broadcast_buffers, unwrap, wrap_model
from utils.errors import ConfigError, Interrupted
from utils.io import atomic_torch_save, atomic_write_text, check_writable, run_directory, \
    tensorboard_directory
from utils.logger import log_to_file, setup_logger, tensorboard_writer
from utils.run_dir import FINAL_STATE, RUN_CONFIG, check_training_directory, decide_on_rank0, \
    hold_run_lock
from utils.runtime import apply_cudnn, autocast, seed_everything
from evaluation.loop import evaluate
from evaluation.run import evaluate_model
from .amp import MixedPrecision, MixedPrecisionError
from .checkpoints import BEST, CHECKPOINT, TrainState, decide_resume, \
    read_checkpoint_everywhere, restore_model, restore_optimizer, save_checkpoint
from .criterion import FullModel, build_criterion
from .epoch import EpochInterrupted, NonFiniteLossError, train_one_epoch
from .schedule import iterations_per_epoch

logger = logging.getLogger(__name__)

INIT_SEED = 304  # weights of a fresh model; DDP copies rank 0's to the others anyway
EPOCH_SEED_STRIDE = 123  # seed of epoch e on rank r: e * stride + r, as in the original


@dataclass
class Phase:
    """Consecutive epochs sharing a training list and a poly schedule.

    Args:
        name (str): for messages.
        loader (DataLoader): training loader of this process.
        first_epoch (int): first epoch of the phase (0-based, run-wide).
        end_epoch (int): one past its last epoch.
        base_lr (float): base learning rate of the poly schedule.
        epoch_iters (int): schedule iterations per epoch.
        first_lr (float): learning rate of the phase's very first step (the
            optimiser's initial one in the original).
    """
    name: str
    loader: object
    first_epoch: int
    end_epoch: int
    base_lr: float
    epoch_iters: int
    first_lr: float

    @property
    def max_it(self):
        return max(1, (self.end_epoch - self.first_epoch) * self.epoch_iters)


@dataclass
class RunProgress:
    """Where a run stands, for the one line that reports an interruption (Ctrl-C).

    Args:
        checkpoint (str): the run's ``checkpoint.pth.tar``.
        stage (str): what the run is doing, e.g. 'epoch 3/12'.
        saved_epochs (int or None): the epochs its checkpoint on disk holds (None: no
            checkpoint yet).
    """
    checkpoint: str
    stage: str = 'its setup'
    saved_epochs: Optional[int] = None

    def interrupted(self, error):
        """What a Ctrl-C (``error``, a KeyboardInterrupt) at this point leaves."""
        where = self.stage
        if isinstance(error, EpochInterrupted):
            where += f' after {error.steps} of its {error.total} iterations'
        kept = ('none' if self.saved_epochs is None else
                f'{self.checkpoint} ({self.saved_epochs} epoch(s) done)')
        return f'training interrupted in {where}; last checkpoint: {kept}'


def select_trainable(network, ee_only=False, alle_only=False):
    """Freeze everything but the exits for TRAIN.EE_ONLY (exits 1-3) or TRAIN.ALLE_ONLY
    (exits 1-3 and ``last_layer``).

    Args:
        network (nn.Module): the anytime network (attributes exit1..exit3, last_layer).
        ee_only (bool): TRAIN.EE_ONLY.
        alle_only (bool): TRAIN.ALLE_ONLY.

    Returns:
        list[nn.Module] or None: the modules that train (None: the whole network).
    """
    if not (ee_only or alle_only):
        return None
    names = ['exit1', 'exit2', 'exit3'] + (['last_layer'] if alle_only else [])
    trainable = []
    for name in names:
        if not hasattr(network, name):
            raise AttributeError(f'TRAIN.EE_ONLY/ALLE_ONLY need a network with a {name} module; '
                                 f'{type(network).__name__} has none')
        trainable.append(getattr(network, name))
    for p in network.parameters():
        p.requires_grad = False
    for module in trainable:
        for p in module.parameters():
            p.requires_grad = True
    return trainable


def build_optimizer(cfg, model, base_lr):
    """SGD over the parameters that require gradients (TRAIN.OPTIMIZER, MOMENTUM, WD,
    NESTEROV).

    Args:
        cfg (CfgNode): the config.
        model (nn.Module): the (wrapped) training module.
        base_lr (float): initial learning rate.
    """
    if cfg.TRAIN.OPTIMIZER != 'sgd':
        raise ConfigError(f"TRAIN.OPTIMIZER {cfg.TRAIN.OPTIMIZER!r} is not supported: use 'sgd'")
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(params, lr=base_lr, momentum=cfg.TRAIN.MOMENTUM,
                           weight_decay=cfg.TRAIN.WD, nesterov=cfg.TRAIN.NESTEROV)


def main_phase_lrs(train_cfg):
    """(base lr, first step's lr) of the main phase.

    EE_ONLY / ALLE_ONLY with EE_ONLY_LR 'original' follow what the original release did:
    its optimiser starts at EXTRA_LR, but after every step its schedule sets TRAIN.LR x
    poly, so the first step runs at EXTRA_LR and the rest at LR x poly. 'extra' gives
    EXTRA_LR x poly throughout, as the original's documentation describes.
    """
    t = train_cfg
    if not (t.EE_ONLY or t.ALLE_ONLY):
        return t.LR, t.LR
    if t.EE_ONLY_LR == 'extra':
        return t.EXTRA_LR, t.EXTRA_LR
    return t.LR, t.EXTRA_LR


def plan_phases(cfg, ctx, build_loader):
    """The main phase (TRAIN_SET for END_EPOCH epochs at LR; with EE_ONLY/ALLE_ONLY see
    :func:`main_phase_lrs`) and the optional extra phase (EXTRA_TRAIN_SET for
    EXTRA_EPOCH epochs at EXTRA_LR).

    Args:
        cfg (CfgNode): the config.
        ctx (DistContext): this process.
        build_loader (callable): list path -> training DataLoader.
    """
    t = cfg.TRAIN
    if t.EXTRA_EPOCH > 0 and not cfg.DATASET.EXTRA_TRAIN_SET:
        raise ConfigError(f'TRAIN.EXTRA_EPOCH is {t.EXTRA_EPOCH} but DATASET.EXTRA_TRAIN_SET is '
                          'empty: set both, or TRAIN.EXTRA_EPOCH 0')
    phases = []
    for name, list_path, first, end, (lr, first_lr) in (
            ('train', cfg.DATASET.TRAIN_SET, 0, t.END_EPOCH, main_phase_lrs(t)),
            ('extra', cfg.DATASET.EXTRA_TRAIN_SET, t.END_EPOCH, t.END_EPOCH + t.EXTRA_EPOCH,
             (t.EXTRA_LR, t.EXTRA_LR))):
        if end <= first:
            continue
        loader = build_loader(list_path)
        iters = iterations_per_epoch(len(loader.dataset), t.BATCH_SIZE_PER_GPU, ctx.world_size)
        phases.append(Phase(name, loader, first, end, lr, iters, first_lr))
    return phases


def validate(model, loader, cfg, ctx, writer=None, step=0, best=0.0):
    """Per-exit mIoU on the validation loader, logged to the console and TensorBoard.

    Args:
        model (nn.Module): the anytime network.
        loader (DataLoader): this process's shard of DATASET.TEST_SET.
        cfg (CfgNode): reads DATASET.NUM_CLASSES and TRAIN.IGNORE_LABEL.
        ctx (DistContext): this process.
        writer (SummaryWriter or None): TensorBoard writer (rank 0).
        step (int): TensorBoard x of the epoch's last step, so that a resume, which
            purges the steps of the interrupted epoch, keeps this point.
        best (float): best mean mIoU so far, for the message.

    Returns:
        float: the mean mIoU over the exits.
    """
    with autocast(ctx.device, cfg.TEST.AMP):
        matrices = evaluate(model, loader, cfg.DATASET.NUM_CLASSES, cfg.TRAIN.IGNORE_LABEL,
                            ctx, desc='val')
    mious = [m.mean_iou() for m in matrices]
    mean = sum(mious) / len(mious)
    logger.info('validation mIoU per exit: ' + ' / '.join(f'{m * 100:.2f}' for m in mious)
                + f' (mean {mean * 100:.2f}, best {max(mean, best) * 100:.2f})')
    if writer is not None:
        for k, m in enumerate(mious, start=1):
            writer.add_scalar(f'valid/mIoU_exit{k}', m, step)
        writer.add_scalar('valid/mIoU_mean', mean, step)
    return mean


def check_run_outputs(cfg, cfg_path, out_dir):
    """The checks of :func:`utils.run_dir.check_training_directory`, after those of the
    folders the run writes (OUTPUT_DIR's, and LOG_DIR's when set), so that an unwritable
    folder is refused before any work. Returns the take-over line, if any."""
    check_writable(out_dir, 'OUTPUT_DIR')
    if cfg.LOG_DIR:
        check_writable(tensorboard_directory(cfg, cfg_path), 'LOG_DIR')
    return check_training_directory(cfg, out_dir)


def train(cfg, cfg_path, ctx):
    """Run (or resume) the training described by ``cfg`` and evaluate the result.

    Args:
        cfg (CfgNode): the merged, frozen config.
        cfg_path (str): the ``--cfg`` file (its stem names the output directory).
        ctx (DistContext): this process, from ``utils.distributed.init_distributed``.

    Returns:
        dict: the final evaluation (see ``evaluation.run.evaluate_model``).
    """
    check_training_inputs(cfg, STRIDE)  # before anything is written or trained
    check_pretrained_file(cfg.MODEL.PRETRAINED, cfg.MODEL.EXTRA.STAGE2.NUM_CHANNELS[0])
    out_dir = run_directory(cfg, cfg_path)
    # Nothing is written before the run directory, the data and the batch size are
    # known to work: a refused launch leaves no trace, and its fix is not "another run".
    take_over = decide_on_rank0(lambda: check_run_outputs(cfg, cfg_path, out_dir), ctx)
    setup_logger(None, None, 'train', ctx.is_main)  # console only, until the checks pass

    def build_loader(list_path):
        dataset = datasets.build_dataset(cfg, list_path, train=True)
        logger.info(f'training set {dataset}')
        return train_loader(dataset, cfg.TRAIN.BATCH_SIZE_PER_GPU, ctx, cfg.TRAIN.SHUFFLE,
                            cfg.WORKERS, cfg.PIN_MEMORY)

    phases = plan_phases(cfg, ctx, build_loader)
    val_loader = None
    if cfg.TRAIN.EVAL_INTERVAL > 0:
        val_set = datasets.build_dataset(cfg, cfg.DATASET.TEST_SET, train=False)
        val_loader = eval_loader(val_set, cfg.TEST.BATCH_SIZE_PER_GPU, ctx, cfg.WORKERS,
                                 cfg.PIN_MEMORY, cfg.TRAIN.IGNORE_LABEL)

    stem = os.path.splitext(os.path.basename(cfg_path))[0]
    log_file = setup_logger(out_dir, stem, 'train', ctx.is_main)
    if ctx.is_main:
        logger.info(f'output directory {out_dir}, log file {log_file}')
        logger.info(f'{ctx.world_size} process(es) on {ctx.device.type}')
        if take_over:
            logger.info(take_over)
        dump = cfg.dump()
        log_to_file(dump)  # the console stays short; config.yaml holds it too
        atomic_write_text(os.path.join(out_dir, RUN_CONFIG), dump)
    progress = RunProgress(os.path.join(out_dir, CHECKPOINT))
    lock = hold_run_lock(out_dir) if ctx.is_main else None  # for as long as it trains
    try:
        return _train_run(cfg, cfg_path, ctx, out_dir, phases, val_loader, progress,
                          purge_events=bool(take_over))
    except KeyboardInterrupt as e:
        resume = cfg.AUTO_RESUME or cfg.TRAIN.RESUME
        raise Interrupted(progress.interrupted(e), [] if resume else ['AUTO_RESUME', 'True'])
    finally:
        if lock is not None:
            lock.close()


def _train_run(cfg, cfg_path, ctx, out_dir, phases, val_loader, progress, purge_events):
    """The training and evaluation of :func:`train`, once the run's directory is its own.

    Args:
        phases (list[Phase]): from :func:`plan_phases`.
        val_loader (DataLoader or None): validation loader (None: no validation).
        progress (RunProgress): kept up to date, for the message of a Ctrl-C.
        purge_events (bool): the run took over the directory of a start that failed:
            its TensorBoard events are hidden behind this run's.
    """
    end_epoch = phases[-1].end_epoch if phases else 0
    apply_cudnn(cfg)

    seed_everything(INIT_SEED)
    network = models.get_seg_model(cfg)
    full_model = FullModel(network, build_criterion(cfg, dataset_spec(cfg).class_weights))
    trainable = select_trainable(network, cfg.TRAIN.EE_ONLY, cfg.TRAIN.ALLE_ONLY)

    checkpoint_path = os.path.join(out_dir, CHECKPOINT)
    state = TrainState(epoch=cfg.TRAIN.BEGIN_EPOCH)
    resume = decide_resume(cfg.AUTO_RESUME or cfg.TRAIN.RESUME, checkpoint_path, ctx)
    checkpoint = read_checkpoint_everywhere(checkpoint_path, ctx) if resume else None
    if resume:
        # Weights first, before DistributedDataParallel copies rank 0's to the others.
        state = restore_model(checkpoint, checkpoint_path, full_model)
        progress.saved_epochs = state.epoch
        logger.info(f'resuming from {checkpoint_path}: {state.summary()}')
    elif os.path.isfile(checkpoint_path):
        logger.warning(f'{checkpoint_path} exists and will be overwritten (set AUTO_RESUME '
                       'True to continue that run instead)')

    # Without the RBF fill, masked convolutions' Lambda gets no gradient.
    unused = cfg.MASK.USE and cfg.MASK.INTERPOLATION != 'rbf'
    model = wrap_model(full_model, ctx, find_unused_parameters=unused)
    full_model = unwrap(model)
    optimizer = build_optimizer(cfg, model, phases[0].first_lr if phases else cfg.TRAIN.LR)
    precision = MixedPrecision(ctx.device, cfg.TRAIN.AMP)
    if resume:  # the optimiser's state goes to the device of its (wrapped) parameters
        restore_optimizer(checkpoint, checkpoint_path, optimizer, precision)
        checkpoint = None
    writer = tensorboard_writer(tensorboard_directory(cfg, cfg_path), ctx.is_main,
                                purge_step=state.iteration if resume or purge_events else None)

    start_epoch = state.epoch
    for epoch in range(start_epoch, end_epoch):
        phase = next(p for p in phases if p.first_epoch <= epoch < p.end_epoch)
        # Data order and augmentation depend only on the epoch (the sampler seeds each
        # sample, whichever worker reads it), the rest of the process's randomness on
        # (epoch, rank): a resumed run repeats what the interrupted one would have done.
        seed_everything(epoch * EPOCH_SEED_STRIDE + ctx.rank)
        phase.loader.sampler.set_epoch(epoch)
        progress.stage = f'epoch {epoch + 1}/{end_epoch}'
        try:
            stats = train_one_epoch(
                model, phase.loader, optimizer, epoch=epoch, base_lr=phase.base_lr,
                first_lr=phase.first_lr, max_it=phase.max_it,
                first_it=(epoch - phase.first_epoch) * phase.epoch_iters,
                ctx=ctx, trainable=trainable, writer=writer, global_step=state.iteration,
                print_freq=cfg.PRINT_FREQ, num_epochs=end_epoch, precision=precision)
        except (NonFiniteLossError, MixedPrecisionError):
            logger.error(f'training stopped; the last good checkpoint {checkpoint_path} '
                         f'({state.epoch} epochs) is intact')
            raise
        state.iteration = stats['global_step']
        logger.info(f'epoch {epoch + 1}/{end_epoch} ({phase.name}) mean loss {stats["loss"]:.4f}')
        if stats['skipped_steps'] or stats['non_finite_steps']:
            scale = '' if precision.scale is None else f', loss scale now {precision.scale:g}'
            logger.info(f'{stats["skipped_steps"]} step(s) skipped by the gradient scaler '
                        f'(infinite float16 gradients), {stats["non_finite_steps"]} for a '
                        f'non-finite loss{scale}')

        # Every process evaluates with the BatchNorm statistics that rank 0 saves.
        broadcast_buffers(full_model)
        if val_loader is not None and (epoch + 1) % cfg.TRAIN.EVAL_INTERVAL == 0:
            progress.stage = f'the validation after epoch {epoch + 1}/{end_epoch}'
            mean = validate(full_model.model, val_loader, cfg, ctx, writer,
                            step=state.iteration - 1, best=state.best_miou)
            if mean > state.best_miou:
                state.best_miou = mean
                if ctx.is_main:
                    atomic_torch_save(full_model.state_dict(), os.path.join(out_dir, BEST))

        state.epoch = epoch + 1
        if ctx.is_main:
            save_checkpoint(checkpoint_path, state, full_model, optimizer, precision)
            progress.saved_epochs = state.epoch
            if writer is not None:
                writer.flush()
        barrier()

    if ctx.is_main:
        if start_epoch >= end_epoch and not resume:  # nothing to train: still resumable
            save_checkpoint(checkpoint_path, state, full_model, optimizer, precision)
        atomic_torch_save(full_model.state_dict(), os.path.join(out_dir, FINAL_STATE))
        logger.info(f'training done: {os.path.join(out_dir, FINAL_STATE)}')
        if writer is not None:
            writer.close()
    barrier()
    progress.stage = 'the final evaluation'
    return evaluate_model(full_model.model, cfg, out_dir, ctx)
