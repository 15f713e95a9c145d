"""What a malicious pickle (a checkpoint, weights) could do, for the tests that check no
file the project reads ever runs code."""


class Touch:
    """Creates ``path`` when unpickled: a harmless stand-in for running any command."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (self.path, 'w')
