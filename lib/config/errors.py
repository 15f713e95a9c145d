"""The errors of a configuration, defined here so that the config package imports
nothing of the rest of lib/ (``utils.errors`` builds its family on :class:`UserError`)."""


class UserError(Exception):
    """Base class of errors whose message tells the user what to change.

    The tools report one as a single ``error:`` line and exit non-zero, without a
    traceback on the console (see ``utils.launch``)."""


class ConfigError(UserError):
    """A configuration file, key or value is wrong."""
