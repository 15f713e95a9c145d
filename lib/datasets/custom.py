"""A data set of one's own (``DATASET.DATASET custom``): list files of ``image label``
lines, both paths relative to DATASET.ROOT (the base project's format), read under the
rules of the configuration's `datasets.spec.DatasetSpec` (classes, ignore label, label
map, reduce-zero-label).

    ROOT/images/0001.jpg   ROOT/labels/0001.png   ROOT/list/train.lst: images/0001.jpg labels/0001.png

``tools/make_lists.py custom`` writes such lists from an images folder and a labels folder.
"""
import os
import random

import numpy as np
import torch
from torch.utils.data import Dataset

from utils.errors import DataError

from .lists import read_list
from .samples import read_image, read_train_ids
from .transforms import eval_sample, train_sample

CUSTOM_LISTS_HINT = ('Write the lists with tools/make_lists.py custom --root ROOT --images '
                     'IMAGES --labels LABELS (docs/datasets.md, "Your own data").')


class ListDataset(Dataset):
    """``(image, label, name)`` items of a list of image / label files, as `Cityscapes`
    gives them (``name``: the image file's stem).

    Args:
        root (str): DATASET.ROOT; the listed paths are relative to it.
        list_path (str): list file relative to ``root``.
        spec (DatasetSpec): classes and label rules.
        train (bool): random scale, crop and flip (as `Cityscapes`), or the whole image.
        num_samples (int): keep the first N samples; 0 keeps all.
        base_size, crop_size, multi_scale, scale_factor, flip, downsample_rate: as
            `Cityscapes`.

    Raises:
        DataError: the root, the list or a listed file does not exist.
    """

    def __init__(self, root, list_path, spec, *, train, num_samples=0, base_size=2048,
                 crop_size=(512, 1024), multi_scale=True, scale_factor=16, flip=True,
                 downsample_rate=1):
        self.root, self.list_path, self.spec, self.train = root, list_path, spec, train
        self.ignore_label = spec.ignore_label
        self.num_classes = spec.num_classes
        self.base_size, self.crop_size = base_size, tuple(crop_size)
        self.multi_scale, self.scale_factor = multi_scale, scale_factor
        self.flip, self.downsample_rate = flip, downsample_rate
        try:
            entries = read_list(root, list_path)
        except FileNotFoundError as e:
            raise DataError(f'{str(e).split(". ")[0]}. {CUSTOM_LISTS_HINT}') from None
        if num_samples > 0:
            entries = entries[:num_samples]
        self.labelled = all(label is not None for _, label in entries)
        if train and not self.labelled:
            raise DataError(f'{os.path.join(root, list_path)} lists images without labels; '
                            'it cannot be used for training')
        self.files = []
        for image, label in entries:
            paths = [os.path.join(root, image)] + ([os.path.join(root, label)] if label else [])
            for path in paths:
                if not os.path.isfile(path):
                    raise DataError(f'{path}, listed in {os.path.join(root, list_path)}, does '
                                    f'not exist. {CUSTOM_LISTS_HINT}')
            self.files.append({'image': paths[0], 'label': paths[1] if label else None,
                               'name': os.path.splitext(os.path.basename(image))[0]})

    def __len__(self):
        return len(self.files)

    def __getitem__(self, key):
        """The sample ``key``: an index, or ``(index, seed)`` (see `Cityscapes`)."""
        index, rng = (key[0], random.Random(key[1])) if isinstance(key, tuple) else (key, random)
        entry = self.files[index]
        image = read_image(entry['image'])
        if entry['label'] is None:
            label = np.full(image.shape[:2], self.ignore_label, dtype=np.int64)
        else:
            label = read_train_ids(entry['label'], self.spec)
            if label.shape != image.shape[:2]:
                raise DataError(f'label {entry["label"]} is {label.shape[1]}x{label.shape[0]} '
                                f'but its image {entry["image"]} is {image.shape[1]}x'
                                f'{image.shape[0]}: a label must have its image\'s size')
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
