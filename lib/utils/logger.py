"""Logging of training and evaluation runs: console, a log file and TensorBoard."""
import logging
import os
import sys
import time

FORMAT = '%(asctime)s %(message)s'


def setup_logger(output_dir, cfg_name, phase, is_main=True):
    """Send the root logger to the console and, on the main process, to
    ``output_dir/<cfg_name>_<time>_<phase>.log``.

    Other processes only print warnings and errors, so that N processes do not repeat
    every line.

    Args:
        output_dir (str): the run's output directory (created if needed).
        cfg_name (str): stem of the experiment file, used in the log file name.
        phase (str): 'train' or 'test'.
        is_main (bool): whether this is rank 0.

    Returns:
        str or None: the log file's path (None on other processes).
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(logging.INFO if is_main else logging.WARNING)
    formatter = logging.Formatter(FORMAT)
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(formatter)
    root.addHandler(console)
    if not is_main:
        return None
    os.makedirs(output_dir, exist_ok=True)
    log_file = os.path.join(output_dir, f"{cfg_name}_{time.strftime('%Y-%m-%d-%H-%M')}_{phase}.log")
    file_handler = logging.FileHandler(log_file)
    file_handler.setFormatter(formatter)
    root.addHandler(file_handler)
    return log_file


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
    return SummaryWriter(log_dir, purge_step=purge_step)
