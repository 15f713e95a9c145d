"""Image files: every image and label the project reads goes through here.

``cv2.imread`` prints its own ``[ WARN ]`` line for a file it cannot open, before the
message that names the problem and the fix. Here Python reads the bytes (a missing or
unreadable file is an ordinary ``OSError``) and ``cv2.imdecode`` decodes them, which
reports an undecodable file only by returning None: the caller's message is the only one.
Label files hold class values: grey PNGs (8 or 16 bits) are read as they are, and
palette PNGs (VOC style, as many annotation tools write them) as their palette indices,
which OpenCV alone would turn into colours.
Also: an image read for the network, and the Cityscapes label stored beside it.
"""
import os
import struct

import cv2
import numpy as np
import torch

from utils.errors import DataError
from .labels import label_ids_to_train_ids
from .transforms import normalize


def read_image_file(path, flags=cv2.IMREAD_COLOR):
    """``cv2.imread(path, flags)``, without OpenCV's warnings.

    Args:
        path (str): the image file.
        flags (int): e.g. ``cv2.IMREAD_COLOR`` (H x W x 3 BGR) or ``cv2.IMREAD_GRAYSCALE``.
    Returns:
        numpy.ndarray or None: the image; None if OpenCV cannot decode the file (empty,
        truncated or not an image).
    Raises:
        OSError: the file cannot be read (FileNotFoundError when it does not exist).
    """
    data = np.fromfile(path, dtype=np.uint8)
    return cv2.imdecode(data, flags) if data.size else None


def read_label_file(path):
    """The raw values of a label file: an H x W integer array (uint8 or uint16).

    Grey images are returned as stored; a palette PNG gives the palette index of each
    pixel; a colour image whose three channels are equal gives that channel.

    Returns:
        numpy.ndarray or None: None if OpenCV cannot decode the file.
    Raises:
        OSError: the file cannot be read (FileNotFoundError when it does not exist).
        ValueError: the file is a colour image, which holds no class values.
    """
    data = np.fromfile(path, dtype=np.uint8)
    label = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if label is None or label.ndim == 2:
        return label
    palette = _png_palette(data.tobytes())
    colours = label[:, :, :3]
    if palette is not None:
        return _palette_indices(colours, palette, path)
    if (colours == colours[:, :, :1]).all():
        return np.ascontiguousarray(colours[:, :, 0])
    raise ValueError(f'{path} is a colour image: a label file must hold one class value '
                     'per pixel (a grey or palette PNG)')


def _png_palette(data):
    # The PLTE colours (RGB rows) of a palette PNG (colour type 3), else None.
    if data[:8] != b'\x89PNG\r\n\x1a\n' or len(data) < 26 or data[25] != 3:
        return None
    offset = 8
    while offset + 8 <= len(data):
        length, kind = struct.unpack('>I4s', data[offset:offset + 8])
        if kind == b'PLTE':
            table = np.frombuffer(data[offset + 8:offset + 8 + length], dtype=np.uint8)
            return table.reshape(-1, 3)
        offset += 12 + length
    return None


def _palette_indices(bgr, palette, path):
    # OpenCV expands a palette PNG to colours; each colour goes back to its first index.
    codes = (bgr[:, :, 2].astype(np.int64) << 16) | (bgr[:, :, 1].astype(np.int64) << 8) \
        | bgr[:, :, 0]
    table = (palette[:, 0].astype(np.int64) << 16) | (palette[:, 1].astype(np.int64) << 8) \
        | palette[:, 2]
    first = {}
    for index, code in enumerate(table.tolist()):
        first.setdefault(code, index)
    keys = np.array(sorted(first), dtype=np.int64)
    values = np.array([first[k] for k in keys.tolist()], dtype=np.int64)
    position = np.clip(np.searchsorted(keys, codes), 0, len(keys) - 1)
    if not (keys[position] == codes).all():
        raise ValueError(f'{path}: a pixel colour is not in its palette')
    dtype = np.uint8 if len(palette) <= 256 else np.uint16
    return values[position].astype(dtype)


def read_image_checked(path, flags=cv2.IMREAD_COLOR):
    """:func:`read_image_file` for a file the user named: a problem is a DataError.

    Raises:
        DataError: naming the file and what is wrong with it.
    """
    try:
        image = read_image_file(path, flags)
    except FileNotFoundError:
        raise DataError(f'{path}: no such file') from None
    except OSError as e:
        raise DataError(f'{path}: cannot be read ({e.strerror})') from None
    if image is None:
        raise DataError(f'{path}: OpenCV cannot read it as an image (empty, truncated or '
                        'not an image file)')
    return image


def read_image(path):
    """A BGR image file as (normalised 3 x H x W tensor, H x W x 3 uint8 RGB).

    Raises:
        DataError: the file is missing or not an image.
    """
    bgr = read_image_checked(path, cv2.IMREAD_COLOR)
    return torch.from_numpy(normalize(bgr)), np.ascontiguousarray(bgr[:, :, ::-1])


def cityscapes_label(image_path, ignore_label):
    """The trainIds of a Cityscapes image's ``gtFine_labelIds`` file, when it exists next
    to it in the usual layout (``leftImg8bit/...`` -> ``gtFine/...``); else None."""
    path = image_path.replace('leftImg8bit', 'gtFine', 1) \
        .replace('_leftImg8bit.png', '_gtFine_labelIds.png')
    if path == image_path or not os.path.isfile(path):
        return None
    return label_ids_to_train_ids(read_image_checked(path, cv2.IMREAD_GRAYSCALE), ignore_label)
