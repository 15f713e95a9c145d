"""The Cityscapes semantic segmentation data set (ADP-C spec, section 4).

Samples are listed in ``.lst`` files (see `datasets.lists`); images are read with
OpenCV, labelIds mapped to the 19 trainIds (see `datasets.labels`) and the sample
prepared by `datasets.transforms`: random scale, crop and flip for training, the whole
image for evaluation.
"""
import os
import random

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from utils.errors import DataError

from .images import read_image_file

from .labels import CITYSCAPES_CLASS_WEIGHTS, CITYSCAPES_CLASSES, label_ids_to_train_ids
from .lists import LIST_TOOLS_HINT, read_list, sample_name
from .transforms import eval_sample, train_sample

__all__ = ['Cityscapes', 'CITYSCAPES_CLASS_WEIGHTS', 'CITYSCAPES_CLASSES']


class Cityscapes(Dataset):
    """Cityscapes images and fine labels as ``(image, label, name)`` items.

    ``image`` is a ``float32`` tensor 3×H×W (RGB, ImageNet-normalised), ``label`` an
    ``int64`` tensor H×W of trainIds 0…18 or ``ignore_label`` (all ``ignore_label`` for
    an image-only list such as the test split), ``name`` the image file's stem without
    ``_leftImg8bit`` (e.g. ``frankfurt_000000_000294``).

    Args:
        root (str): data root holding ``cityscapes/`` and ``list/`` (DATASET.ROOT).
        list_path (str): list file relative to ``root`` (DATASET.TRAIN_SET / TEST_SET).
        train (bool): True: random multi-scale resize, crop and flip; False: the whole
            image without augmentation.
        num_samples (int): keep only the first N listed samples; 0 keeps all. Default 0.
        num_classes (int): number of trainIds; Cityscapes has 19. Default 19.
        ignore_label (int): label of void and padded pixels. Default 255.
        base_size (int): long side at scale 1 of the multi-scale resize. Default 2048.
        crop_size (tuple[int, int]): training crop (height, width). Default (512, 1024).
        multi_scale (bool): training: rescale by 0.5 + randint(0, scale_factor) / 10
            and crop; without it, the image keeps its size and is not cropped, as in
            the original release. Default True.
        scale_factor (int): range of the multi-scale rescaling, in tenths. Default 16.
        flip (bool): training: random horizontal flip. Default True.
        downsample_rate (float): label downsampling rate (training and evaluation).
            Default 1.

    Raises:
        FileNotFoundError: ``root``, the list file or a listed file does not exist.
        ValueError: ``num_classes`` is not 19, or ``train`` is set for an image-only list.
    """

    def __init__(self, root, list_path, *, train, num_samples=0, num_classes=19,
                 ignore_label=255, base_size=2048, crop_size=(512, 1024), multi_scale=True,
                 scale_factor=16, flip=True, downsample_rate=1):
        if num_classes != len(CITYSCAPES_CLASSES):
            raise ValueError(f'Cityscapes has {len(CITYSCAPES_CLASSES)} trainIds, got '
                             f'num_classes={num_classes} (DATASET.NUM_CLASSES).')
        if len(crop_size) != 2:
            raise ValueError(f'crop_size must be (height, width), got {crop_size!r}.')
        self.root = root
        self.list_path = list_path
        self.train = train
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.base_size = base_size
        self.crop_size = tuple(crop_size)
        self.multi_scale = multi_scale
        self.scale_factor = scale_factor
        self.flip = flip
        self.downsample_rate = downsample_rate

        entries = read_list(root, list_path)
        if num_samples > 0:
            entries = entries[:num_samples]
        self.labelled = all(label is not None for _, label in entries)
        if train and not self.labelled:
            raise ValueError(f'{os.path.join(root, list_path)} lists images without labels '
                             '(a test split); it cannot be used for training.')
        # Check every path now, so that a wrong root fails here and not mid-epoch.
        self.files = [self._entry(image, label) for image, label in entries]

    def _entry(self, image, label):
        entry = {'image': os.path.join(self.root, 'cityscapes', image),
                 'label': None if label is None
                 else os.path.join(self.root, 'cityscapes', label),
                 'name': sample_name(image)}
        for path in (entry['image'], entry['label']):
            if path is not None and not os.path.isfile(path):
                raise FileNotFoundError(f'{path}, listed in '
                                        f'{os.path.join(self.root, self.list_path)}, does '
                                        'not exist. ' + LIST_TOOLS_HINT)
        return entry

    def __len__(self):
        return len(self.files)

    def __getitem__(self, key):
        """The sample ``key``: an index, or ``(index, seed)`` as the training loader gives
        (``datasets.loaders.EpochSeeds``): the augmentation then draws from
        ``random.Random(seed)`` instead of the ``random`` module."""
        index, rng = (key[0], random.Random(key[1])) if isinstance(key, tuple) else (key, random)
        entry = self.files[index]
        image = _imread(entry['image'], cv2.IMREAD_COLOR)  # H×W×3 BGR uint8
        if entry['label'] is None:
            label = np.full(image.shape[:2], self.ignore_label, dtype=np.int64)
        else:
            label_ids = _imread(entry['label'], cv2.IMREAD_GRAYSCALE)
            if label_ids.shape != image.shape[:2]:
                raise DataError(f'Label {entry["label"]} is {label_ids.shape[1]}x'
                                 f'{label_ids.shape[0]} but image {entry["image"]} is '
                                 f'{image.shape[1]}x{image.shape[0]}.')
            label = label_ids_to_train_ids(label_ids, self.ignore_label)
        if self.train:
            image, label = train_sample(
                image, label, base_size=self.base_size, crop_size=self.crop_size,
                ignore_label=self.ignore_label, multi_scale=self.multi_scale,
                scale_factor=self.scale_factor, flip=self.flip,
                downsample_rate=self.downsample_rate, rng=rng)
        else:
            image, label = eval_sample(image, label, downsample_rate=self.downsample_rate)
        return torch.from_numpy(image), torch.from_numpy(label), entry['name']

    def __repr__(self):
        mode = 'train' if self.train else 'eval'
        return (f'{type(self).__name__}({os.path.join(self.root, self.list_path)}, '
                f'{len(self)} samples, {mode})')


def _imread(path, flags):
    try:
        image = read_image_file(path, flags)
    except FileNotFoundError:
        raise FileNotFoundError(f'{path} does not exist. ' + LIST_TOOLS_HINT) from None
    if image is None:
        raise DataError(f'OpenCV cannot decode {path}; the file may be truncated: copy it '
                        'again or remove it from the list.')
    return image
