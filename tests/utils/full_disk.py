"""A stand-in for a disk that fills up in the middle of a write."""
import errno
import os


class FullDisk:
    """A binary file on a disk with ``room`` bytes left: the write that crosses it puts
    what fits on disk and fails with ENOSPC, as a real full disk does.

    Args:
        f: the real file, written up to ``room`` bytes.
        room (int): bytes that fit.
    """

    def __init__(self, f, room):
        self._f, self.room = f, room

    def write(self, data):
        if len(data) > self.room:
            self._f.write(bytes(data[:self.room]))
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()
