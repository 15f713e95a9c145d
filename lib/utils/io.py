"""Writing run outputs so that a crash, ``kill -9`` or a full disk never leaves a
half-written file, and refusing an output folder that cannot be written before any work.

Every writer here writes a temporary file in the destination's folder, flushes it to
disk and then renames it over the destination with ``os.replace``, which is atomic on
POSIX and Windows: readers see either the old file or the new one, never a mix. The
file gets the permissions of any file the user creates (0666 less the umask, e.g. 0644),
so that collaborators who may read the run directory may read its results too.

A write the machine refuses (no permission, a read-only or full disk, a folder that
vanished) raises :class:`utils.errors.OutputError`, which the tools report as one
``error:`` line; the temporary file is removed and the destination keeps what it held.
:func:`check_writable` is the check every tool makes on its output paths before it
starts working, so that such a refusal comes first rather than after the work.
"""
import errno
import json
import os
import secrets

import torch

from .errors import OutputError

CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_BINARY', 0)
CREATE_MODE = 0o666  # less the umask, as open() creates files (mkstemp would give 0600)


def _create_temporary(folder, name):
    """A new, empty file ``.<name>.<random>.tmp`` in ``folder``: (descriptor, path)."""
    while True:
        tmp = os.path.join(folder, f'.{name}.{secrets.token_hex(4)}.tmp')
        try:
            return os.open(tmp, CREATE, CREATE_MODE), tmp
        except FileExistsError:  # another writer drew the same name: draw again
            continue


# What the machine answers to a write it refuses: reported as one line, not as a bug.
WRITE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC,
                          errno.EDQUOT, errno.EFBIG, errno.ENOTDIR, errno.ENOENT, errno.EIO,
                          errno.EEXIST})
IN_THE_WAY_ERRNOS = frozenset({errno.ENOTDIR, errno.EEXIST})  # a file where a folder goes
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def _advice(error, option=None):
    other = f'another {option}' if option else 'another folder'
    if error.errno in FULL_ERRNOS:
        return f'free space on that disk, or choose {other} on another disk'
    if error.errno in IN_THE_WAY_ERRNOS:
        return f'a file stands where a folder must be: move it away, or choose {other}'
    return f'make it writable, or choose {other} you can write'


def output_error(error, path=None):
    """The one-line :class:`OutputError` of an ``OSError`` the machine raised while
    writing ``path``, or None when ``error`` is no such refusal (see
    :data:`WRITE_ERRNOS`) and so stays a bug.

    Args:
        error (BaseException): the exception.
        path (str or None): the file being written; None: the file ``error`` names, of an
            access not known to be a write (a missing or existing file then stays a bug).
    """
    known = WRITE_ERRNOS if path else WRITE_ERRNOS - {errno.ENOENT, errno.EEXIST}
    if not isinstance(error, OSError) or error.errno not in known:
        return None
    reason = error.strerror or str(error)
    if path is None:
        return OutputError(f'{error.filename or "a file"}: {reason}: {_advice(error)}')
    return OutputError(f'cannot write {path} ({reason}): {_advice(error)}; what it held '
                       'before is unchanged')


def check_writable(path, option, is_file=False):
    """Refuse an output path that cannot be written, before any work and without
    creating or touching anything: the deepest existing folder on its way must be a
    folder that this user may write (read-only mounts refuse root too) on a disk with
    free space.

    Args:
        path (str): the folder a tool writes into (created if needed), or with
            ``is_file`` the file it writes.
        option (str): what sets the path on the command line, e.g. 'OUTPUT_DIR' or
            '--out', for the message.
        is_file (bool): ``path`` is a file.

    Raises:
        OutputError: naming the option, the path and what to do.
    """
    if is_file and os.path.isdir(path):
        raise OutputError(f'{option} {path} is a folder: give the name of a file to write')
    folder = os.path.dirname(os.path.abspath(path)) if is_file else os.path.abspath(path)
    existing = folder
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    refused = f'cannot write {path} ({option}): '
    if not os.path.isdir(existing):
        raise OutputError(f'{refused}{existing} is a file, not a folder: choose another {option}')
    where = existing if existing == folder else f'{existing}, where it would be made,'
    space = os.statvfs(existing) if hasattr(os, 'statvfs') else None
    if not os.access(existing, os.W_OK | os.X_OK):
        read_only = space is not None and space.f_flag & os.ST_RDONLY
        error = OSError(errno.EROFS if read_only else errno.EACCES, '')
        reason = 'a read-only file system' if read_only else 'no write permission'
        raise OutputError(f'{refused}{where} refuses new files ({reason}): '
                          f'{_advice(error, option)}')
    if space is not None and space.f_blocks > 0 and space.f_bavail == 0:
        raise OutputError(f'{refused}the disk of {existing} is full: '
                          f'{_advice(OSError(errno.ENOSPC, ""), option)}')


class _RecordingFile:
    """A binary file that keeps the first error of its writes, for writers (such as
    ``torch.save``) that replace it by their own exception."""

    def __init__(self, f):
        self._f, self.error = f, None

    def write(self, data):
        try:
            return self._f.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def __getattr__(self, name):
        return getattr(self._f, name)


def _remove_quietly(path):
    try:
        os.remove(path)
    except OSError:
        pass  # never created, or the folder went away: nothing is left to remove


def atomic_write(path, write):
    """Write ``path`` atomically: ``write(f)`` fills a temporary binary file in the same
    folder, which is flushed to disk and renamed over ``path``.

    Args:
        path (str): destination file; its folder is created if needed.
        write (callable): takes the open binary file.

    Raises:
        OutputError: the machine refused a write (see :func:`output_error`); ``path``
            keeps what it held and no temporary file remains.
    """
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = _create_temporary(folder, os.path.basename(path))
    except OSError as e:
        raise (output_error(e, path) or e) from None
    try:
        with os.fdopen(fd, 'wb') as raw:
            f = _RecordingFile(raw)
            try:
                write(f)
            except Exception as e:  # noqa: BLE001  (an OSError behind the writer's own)
                if f.error is None or isinstance(e, OSError):
                    raise
                raise f.error from None
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        # The destination is untouched; drop the partial temporary file.
        _remove_quietly(tmp)
        refused = output_error(e, path)
        if refused is None:
            raise
        raise refused from None


def atomic_torch_save(obj, path):
    """``torch.save(obj, path)``, atomically.

    Args:
        obj: anything ``torch.save`` accepts.
        path (str): destination file; its folder is created if needed.
    """
    atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write_text(path, text):
    """Write the string ``text`` to ``path`` atomically (UTF-8)."""
    atomic_write_bytes(path, text.encode('utf-8'))


def atomic_write_bytes(path, data):
    """Write the bytes ``data`` to ``path`` atomically (e.g. an encoded PNG)."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write_png(path, image):
    """Write a uint8 array (H x W, or H x W x 3 in BGR order as OpenCV reads it) as a PNG,
    atomically."""
    import cv2  # only the tools that write images need OpenCV loaded
    ok, encoded = cv2.imencode('.png', image)
    if not ok:
        raise ValueError(f'OpenCV cannot encode an array of {image.dtype} {image.shape} as a '
                         f'PNG for {path}')
    atomic_write_bytes(path, encoded.tobytes())


def save_json(path, obj):
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=4) + '\n')


def run_directory(cfg, cfg_path):
    """Output directory of a run: ``OUTPUT_DIR/<DATASET.DATASET>/<cfg file stem>``.

    Args:
        cfg (CfgNode): reads OUTPUT_DIR and DATASET.DATASET.
        cfg_path (str): the experiment file given with ``--cfg``.
    """
    stem = os.path.splitext(os.path.basename(cfg_path))[0]
    return os.path.join(cfg.OUTPUT_DIR, cfg.DATASET.DATASET, stem)


def tensorboard_directory(cfg, cfg_path):
    """TensorBoard folder of a run: laid out under LOG_DIR like the output directory,
    or the output directory itself when LOG_DIR is empty."""
    if not cfg.LOG_DIR:
        return run_directory(cfg, cfg_path)
    stem = os.path.splitext(os.path.basename(cfg_path))[0]
    return os.path.join(cfg.LOG_DIR, cfg.DATASET.DATASET, stem)
