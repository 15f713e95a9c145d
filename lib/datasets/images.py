"""Image files outside a dataset: an image read for the network, and the Cityscapes label
stored beside it. The tools that take ``--image`` paths all read them here."""
import os

import cv2
import numpy as np
import torch

from utils.errors import DataError
from .labels import label_ids_to_train_ids
from .transforms import normalize


def read_image(path):
    """A BGR image file as (normalised 3 x H x W tensor, H x W x 3 uint8 RGB).

    Raises:
        DataError: the file is missing or not an image.
    """
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise DataError(f'{path}: ' + ('no such file' if not os.path.isfile(path)
                                       else 'OpenCV cannot read it as an image'))
    return torch.from_numpy(normalize(bgr)), np.ascontiguousarray(bgr[:, :, ::-1])


def cityscapes_label(image_path, ignore_label):
    """The trainIds of a Cityscapes image's ``gtFine_labelIds`` file, when it exists next
    to it in the usual layout (``leftImg8bit/...`` -> ``gtFine/...``); else None."""
    path = image_path.replace('leftImg8bit', 'gtFine', 1) \
        .replace('_leftImg8bit.png', '_gtFine_labelIds.png')
    if path == image_path or not os.path.isfile(path):
        return None
    return label_ids_to_train_ids(cv2.imread(path, cv2.IMREAD_GRAYSCALE), ignore_label)
