"""Cityscapes label definitions: the 19 evaluated classes and the labelIds → trainIds map.

Cityscapes annotates every pixel with one of 35 *labelIds* (−1 and 0…33, stored in the
``*_gtFine_labelIds.png`` files). Training and evaluation use 19 of them, renumbered to
*trainIds* 0…18; every other labelId (void, ego vehicle, static, parking, rail track,
guard rail, bridge, tunnel, polegroup, caravan, trailer, license plate, and any value
outside −1…33) becomes the ignore label (ADP-C spec, section 4).
"""
import numpy as np

# (trainId order) class name and the labelId it comes from.
CITYSCAPES_CLASSES = (
    ('road', 7),
    ('sidewalk', 8),
    ('building', 11),
    ('wall', 12),
    ('fence', 13),
    ('pole', 17),
    ('traffic light', 19),
    ('traffic sign', 20),
    ('vegetation', 21),
    ('terrain', 22),
    ('sky', 23),
    ('person', 24),
    ('rider', 25),
    ('car', 26),
    ('truck', 27),
    ('bus', 28),
    ('train', 31),
    ('motorcycle', 32),
    ('bicycle', 33),
)

CLASS_NAMES = tuple(name for name, _ in CITYSCAPES_CLASSES)

# labelId → trainId for the 19 evaluated classes; any labelId missing here is ignored.
LABEL_ID_TO_TRAIN_ID = {label_id: train_id
                        for train_id, (_, label_id) in enumerate(CITYSCAPES_CLASSES)}

# labelIds that exist in Cityscapes but are not evaluated (mapped to the ignore label).
IGNORED_LABEL_IDS = (-1, 0, 1, 2, 3, 4, 5, 6, 9, 10, 14, 15, 16, 18, 29, 30)

# Per-class weights of the cross-entropy (trainId order), as in the original release.
CITYSCAPES_CLASS_WEIGHTS = [
    0.8373, 0.918, 0.866, 1.0345, 1.0166, 0.9969, 0.9754, 1.0489, 0.8786, 1.0023,
    0.9539, 0.9843, 1.1116, 0.9037, 1.0865, 1.0955, 1.0865, 1.1529, 1.0507,
]


def label_ids_to_train_ids(label_ids, ignore_label=255):
    """Map a Cityscapes labelId map to trainIds.

    Args:
        label_ids (np.ndarray): integer array of labelIds, any shape (``uint8`` as read
            from a ``*_gtFine_labelIds.png``, or a signed type that may hold −1).
        ignore_label (int): value given to every labelId that is not one of the 19
            evaluated classes. Default 255.

    Returns:
        np.ndarray: ``int64`` array of the same shape holding trainIds 0…18 or
        ``ignore_label``.
    """
    label_ids = np.asarray(label_ids)
    if not np.issubdtype(label_ids.dtype, np.integer):
        raise TypeError(f'labelIds must be integers, got dtype {label_ids.dtype}')
    # A 256-entry lookup table covers every uint8 labelId in one indexing step;
    # values outside 0…255 (−1 for license plates, or corrupt data) stay ignored.
    lookup = np.full(256, ignore_label, dtype=np.int64)
    for label_id, train_id in LABEL_ID_TO_TRAIN_ID.items():
        lookup[label_id] = train_id
    if label_ids.dtype == np.uint8:
        return lookup[label_ids]
    train_ids = np.full(label_ids.shape, ignore_label, dtype=np.int64)
    in_table = (label_ids >= 0) & (label_ids <= 255)
    train_ids[in_table] = lookup[label_ids[in_table]]
    return train_ids


def train_ids_to_label_ids(train_ids, unknown_label_id=0):
    """Map trainIds back to labelIds, e.g. to write predictions for the benchmark server.

    Args:
        train_ids (np.ndarray): integer array of trainIds, any shape.
        unknown_label_id (int): labelId written where ``train_ids`` holds anything other
            than 0…18 (such as the ignore label). Default 0 ('unlabeled').

    Returns:
        np.ndarray: ``uint8`` array of labelIds, same shape.
    """
    train_ids = np.asarray(train_ids)
    # One indexing step through a lookup table (a 1024 x 2048 map in milliseconds).
    lookup = np.array([label_id for _, label_id in CITYSCAPES_CLASSES] + [unknown_label_id],
                      dtype=np.uint8)
    known = (train_ids >= 0) & (train_ids < len(CITYSCAPES_CLASSES))
    return lookup[np.where(known, train_ids, len(CITYSCAPES_CLASSES))]

# RGB colour of each trainId (trainId order), as in the Cityscapes scripts' labels.py.
CITYSCAPES_PALETTE = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70),
    (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)


def colorize(train_ids, ignore_mask=None, palette=CITYSCAPES_PALETTE):
    """RGB picture of a trainId map in a data set's palette (Cityscapes' by default).

    Args:
        train_ids (np.ndarray): H×W integer trainIds; values without a colour are black.
        ignore_mask (np.ndarray or None): H×W bool, pixels painted black (e.g. where
            the ground truth is the ignore label).
        palette (sequence of (r, g, b)): the colour of each trainId
            (``DatasetSpec.palette``).

    Returns:
        np.ndarray: H×W×3 ``uint8`` RGB.
    """
    train_ids = np.asarray(train_ids)
    lookup = np.zeros((max(256, len(palette) + 1), 3), dtype=np.uint8)
    lookup[:len(palette)] = palette
    inside = (train_ids >= 0) & (train_ids < len(lookup))
    rgb = lookup[np.where(inside, train_ids, len(lookup) - 1).astype(np.int64)]
    if ignore_mask is not None:
        rgb[ignore_mask] = 0
    return rgb
