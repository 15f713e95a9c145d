"""Logging of training and evaluation runs: console, a log file and TensorBoard."""
import contextlib
import logging
import os
import signal
import sys
import threading
import time

from tqdm import tqdm

FORMAT = '%(asctime)s %(message)s'
# Records sent here reach the log file only (the merged config, tracebacks of errors).
FILE_ONLY = 'adpc.file_only'


def setup_logger(output_dir, cfg_name, phase, is_main=True):
    """Send the root logger to the console and, on the main process, to a new file
    ``output_dir/<cfg_name>_<YYYY-mm-dd-HH-MM-SS>_<pid>_<phase>.log``.

    The file is created, never appended to, so that two runs or evaluations started in
    the same second never share a log. Other processes only print warnings and errors,
    so that N processes do not repeat every line.

    Args:
        output_dir (str or None): the run's output directory (created if needed);
            None: console only.
        cfg_name (str): stem of the experiment file, used in the log file name.
        phase (str): 'train' or 'test'.
        is_main (bool): whether this is rank 0.

    Returns:
        str or None: the log file's path (None on other processes).
    """
    root = logging.getLogger()
    file_only = logging.getLogger(FILE_ONLY)
    file_only.propagate = False
    file_only.setLevel(logging.INFO)
    for logger in (root, file_only):
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
    root.setLevel(logging.INFO if is_main else logging.WARNING)
    formatter = logging.Formatter(FORMAT)
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(formatter)
    root.addHandler(console)
    if not is_main or output_dir is None:
        return None
    os.makedirs(output_dir, exist_ok=True)
    file_handler, log_file = _new_log_file(output_dir, cfg_name, phase)
    file_handler.setFormatter(formatter)
    root.addHandler(file_handler)
    file_only.addHandler(file_handler)
    return log_file


class _LogFile(logging.FileHandler):
    """A log file that, when the disk refuses a write (full, read-only, gone), says so
    in one line on stderr and stops writing, rather than printing a traceback for every
    record; the console keeps the log."""

    def handleError(self, record):
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            return super().handleError(record)
        sys.stderr.write(f'warning: the log file {self.baseFilename} cannot be written '
                         f'({error.strerror or error}); the log continues on the console '
                         'only\n')
        logging.getLogger().removeHandler(self)
        logging.getLogger(FILE_ONLY).removeHandler(self)


def _new_log_file(output_dir, cfg_name, phase):
    stamp = f"{time.strftime('%Y-%m-%d-%H-%M-%S')}_{os.getpid()}"
    for n in range(1000):
        suffix = f'-{n}' if n else ''
        path = os.path.join(output_dir, f'{cfg_name}_{stamp}{suffix}_{phase}.log')
        try:
            return _LogFile(path, mode='x'), path
        except FileExistsError:  # the same process set up a log twice in one second
            continue
    raise FileExistsError(f'no free log file name in {output_dir}')


def log_file_path():
    """Path of the current log file, or None when this process writes none."""
    for handler in logging.getLogger(FILE_ONLY).handlers:
        if isinstance(handler, logging.FileHandler):
            return handler.baseFilename
    return None


def log_to_file(message):
    """Write ``message`` (e.g. the merged config) to the log file only, not the console."""
    logging.getLogger(FILE_ONLY).info(message)


class _PlainProgress:
    """What a progress bar becomes when nobody watches a terminal: the items, and, when
    ``log_lines`` is set, a log line at each tenth of the way that comes at least
    ``LOG_INTERVAL_S`` after the previous one (so only long loops report)."""

    LOG_INTERVAL_S = 30.0

    def __init__(self, iterable, desc, log_lines):
        self.iterable, self.desc, self.log_lines = iterable, desc, log_lines

    def __iter__(self):
        total = len(self.iterable) if hasattr(self.iterable, '__len__') else 0
        step = max(1, total // 10)
        start = last = time.time()
        for i, item in enumerate(self.iterable, start=1):
            yield item
            now = time.time()
            if self.log_lines and i % step == 0 and now - last >= self.LOG_INTERVAL_S:
                last = now
                logging.getLogger(__name__).info(
                    f'{self.desc}: {i}/{total} batches, {(now - start) / i:.3f}s per batch')

    def set_postfix(self, **kwargs):
        pass

    def close(self):
        pass


def progress(iterable, desc, is_main=True, log_lines=False):
    """A tqdm bar over ``iterable`` on the main process when stderr is a terminal;
    otherwise the plain items (redirected output gets log lines, not bar redraws).

    Args:
        iterable: what to iterate over.
        desc (str): the bar's label.
        is_main (bool): whether this is rank 0 (other processes show nothing).
        log_lines (bool): without a terminal, log progress every tenth of the way
            (at most every 30 s).
    """
    if is_main and sys.stderr.isatty():
        return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True)
    return _PlainProgress(iterable, desc, log_lines and is_main)


def tensorboard_writer(log_dir, is_main=True, purge_step=None):
    """A tensorboardX SummaryWriter on the main process, None elsewhere.

    Args:
        log_dir (str): folder of the event files.
        is_main (bool): whether this is rank 0.
        purge_step (int or None): on resume, events at or after this step from the
            interrupted run are discarded, so the curves read as one run.
    """
    if not is_main:
        return None
    from tensorboardX import SummaryWriter

    class InterruptSafeWriter(SummaryWriter):
        """A Ctrl-C that lands inside ``add_scalar`` can leave the writer's queue to its
        background thread half-fed; the writer's exit handler then waits forever for that
        thread. Here Ctrl-C waits until the call has handed its event over."""

        def add_scalar(self, *args, **kwargs):
            with sigint_deferred():
                return super().add_scalar(*args, **kwargs)

    return InterruptSafeWriter(log_dir, purge_step=purge_step)


@contextlib.contextmanager
def sigint_deferred():
    """Within the block, SIGINT is recorded instead of raised; KeyboardInterrupt follows
    at its end. Outside the main thread (where Python cannot set handlers) a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda *_: received.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt
