"""What a data set is to the rest of the code: its classes, their colours, and the rules
that turn a label file's raw values into train ids (and back).

Every reader of labels (training, evaluation, pictures, submissions, flips) takes a
`DatasetSpec` instead of a data set's constants, so that a new data set is a new spec,
not new code. `dataset_spec(cfg)` builds it from the DATASET keys, starting from the
named data set's own description and letting the experiment override any part of it.
"""
from dataclasses import dataclass, field

import numpy as np

from config.errors import ConfigError

from .class_names import (ADE20K_CLASSES, COCO_STUFF_CLASSES, COCO_UNUSED_IDS, LIP_CLASSES,
                          LIP_FLIP_PAIRS, PASCAL_CONTEXT_CLASSES)
from .labels import CITYSCAPES_CLASS_WEIGHTS, CITYSCAPES_CLASSES, CITYSCAPES_PALETTE


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
        class_weights (tuple[float] | None): per-class weights of the cross-entropy
            (LOSS.CLASS_BALANCE); None where the data set has none.
    """
    name: str
    classes: tuple
    palette: tuple
    ignore_label: int = 255
    label_map: dict = None
    reduce_zero_label: bool = False
    flip_pairs: tuple = field(default=())
    class_weights: tuple = None

    @property
    def num_classes(self):
        return len(self.classes)

    def to_train_ids(self, raw):
        """Train ids (``int64``, same shape) of a raw label map (any integer array)."""
        raw = np.asarray(raw)
        if not np.issubdtype(raw.dtype, np.integer):
            raise TypeError(f'labels must be integers, got dtype {raw.dtype}')
        if raw.dtype == np.uint8:
            # Label PNGs: map the 256 possible values once, then index (one step, even
            # for COCO-Stuff's 171-entry map over a large image).
            return self.to_train_ids(np.arange(256, dtype=np.int16))[raw]
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


def _coco_stuff_label_map():
    # COCO-Stuff's label PNGs (stuffthingmaps) hold the COCO category id minus 1
    # (0..181); the 171 ids in use become train ids 0..170 in id order.
    used = [coco_id for coco_id in range(1, 183) if coco_id not in COCO_UNUSED_IDS]
    return {coco_id - 1: train_id for train_id, coco_id in enumerate(used)}


CITYSCAPES = DatasetSpec(
    name='cityscapes',
    classes=tuple(name for name, _ in CITYSCAPES_CLASSES),
    palette=CITYSCAPES_PALETTE,
    label_map={label_id: train_id for train_id, (_, label_id) in enumerate(CITYSCAPES_CLASSES)},
    class_weights=tuple(CITYSCAPES_CLASS_WEIGHTS))
ADE20K = DatasetSpec('ade20k', ADE20K_CLASSES, default_palette(len(ADE20K_CLASSES)),
                     reduce_zero_label=True)
LIP = DatasetSpec('lip', LIP_CLASSES, default_palette(len(LIP_CLASSES)),
                  flip_pairs=LIP_FLIP_PAIRS)
# PASCAL-Context: 59 classes with background ignored (the usual benchmark), or 60 with it.
PASCAL_CONTEXT = DatasetSpec('pascal_ctx', PASCAL_CONTEXT_CLASSES,
                             default_palette(len(PASCAL_CONTEXT_CLASSES)),
                             reduce_zero_label=True)
PASCAL_CONTEXT_60 = DatasetSpec('pascal_ctx', ('background',) + PASCAL_CONTEXT_CLASSES,
                                default_palette(len(PASCAL_CONTEXT_CLASSES) + 1))
COCO_STUFF = DatasetSpec('cocostuff', COCO_STUFF_CLASSES,
                         default_palette(len(COCO_STUFF_CLASSES)),
                         label_map=_coco_stuff_label_map())

# DATASET.DATASET -> the named data set's own description.
SPECS = {spec.name: spec for spec in (CITYSCAPES, ADE20K, LIP, PASCAL_CONTEXT, COCO_STUFF)}
# Named data sets that come in another number of classes: (name, NUM_CLASSES) -> spec.
VARIANTS = {('pascal_ctx', 60): PASCAL_CONTEXT_60}


def named_spec(name, num_classes):
    """The description of the named data set ``name`` with ``num_classes`` classes where
    it comes in several (PASCAL-Context's 59 or 60), else its only one; None for a data
    set of the user's own (``custom``)."""
    return VARIANTS.get((name, num_classes), SPECS.get(name))


def dataset_spec(cfg):
    """The `DatasetSpec` of the configuration: DATASET.DATASET's own, with any of
    DATASET.{CLASSES, PALETTE, REDUCE_ZERO_LABEL, LABEL_MAP, FLIP_PAIRS} and
    TRAIN.IGNORE_LABEL that the experiment sets taking precedence.

    Raises:
        ConfigError: naming the key that disagrees with the classes (DATASET.NUM_CLASSES,
            PALETTE, LABEL_MAP or FLIP_PAIRS) and what to do.
    """
    data = cfg.DATASET
    base = named_spec(data.DATASET, data.NUM_CLASSES)
    classes = _classes(data, base)
    count = len(classes)
    palette = (_palette(data.PALETTE, count) if data.PALETTE else
               base.palette if base and len(base.palette) == count else default_palette(count))
    label_map = (_label_map(data.LABEL_MAP, count, cfg.TRAIN.IGNORE_LABEL)
                 if data.LABEL_MAP else base.label_map if base else None)
    return DatasetSpec(
        name=data.DATASET, classes=classes, palette=palette,
        ignore_label=cfg.TRAIN.IGNORE_LABEL, label_map=label_map,
        reduce_zero_label=data.REDUCE_ZERO_LABEL or bool(base and base.reduce_zero_label),
        flip_pairs=(_flip_pairs(data.FLIP_PAIRS, count) if data.FLIP_PAIRS else
                    base.flip_pairs if base else ()),
        class_weights=base.class_weights if base and base.classes == classes else None)


def _classes(data, base):
    if data.CLASSES:
        if len(data.CLASSES) != data.NUM_CLASSES:
            raise ConfigError(f'DATASET.NUM_CLASSES is {data.NUM_CLASSES} but DATASET.CLASSES '
                              f'names {len(data.CLASSES)} classes: make them agree')
        if len(set(data.CLASSES)) != len(data.CLASSES):
            raise ConfigError('DATASET.CLASSES names a class twice: give each class once')
        return tuple(str(name) for name in data.CLASSES)
    if base is None:
        return tuple(f'class {c}' for c in range(data.NUM_CLASSES))
    if base.num_classes != data.NUM_CLASSES:
        counts = sorted({base.num_classes} | {n for name, n in VARIANTS if name == base.name})
        raise ConfigError(f'DATASET.NUM_CLASSES is {data.NUM_CLASSES} but {base.name} has '
                          f'{" or ".join(map(str, counts))} classes: set DATASET.NUM_CLASSES '
                          f'{counts[0]}, or name the classes in DATASET.CLASSES')
    return base.classes


def _palette(palette, count):
    if len(palette) != count:
        raise ConfigError(f'DATASET.PALETTE has {len(palette)} colours for {count} classes: '
                          'give one [r, g, b] per class')
    for colour in palette:
        if not (isinstance(colour, (list, tuple)) and len(colour) == 3 and
                all(_is_int(v) and 0 <= v <= 255 for v in colour)):
            raise ConfigError(f'DATASET.PALETTE holds {colour!r}: each colour must be '
                              '[r, g, b] with integers 0..255')
    return tuple(tuple(int(v) for v in colour) for colour in palette)


def _label_map(pairs, count, ignore_label):
    label_map = {}
    for pair in pairs:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(map(_is_int, pair))):
            raise ConfigError(f'DATASET.LABEL_MAP holds {pair!r}: each entry must be '
                              '[raw value, train id] with two integers')
        raw, train_id = int(pair[0]), int(pair[1])
        if not (0 <= train_id < count or train_id == ignore_label):
            raise ConfigError(f'DATASET.LABEL_MAP maps {raw} to {train_id}, which is neither a '
                              f'class (0..{count - 1}) nor TRAIN.IGNORE_LABEL ({ignore_label})')
        if raw in label_map:
            raise ConfigError(f'DATASET.LABEL_MAP maps the raw value {raw} twice: keep one '
                              'entry per raw value')
        label_map[raw] = train_id
    return label_map


def _flip_pairs(pairs, count):
    seen = set()
    for pair in pairs:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(map(_is_int, pair))
                and all(0 <= c < count for c in pair) and pair[0] != pair[1]):
            raise ConfigError(f'DATASET.FLIP_PAIRS holds {pair!r}: each entry must be two '
                              f'different classes in 0..{count - 1}')
        if seen & set(pair):
            raise ConfigError(f'DATASET.FLIP_PAIRS names class {sorted(seen & set(pair))[0]} '
                              'in two pairs: a class swaps with one other at most')
        seen |= set(pair)
    return tuple((int(a), int(b)) for a, b in pairs)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)
