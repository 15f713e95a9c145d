"""A segmentation data set given by a list of ``image label`` pairs: every data set.

Samples are listed in a list file (see `datasets.lists.read_list`) with paths relative to
a folder under the data root; images are read with OpenCV, labels turned into train ids
by the data set's `DatasetSpec` (its label map, reduce-zero rule and ignore label) and
the sample prepared by `datasets.transforms`: random scale, crop and flip for training
(a flip also swaps the spec's left/right classes), the whole image for evaluation.
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

__all__ = ['ListDataset']

# Appended to "file not found" errors of data sets other than Cityscapes.
LIST_HINT = ('Write the lists of a named data set from its standard layout with '
             'tools/make_lists.py NAME --root DIR, those of your own images and labels with '
             'tools/make_lists.py custom --images IMAGES --labels LABELS (docs/datasets.md).')


class ListDataset(Dataset):
    """``(image, label, name)`` items of the samples a list file names.

    ``image`` is a ``float32`` tensor 3×H×W (RGB, ImageNet-normalised), ``label`` an
    ``int64`` tensor H×W of train ids or ``spec.ignore_label`` (all ignored for an
    image-only list such as a test split), ``name`` the image file's stem.

    Args:
        root (str): data root (DATASET.ROOT); the list is relative to it, and the listed
            paths to ``root/folder``.
        list_path (str): list file relative to ``root`` (DATASET.TRAIN_SET / TEST_SET).
        spec (datasets.spec.DatasetSpec): classes and label rules (``dataset_spec(cfg)``).
        train (bool): True: random multi-scale resize, crop and flip; False: the whole
            image without augmentation.
        num_samples (int): keep only the first N listed samples; 0 keeps all. Default 0.
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
        DataError: (reading a sample) a file cannot be decoded, a label value is neither
            a class nor ignored, or a label is not its image's size.
        ValueError: ``train`` is set for an image-only list.
    """

    folder = ''  # where listed paths start, under the root
    list_hint = LIST_HINT

    def __init__(self, root, list_path, spec, *, train, num_samples=0, base_size=2048,
                 crop_size=(512, 1024), multi_scale=True, scale_factor=16, flip=True,
                 downsample_rate=1):
        if len(crop_size) != 2:
            raise ValueError(f'crop_size must be (height, width), got {crop_size!r}.')
        self.root = root
        self.list_path = list_path
        self.spec = spec
        self.train = train
        self.num_classes = spec.num_classes
        self.ignore_label = spec.ignore_label
        self.base_size = base_size
        self.crop_size = tuple(crop_size)
        self.multi_scale = multi_scale
        self.scale_factor = scale_factor
        self.flip = flip
        self.downsample_rate = downsample_rate
        self.flip_permutation = spec.flip_permutation() if spec.flip_pairs else None

        entries = read_list(root, list_path, self.list_hint)
        if num_samples > 0:
            entries = entries[:num_samples]
        self.labelled = all(label is not None for _, label in entries)
        if train and not self.labelled:
            raise ValueError(f'{os.path.join(root, list_path)} lists images without labels '
                             '(a test split); it cannot be used for training.')
        # Check every path now, so that a wrong root fails here and not mid-epoch.
        self.files = [self._entry(image, label) for image, label in entries]

    def sample_name(self, image):
        """The name of the sample whose image is ``image`` (a listed path)."""
        return os.path.splitext(os.path.basename(image))[0]

    def _entry(self, image, label):
        base = os.path.join(self.root, self.folder)
        entry = {'image': os.path.join(base, image),
                 'label': None if label is None else os.path.join(base, label),
                 'name': self.sample_name(image)}
        for path in (entry['image'], entry['label']):
            if path is not None and not os.path.isfile(path):
                raise FileNotFoundError(f'{path}, listed in '
                                        f'{os.path.join(self.root, self.list_path)}, does '
                                        'not exist. ' + self.list_hint)
        return entry

    def __len__(self):
        return len(self.files)

    def read_label(self, index, image_shape):
        """Train ids (H×W ``int64``) of sample ``index``, whose image is ``image_shape``."""
        entry = self.files[index]
        if entry['label'] is None:
            return np.full(image_shape[:2], self.ignore_label, dtype=np.int64)
        label = read_train_ids(entry['label'], self.spec, self.list_hint)
        if label.shape != image_shape[:2]:
            raise DataError(f'label {entry["label"]} is {label.shape[1]}x{label.shape[0]} '
                            f'but its image {entry["image"]} is {image_shape[1]}x'
                            f'{image_shape[0]}: a label must have its image\'s size')
        return label

    def __getitem__(self, key):
        """The sample ``key``: an index, or ``(index, seed)`` as the training loader gives
        (``datasets.loaders.EpochSeeds``): the augmentation then draws from
        ``random.Random(seed)`` instead of the ``random`` module."""
        index, rng = (key[0], random.Random(key[1])) if isinstance(key, tuple) else (key, random)
        entry = self.files[index]
        image = read_image(entry['image'], self.list_hint)  # H×W×3 BGR
        label = self.read_label(index, image.shape)
        if self.train:
            image, label = train_sample(
                image, label, base_size=self.base_size, crop_size=self.crop_size,
                ignore_label=self.ignore_label, multi_scale=self.multi_scale,
                scale_factor=self.scale_factor, flip=self.flip,
                downsample_rate=self.downsample_rate, rng=rng,
                flip_permutation=self.flip_permutation)
        else:
            image, label = eval_sample(image, label, downsample_rate=self.downsample_rate)
        return torch.from_numpy(image), torch.from_numpy(label), entry['name']

    def __repr__(self):
        mode = 'train' if self.train else 'eval'
        return (f'{type(self).__name__}({os.path.join(self.root, self.list_path)}, '
                f'{len(self)} samples, {mode})')
