"""Predictions in the format of a benchmark server: one label PNG per image.

    DIR/exit4/berlin_000000_000019_leftImg8bit.png    (one folder per exit written)

Each PNG is the full-size prediction of one exit, a single-channel image of the data
set's raw label values (trainIds mapped back through ``DatasetSpec.to_raw``, so it is
never the ignore label): for Cityscapes its labelIds, named after its image as the
server's instructions ask (``<city>_<seq>_<frame>*.png``), the folder that
``cityscapesscripts``' ``evalPixelLevelSemanticLabeling`` reads; for other data sets
``<image stem>.png``. Where the data set's label map has no inverse (two raw values
share a class) the PNGs hold trainIds, which the log says once.
"""
import logging

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from datasets.lists import IMAGE_SUFFIX
from datasets.spec import CITYSCAPES
from utils.errors import RunDirectoryError
from utils.io import atomic_write_png

logger = logging.getLogger(__name__)

# PNG encoding of a 1024 x 2048 map takes tens of milliseconds; OpenCV releases the GIL
# while encoding, so a few threads keep the accelerator from waiting for it.
DEFAULT_THREADS = 4


def exit_folder(root, k):
    """Folder of exit ``k``'s (1-based) predictions under ``root``."""
    return os.path.join(root, f'exit{k}')


def prediction_file(root, k, name, spec=CITYSCAPES):
    """Path of exit ``k``'s prediction for the sample ``name`` (e.g.
    ``frankfurt_000000_000294``): ``root/exit<k>/<name>_leftImg8bit.png`` for
    Cityscapes, ``root/exit<k>/<name>.png`` for other data sets."""
    suffix = IMAGE_SUFFIX if spec.name == 'cityscapes' else '.png'
    return os.path.join(exit_folder(root, k), name + suffix)


def label_id_map(train_ids, spec=CITYSCAPES):
    """The raw label image (uint8, or uint16 for values above 255) of an H x W map of
    predicted trainIds: ``spec.to_raw``, or the trainIds where it has no inverse.

    Raises:
        ValueError: a value is not a trainId (a prediction never holds the ignore
            label; this would be a bug).
    """
    train_ids = np.asarray(train_ids)
    if train_ids.size and (train_ids.min() < 0 or train_ids.max() >= spec.num_classes):
        raise ValueError(f'predictions must be trainIds 0..{spec.num_classes - 1}, '
                         f'found values {sorted(np.unique(train_ids).tolist())[:5]}...')
    raw = spec.to_raw(train_ids)
    raw = train_ids if raw is None else raw
    return raw.astype(np.uint8 if raw.size == 0 or raw.max() < 256 else np.uint16)


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
        spec (DatasetSpec): the data set, whose raw label values the PNGs hold.

    Raises:
        RunDirectoryError: an exit folder already holds PNGs (nothing is overwritten).
    """

    def __init__(self, root, exits, threads=DEFAULT_THREADS, spec=CITYSCAPES):
        for k in exits:
            folder = exit_folder(root, k)
            if os.path.isdir(folder) and any(f.endswith('.png') for f in os.listdir(folder)):
                raise RunDirectoryError(
                    f'{folder} already holds predictions; give --submit a new folder or '
                    'move the old one away (nothing is overwritten)')
        for k in exits:
            os.makedirs(exit_folder(root, k), exist_ok=True)
        self.root = root
        self.spec = spec
        if spec.to_raw(np.zeros(1, np.int64)) is None:
            logger.info(f'{spec.name}: DATASET.LABEL_MAP has no inverse (raw values share a '
                        'class), so the prediction PNGs hold trainIds')
        self.exits = list(exits)
        self._pool = ThreadPoolExecutor(threads, 'png') if threads else None
        self._pending = deque()
        self._max_pending = 4 * threads

    def add(self, k, name, train_ids):
        """Queue exit ``k``'s prediction (H x W trainIds, numpy) of sample ``name``."""
        path = prediction_file(self.root, k, name, self.spec)
        if self._pool is None:
            self._write(path, train_ids)
            return
        while len(self._pending) >= self._max_pending:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._write, path, train_ids))

    def _write(self, path, train_ids):
        write_png(path, label_id_map(train_ids, self.spec))

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
