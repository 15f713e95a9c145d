"""Errors that the user can fix: a configuration, data, checkpoint or launch problem.

The tools report a :class:`UserError` as one ``error:`` line (plus the few lines of
context its message holds) and exit non-zero, without a traceback on the console. Any
other exception is a bug and keeps its traceback.

``UserError`` and ``ConfigError`` live in ``config.errors`` (the config package imports
nothing above it) and are the same classes here.
"""
import re

from config.errors import ConfigError, UserError

__all__ = ['UserError', 'ConfigError', 'DataError', 'CheckpointError', 'LaunchError',
           'RunDirectoryError', 'OutputError', 'Interrupted']


class DataError(UserError):
    """A list file, image or label is missing, unreadable or of the wrong size.

    Raised in a DataLoader worker, it reaches the training process re-made by PyTorch
    with the worker's whole traceback as its message; the message is cut back to the
    worker's own, so that a broken sample is one ``error:`` line there too (the
    traceback stays in the log file).
    """

    def __init__(self, message):
        super().__init__(worker_message(str(message)))


# How torch.utils.data re-raises a worker's exception: "Caught <name> in DataLoader worker
# process N.\nOriginal Traceback (most recent call last): ..." ending with the
# "<module>.<name>: <message>" line(s) of traceback.format_exception.
WORKER_TRACEBACK = re.compile(r'Caught (\w+) in DataLoader worker process \d+\.\n'
                              r'Original Traceback \(most recent call last\):\n')


def worker_message(message):
    """The original message of an exception re-raised from a DataLoader worker (as is,
    for any other message)."""
    found = WORKER_TRACEBACK.match(message)
    if not found:
        return message
    # The last "...<name>: " at the start of a line opens the worker's message.
    starts = list(re.finditer(rf'^[\w.]*\b{found.group(1)}: ', message, re.MULTILINE))
    return message[starts[-1].end():].rstrip('\n') if starts else message


class CheckpointError(UserError):
    """A checkpoint or weights file is missing, unreadable, unsafe or does not fit."""


class LaunchError(UserError):
    """The processes, devices or batch sizes of a launch do not work together.

    Args:
        message (str): what is wrong and the command line that works.
        every_rank (bool): every process of the launch raises it alike (it depends only
            on what the launcher gave them all), so rank 0 alone reports it.
    """

    def __init__(self, message, every_rank=False):
        super().__init__(message)
        self.every_rank = every_rank


class RunDirectoryError(UserError):
    """An output directory holds another run, which must not be overwritten."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) during a tool's work, with where the work stood; the tools print
    it as one line with the command that continues the work.

    Args:
        message (str): where the work stood and what it kept.
        continue_with (list[str]): ``KEY VALUE`` words that, added to the same command
            line, continue the work (e.g. ``['AUTO_RESUME', 'True']``); empty when the
            command as it was continues it.
    """

    def __init__(self, message, continue_with=()):
        super().__init__(message)
        self.message, self.continue_with = message, list(continue_with)


class OutputError(UserError):
    """A file or folder cannot be written: no permission, a read-only or full disk, a
    path through a file. What the destination held before is left as it was."""
