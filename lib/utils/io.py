"""Writing run outputs so that a crash or ``kill -9`` never leaves a half-written file.

Every writer here writes a temporary file in the destination's folder, flushes it to
disk and then renames it over the destination with ``os.replace``, which is atomic on
POSIX and Windows: readers see either the old file or the new one, never a mix. The
file gets the permissions of any file the user creates (0666 less the umask, e.g. 0644),
so that collaborators who may read the run directory may read its results too.
"""
import json
import os
import secrets

import torch

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


def _atomic_write(path, write):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = _create_temporary(folder, os.path.basename(path))
    try:
        with os.fdopen(fd, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        # The destination is untouched; drop the partial temporary file.
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_torch_save(obj, path):
    """``torch.save(obj, path)``, atomically.

    Args:
        obj: anything ``torch.save`` accepts.
        path (str): destination file; its folder is created if needed.
    """
    _atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write_text(path, text):
    """Write the string ``text`` to ``path`` atomically (UTF-8)."""
    _atomic_write(path, lambda f: f.write(text.encode('utf-8')))


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
