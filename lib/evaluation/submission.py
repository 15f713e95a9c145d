"""Predictions in the format of the Cityscapes benchmark server: one labelId PNG per image.

    DIR/exit4/berlin_000000_000019_leftImg8bit.png    (one folder per exit written)

Each PNG is the full-size prediction of one exit, an 8-bit single-channel image of
Cityscapes labelIds (trainIds mapped back, so it is never the ignore label), named after
its image as the server's instructions ask (``<city>_<seq>_<frame>*.png``). The same
folder is what ``cityscapesscripts``' ``evalPixelLevelSemanticLabeling`` reads.
"""
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from datasets.labels import CITYSCAPES_CLASSES, train_ids_to_label_ids
from datasets.lists import IMAGE_SUFFIX
from utils.errors import RunDirectoryError
from utils.io import atomic_write_png

# PNG encoding of a 1024 x 2048 map takes tens of milliseconds; OpenCV releases the GIL
# while encoding, so a few threads keep the accelerator from waiting for it.
DEFAULT_THREADS = 4


def exit_folder(root, k):
    """Folder of exit ``k``'s (1-based) predictions under ``root``."""
    return os.path.join(root, f'exit{k}')


def prediction_file(root, k, name):
    """Path of exit ``k``'s prediction for the sample ``name`` (e.g.
    ``frankfurt_000000_000294``): ``root/exit<k>/<name>_leftImg8bit.png``."""
    return os.path.join(exit_folder(root, k), name + IMAGE_SUFFIX)


def label_id_map(train_ids):
    """The uint8 labelId image of an H x W map of predicted trainIds.

    Raises:
        ValueError: a value is not a trainId 0..18 (a prediction never holds the ignore
            label; this would be a bug).
    """
    train_ids = np.asarray(train_ids)
    if train_ids.size and (train_ids.min() < 0 or train_ids.max() >= len(CITYSCAPES_CLASSES)):
        raise ValueError(f'predictions must be trainIds 0..{len(CITYSCAPES_CLASSES) - 1}, '
                         f'found values {sorted(np.unique(train_ids).tolist())[:5]}...')
    return train_ids_to_label_ids(train_ids)


def write_png(path, image):
    """Write a uint8 H x W array as a PNG, atomically (``utils.io.atomic_write_png``)."""
    atomic_write_png(path, image)


class SubmissionWriter:
    """Writes the labelId PNGs of chosen exits, on a small pool of threads.

    At most ``4 x threads`` predictions wait to be written, so memory stays bounded when
    the network is faster than the encoder. Use as a context manager, or call
    :meth:`close`, which waits for every file and raises the first write error.

    Args:
        root (str): the ``--submit`` folder.
        exits (list[int]): 1-based exits to write, one folder each.
        threads (int): writer threads; 0 writes in the calling thread. Default 4.

    Raises:
        RunDirectoryError: an exit folder already holds PNGs (nothing is overwritten).
    """

    def __init__(self, root, exits, threads=DEFAULT_THREADS):
        for k in exits:
            folder = exit_folder(root, k)
            if os.path.isdir(folder) and any(f.endswith('.png') for f in os.listdir(folder)):
                raise RunDirectoryError(
                    f'{folder} already holds predictions; give --submit a new folder or '
                    'move the old one away (nothing is overwritten)')
        for k in exits:
            os.makedirs(exit_folder(root, k), exist_ok=True)
        self.root = root
        self.exits = list(exits)
        self._pool = ThreadPoolExecutor(threads, 'png') if threads else None
        self._pending = deque()
        self._max_pending = 4 * threads

    def add(self, k, name, train_ids):
        """Queue exit ``k``'s prediction (H x W trainIds, numpy) of sample ``name``."""
        path = prediction_file(self.root, k, name)
        if self._pool is None:
            self._write(path, train_ids)
            return
        while len(self._pending) >= self._max_pending:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._write, path, train_ids))

    def _write(self, path, train_ids):
        write_png(path, label_id_map(train_ids))

    def close(self):
        """Wait until every queued file is written; raise the first error."""
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
