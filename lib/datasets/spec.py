"""What a data set is to the rest of the code: its classes, their colours, and the rules
that turn a label file's raw values into train ids (and back).

Every reader of labels (training, evaluation, pictures, submissions, flips) takes a
`DatasetSpec` instead of a data set's constants, so that a new data set is a new spec,
not new code. `dataset_spec(cfg)` builds it from the DATASET keys, starting from the
named data set's own description and letting the experiment override any part of it.
"""
from dataclasses import dataclass, field

import numpy as np

from .labels import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE


@dataclass(frozen=True)
class DatasetSpec:
    """A data set's classes and label rules.

    Args:
        name (str): DATASET.DATASET.
        classes (tuple[str]): class names in train-id order.
        palette (tuple[tuple[int, int, int]]): RGB colour per class.
        ignore_label (int): TRAIN.IGNORE_LABEL, the label of pixels no loss or metric sees.
        label_map (dict[int, int] | None): raw label value -> train id; raw values not in
            it are ignored. None: raw values are train ids (after ``reduce_zero_label``).
        reduce_zero_label (bool): raw 0 is ignored and every other raw value v becomes
            v - 1 (ADE20K's rule), applied before ``label_map``.
        flip_pairs (tuple[tuple[int, int]]): classes a horizontal flip swaps (e.g. LIP's
            left and right arm).
    """
    name: str
    classes: tuple
    palette: tuple
    ignore_label: int = 255
    label_map: dict = None
    reduce_zero_label: bool = False
    flip_pairs: tuple = field(default=())

    @property
    def num_classes(self):
        return len(self.classes)

    def to_train_ids(self, raw):
        """Train ids (``int64``, same shape) of a raw label map (any integer array)."""
        raw = np.asarray(raw)
        if not np.issubdtype(raw.dtype, np.integer):
            raise TypeError(f'labels must be integers, got dtype {raw.dtype}')
        values = raw.astype(np.int64)
        ignored = np.zeros(values.shape, dtype=bool)
        if self.reduce_zero_label:
            ignored |= values == 0
            values = values - 1
        if self.label_map is not None:
            mapped = np.full(values.shape, self.ignore_label, dtype=np.int64)
            for value, train_id in self.label_map.items():
                mapped[values == value] = train_id
            values = mapped
        values[ignored] = self.ignore_label
        return values

    def to_raw(self, train_ids):
        """Raw label values of a train-id map, inverting ``label_map`` and
        ``reduce_zero_label`` (what a benchmark server expects); None where the map has
        no inverse (two raw values share a train id). Ids outside the classes become 0."""
        train_ids = np.asarray(train_ids).astype(np.int64)
        if self.label_map is not None:
            if len(set(self.label_map.values())) != len(self.label_map):
                return None
            lookup = np.zeros(self.num_classes, dtype=np.int64)
            for value, train_id in self.label_map.items():
                if 0 <= train_id < self.num_classes:
                    lookup[train_id] = value
        else:
            lookup = np.arange(self.num_classes, dtype=np.int64)
        if self.reduce_zero_label:
            lookup = lookup + 1
        known = (train_ids >= 0) & (train_ids < self.num_classes)
        return np.where(known, lookup[np.where(known, train_ids, 0)], 0)

    def flip_permutation(self):
        """``int64`` array p of length num_classes: after a horizontal flip, class c
        is class p[c] (the identity where ``flip_pairs`` is empty)."""
        permutation = np.arange(self.num_classes)
        for a, b in self.flip_pairs:
            permutation[a], permutation[b] = b, a
        return permutation


CITYSCAPES = DatasetSpec(
    name='cityscapes',
    classes=tuple(name for name, _ in CITYSCAPES_CLASSES),
    palette=CITYSCAPES_PALETTE,
    label_map={label_id: train_id for train_id, (_, label_id) in enumerate(CITYSCAPES_CLASSES)})

# DATASET.DATASET -> the named data set's own description.
SPECS = {'cityscapes': CITYSCAPES}


def default_palette(num_classes):
    """A fixed palette for data sets that name none: distinct, reproducible colours
    (each channel's bits taken in turn from the class index, as PASCAL VOC's palette)."""
    palette = []
    for index in range(num_classes):
        r = g = b = 0
        value, bit = index + 1, 7
        while value and bit >= 0:
            r |= (value & 1) << bit
            g |= ((value >> 1) & 1) << bit
            b |= ((value >> 2) & 1) << bit
            value >>= 3
            bit -= 1
        palette.append((r, g, b))
    return tuple(palette)


def dataset_spec(cfg):
    """The `DatasetSpec` of the configuration: DATASET.DATASET's own, with any of
    DATASET.{CLASSES, PALETTE, REDUCE_ZERO_LABEL, LABEL_MAP, FLIP_PAIRS} and
    TRAIN.IGNORE_LABEL that the experiment sets taking precedence."""
    data = cfg.DATASET
    base = SPECS.get(data.DATASET)
    classes = tuple(data.CLASSES) or (base.classes if base else
                                      tuple(f'class {c}' for c in range(data.NUM_CLASSES)))
    palette = tuple(tuple(colour) for colour in data.PALETTE) or (
        base.palette if base and len(base.palette) == len(classes)
        else default_palette(len(classes)))
    label_map = ({int(raw): int(train_id) for raw, train_id in data.LABEL_MAP}
                 if data.LABEL_MAP else (base.label_map if base else None))
    return DatasetSpec(
        name=data.DATASET, classes=classes, palette=palette,
        ignore_label=cfg.TRAIN.IGNORE_LABEL, label_map=label_map,
        reduce_zero_label=data.REDUCE_ZERO_LABEL or bool(base and base.reduce_zero_label),
        flip_pairs=tuple(tuple(pair) for pair in data.FLIP_PAIRS) or
        (base.flip_pairs if base else ()))
