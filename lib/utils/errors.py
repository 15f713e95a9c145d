"""Errors that the user can fix: a configuration, data, checkpoint or launch problem.

The tools report a :class:`UserError` as one ``error:`` line (plus the few lines of
context its message holds) and exit non-zero, without a traceback on the console. Any
other exception is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Base class of errors whose message tells the user what to change."""


class ConfigError(UserError):
    """A configuration file, key or value is wrong."""


class DataError(UserError):
    """A list file, image or label is missing, unreadable or of the wrong size."""


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
