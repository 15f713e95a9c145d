"""Image files: every image and label the project reads goes through here.

``cv2.imread`` prints its own ``[ WARN ]`` line for a file it cannot open, before the
message that names the problem and the fix. Here Python reads the bytes (a missing or
unreadable file is an ordinary ``OSError``) and ``cv2.imdecode`` decodes them, which
reports an undecodable file only by returning None: the caller's message is the only one.
Also: an image read for the network, and the Cityscapes label stored beside it.
"""
import os

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
