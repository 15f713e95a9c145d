"""Which directory a training run or an evaluation writes to, so that no run is ever
replaced by, or mixed with, the files of another.

A run's directory (``OUTPUT_DIR/<dataset>/<cfg file stem>``) holds the ``config.yaml``
of the run that made it. Training checks it before writing anything:

- no ``config.yaml``: a new run;
- a process is training there now (it holds a lock on ``config.yaml``): refused;
- nothing to protect (:func:`protected_entries` is empty: only what a start writes
  before its first checkpoint, such as a start that failed on a missing weights file or
  a broken image): taken over, whatever its configuration; the new run's log says so
  and names the keys that changed, and the failed start's log files stay;
- a different configuration (keys of :data:`NEUTRAL_KEYS` aside): refused, naming the
  keys that differ;
- the same configuration: continued with ``AUTO_RESUME True``; refused without it,
  whether the run finished (``final_state.pth``) or not.

An evaluation writes into the run's directory when it evaluates the run's own
configuration and weights, and otherwise into ``<run>/eval/<KEY=value,...>/``, named
after what differs, with its merged ``config.yaml`` beside its results.
"""
import hashlib
import os
import re
import time

import torch.distributed as dist

try:
    import fcntl
except ImportError:  # Windows: no flock, so a running start goes unnoticed there
    fcntl = None

from config import RUN_CONFIG, config_differences, load_config_file
from .errors import ConfigError, RunDirectoryError, UserError

FINAL_STATE = 'final_state.pth'
EVAL_DIR = 'eval'

# Keys that do not change what a run computes: how it is resumed, logged, loaded and
# where its files go. A run may continue with other values of these.
NEUTRAL_KEYS = (
    'AUTO_RESUME', 'TRAIN.RESUME',  # how to start, not what
    'PRINT_FREQ', 'WORKERS', 'PIN_MEMORY', 'GPUS', 'RANK',  # logging and loading
    'OUTPUT_DIR', 'LOG_DIR',  # where the files go (the run may have been moved)
    'TEST.MODEL_FILE', 'TEST.BATCH_SIZE_PER_GPU',  # evaluation-only, same results
)
# With AUTO_RESUME, a finished run may be continued on an extra training list (a phase
# with its own schedule that does not change the epochs already trained).
EXTENSION_KEYS = ('DATASET.EXTRA_TRAIN_SET', 'TRAIN.EXTRA_EPOCH', 'TRAIN.EXTRA_LR')
# Keys that only shape training (and the hardware), not what an evaluation of given
# weights computes.
TRAINING_ONLY_PREFIXES = ('TRAIN.', 'LOSS.', 'CUDNN.')
TRAINING_ONLY_KEYS = ('DATASET.TRAIN_SET', 'DATASET.EXTRA_TRAIN_SET', 'MODEL.PRETRAINED',
                      'MODEL.LOAD_STAGE')
EVALUATION_KEYS = ('TRAIN.IGNORE_LABEL',)  # a TRAIN key that the metric reads
NAME_LIMIT = 100  # characters of an evaluation subdirectory's name before hashing
# What a start writes before its first checkpoint: its config.yaml, its log file
# (<stem>_<time>_<pid>_train.log, named afresh by every start), TensorBoard events (when
# LOG_DIR is empty) and the hidden temporary file of an interrupted atomic write
# (utils.io: .<name>.<random>.tmp). Everything else a run or its evaluations write holds
# work: checkpoint.pth.tar, best.pth, final_state.pth, result.txt, test_stats.json,
# eval/, sweep results, panels, or any file of the user's.
LOG_SUFFIX = '.log'
EVENTS_PREFIX = 'events.out.tfevents.'
TEMPORARY_SUFFIX = '.tmp'
LOCK_TRIES, LOCK_WAIT_S = 50, 0.1  # another start's check holds the lock for milliseconds


def _format_differences(differences):
    return '\n'.join(f'    {key}: {old!r} -> {new!r}' for key, old, new in differences)


def _read_run_config(out_dir):
    path = os.path.join(out_dir, RUN_CONFIG)
    try:
        return load_config_file(path)
    except ConfigError as e:
        raise RunDirectoryError(
            f'{out_dir} holds a run whose {RUN_CONFIG} cannot be read ({e}); nothing was '
            'written. Move that directory away or set OUTPUT_DIR to another folder.') from e


def _left_by_a_start(folder, name):
    if not os.path.isfile(os.path.join(folder, name)):
        return False
    return (name == RUN_CONFIG or name.endswith(LOG_SUFFIX) or name.startswith(EVENTS_PREFIX)
            or (name.startswith('.') and name.endswith(TEMPORARY_SUFFIX)))


def protected_entries(out_dir):
    """What in a run directory holds work that another run must not replace or mix
    with: every entry but the files a start writes before its first checkpoint
    (``config.yaml``, ``*.log``, ``events.out.tfevents.*``, ``.*.tmp``).

    Args:
        out_dir (str): an existing run directory.

    Returns:
        list[str]: the names of those entries, sorted (empty: nothing to protect).
    """
    return sorted(n for n in os.listdir(out_dir) if not _left_by_a_start(out_dir, n))


def _running(out_dir):
    """Whether a process holds the lock of :func:`hold_run_lock` on ``out_dir``."""
    if fcntl is None:
        return False
    try:
        with open(os.path.join(out_dir, RUN_CONFIG), 'rb') as f:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)  # released when f closes
    except BlockingIOError:
        return True
    except OSError:  # unreadable (reported when it is read), or a filesystem without locks
        return False
    return False


def hold_run_lock(out_dir):
    """Lock the ``config.yaml`` of the run in ``out_dir`` for as long as the returned
    file stays open, so that another start sees that the run is training. The kernel
    drops the lock when the process ends, however it ends (``kill -9`` included), so a
    start that died never leaves the directory locked.

    Args:
        out_dir (str): the run's directory, holding its ``config.yaml``.

    Returns:
        file or None: close it when the run ends; None where the platform or the
        filesystem has no locks.

    Raises:
        RunDirectoryError: another process holds the lock.
    """
    if fcntl is None:
        return None
    f = open(os.path.join(out_dir, RUN_CONFIG), 'rb')
    for _ in range(LOCK_TRIES):
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return f
        except BlockingIOError:  # another start's check holds it for a moment
            time.sleep(LOCK_WAIT_S)
        except OSError:  # a filesystem without locks (some network filesystems)
            f.close()
            return None
    f.close()
    raise RunDirectoryError(f'{out_dir}: another process started training this run at the '
                            'same moment and holds it; let that one train, or set OUTPUT_DIR '
                            'to another folder for this run.')


def _take_over_message(out_dir, old, cfg):
    differences = config_differences(old, cfg, NEUTRAL_KEYS)
    changed = (', '.join(f'{key} {a!r} -> {b!r}' for key, a, b in differences)
               if differences else 'none')
    logs = sorted(n for n in os.listdir(out_dir) if n.endswith(LOG_SUFFIX))
    return (f'taking over {out_dir}: it held no checkpoint and no results, only a start '
            f'that ended before its first checkpoint (log files kept: {", ".join(logs) or "none"}'
            f'); keys changed since: {changed}')


def check_training_directory(cfg, out_dir):
    """Refuse to train into ``out_dir`` when that would replace or mix with another run;
    take it over when it holds nothing to protect (see the module's docstring).

    Args:
        cfg (CfgNode): the merged config of this launch.
        out_dir (str): the run's directory.

    Returns:
        str or None: the log line of a take-over; None otherwise.

    Raises:
        RunDirectoryError: a process is training in ``out_dir``; or it holds a run of
            another configuration, or of this one without AUTO_RESUME (finished or not).
    """
    if not os.path.isfile(os.path.join(out_dir, RUN_CONFIG)):
        return None
    if _running(out_dir):
        raise RunDirectoryError(
            f'{out_dir} holds a run that a process is training now (it holds a lock on its '
            f'{RUN_CONFIG}); nothing was written. Wait for it or stop it, or set OUTPUT_DIR '
            'to another folder for this run.')
    old = _read_run_config(out_dir)
    if not protected_entries(out_dir):
        return _take_over_message(out_dir, old, cfg)
    resume = cfg.AUTO_RESUME or cfg.TRAIN.RESUME
    ignore = NEUTRAL_KEYS + (EXTENSION_KEYS if resume else ())
    differences = config_differences(old, cfg, ignore)
    if differences:
        raise RunDirectoryError(
            f'{out_dir} holds another run, whose {RUN_CONFIG} differs from this one in:\n'
            f'{_format_differences(differences)}\n'
            '  Nothing was written. Give each variant a file of its own (as '
            'experiments/cityscapes/w48_rh.yaml is for RH: the file name names the '
            'directory), or set OUTPUT_DIR to another folder for this run.')
    if resume:
        return None
    if os.path.isfile(os.path.join(out_dir, FINAL_STATE)):
        raise RunDirectoryError(
            f'{out_dir} holds a finished run of this same configuration ({FINAL_STATE} '
            'exists); nothing was written.\n'
            f'  Evaluate it: python tools/test_ee.py --cfg {os.path.join(out_dir, RUN_CONFIG)}\n'
            '  Train it again: move that directory away, or set OUTPUT_DIR to another folder.')
    raise RunDirectoryError(
        f'{out_dir} holds an unfinished run of this same configuration; nothing was '
        'written.\n  Continue it: add AUTO_RESUME True to the command line.\n'
        '  Start afresh: move that directory away, or set OUTPUT_DIR to another folder.')


def _directory_name(differences):
    text = ','.join(f'{key}={_value_text(new)}' for key, _, new in differences)
    name = re.sub(r'[^A-Za-z0-9._=,+-]', '_', text)
    if len(name) > NAME_LIMIT:
        digest = hashlib.sha1(text.encode()).hexdigest()[:8]
        name = f'{name[:NAME_LIMIT - 9]}-{digest}'
    return name


def _value_text(value):
    if isinstance(value, (list, tuple)):
        return '[' + ','.join(str(v) for v in value) + ']'
    return str(value)


def _matters_for_evaluation(key):
    return key in EVALUATION_KEYS or not (key.startswith(TRAINING_ONLY_PREFIXES) or
                                          key in TRAINING_ONLY_KEYS)


def evaluation_directory(cfg, base_dir, model_file):
    """Where an evaluation of ``model_file`` under ``cfg`` writes its results.

    ``base_dir`` itself when it holds no run (no ``config.yaml``) or the run's own
    configuration and weights; otherwise ``base_dir/eval/<KEY=value,...>`` after the keys
    that differ (TEST.MODEL_FILE included, unless it is the run's ``final_state.pth``;
    keys that only shape training, such as TRAIN.LR, aside).

    Args:
        cfg (CfgNode): the merged config of the evaluation.
        base_dir (str): the run's directory, or ``OUTPUT_DIR/<dataset>/<cfg stem>``.
        model_file (str): the weights evaluated.

    Returns:
        str: the directory (not created).
    """
    if not os.path.isfile(os.path.join(base_dir, RUN_CONFIG)):
        return base_dir
    old = _read_run_config(base_dir)
    differences = [d for d in config_differences(old, cfg, NEUTRAL_KEYS)
                   if _matters_for_evaluation(d[0])]
    own_weights = (model_file == old.TEST.MODEL_FILE or
                   os.path.realpath(model_file) ==
                   os.path.realpath(os.path.join(base_dir, FINAL_STATE)))
    if not own_weights:
        differences.append(('TEST.MODEL_FILE', old.TEST.MODEL_FILE, model_file))
    if not differences:
        return base_dir
    return os.path.join(base_dir, EVAL_DIR, _directory_name(differences))


def decide_on_rank0(check, ctx):
    """Run ``check()`` on rank 0 only and raise its UserError on every process, so that
    all processes take the same decision before any of them writes a file.

    Args:
        check (callable): raises a :class:`utils.errors.UserError` to refuse.
        ctx (DistContext): this process.

    Returns:
        what ``check()`` returned on rank 0, on every process.
    """
    if not (ctx.distributed and dist.is_available() and dist.is_initialized()):
        return check()
    box = [None, None]  # (error, value)
    if ctx.is_main:
        try:
            box[1] = check()
        except UserError as e:
            box[0] = e
    dist.broadcast_object_list(box, src=0)
    if box[0] is not None:
        raise box[0]
    return box[1]
