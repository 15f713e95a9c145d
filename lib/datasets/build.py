"""Turn the configuration into a data set: the one place where data keys are read."""
import os

from utils.errors import DataError

from .cityscapes import Cityscapes
from .list_dataset import ListDataset
from .spec import dataset_spec

# DATASET.DATASET → data set class (config.defaults.ALLOWED lists the same names).
DATASETS = {'cityscapes': Cityscapes, 'ade20k': ListDataset, 'lip': ListDataset,
            'pascal_ctx': ListDataset, 'cocostuff': ListDataset, 'custom': ListDataset}


def data_dir(cfg):
    """The folder that the paths of the configuration's list files are relative to."""
    return os.path.join(cfg.DATASET.ROOT, DATASETS[cfg.DATASET.DATASET].folder)


def lists_hint(cfg):
    """How the lists of the configuration's data set are made."""
    return DATASETS[cfg.DATASET.DATASET].list_hint


def build_dataset(cfg, list_path, train):
    """Build the data set named by ``DATASET.DATASET`` from the configuration.

    Training reads TRAIN.{IMAGE_SIZE [w, h], BASE_SIZE, MULTI_SCALE, SCALE_FACTOR, FLIP,
    DOWNSAMPLERATE, NUM_SAMPLES}; evaluation takes whole images and reads
    TEST.{IMAGE_SIZE, BASE_SIZE, NUM_SAMPLES}, with labels at full resolution, as the
    original release did. Both read DATASET.ROOT and the data set's description
    (`datasets.spec.dataset_spec`: DATASET.{NUM_CLASSES, CLASSES, ...}, TRAIN.IGNORE_LABEL).

    Args:
        cfg (yacs.config.CfgNode): the merged configuration.
        list_path (str): list file relative to DATASET.ROOT, e.g. ``cfg.DATASET.TRAIN_SET``.
        train (bool): True for the augmented training set, False for evaluation.

    Returns:
        ListDataset: e.g. a `Cityscapes` instance.

    Raises:
        ValueError: DATASET.DATASET is not a known data set, or an IMAGE_SIZE is not [w, h].
        ConfigError: the DATASET keys disagree (see `dataset_spec`).
        DataError: the root, the list or a listed file is missing (the data set's own
            message).
    """
    name = cfg.DATASET.DATASET
    if name not in DATASETS:
        raise ValueError(f'DATASET.DATASET is {name!r}; known data sets: '
                         f'{", ".join(sorted(DATASETS))}.')
    section, node = ('TRAIN', cfg.TRAIN) if train else ('TEST', cfg.TEST)
    if len(node.IMAGE_SIZE) != 2:
        raise ValueError(f'{section}.IMAGE_SIZE must be [width, height], '
                         f'got {list(node.IMAGE_SIZE)}.')
    width, height = node.IMAGE_SIZE
    spec = dataset_spec(cfg)
    common = dict(crop_size=(height, width),
                  base_size=node.BASE_SIZE,
                  num_samples=node.NUM_SAMPLES)
    if train:
        options = dict(multi_scale=cfg.TRAIN.MULTI_SCALE, scale_factor=cfg.TRAIN.SCALE_FACTOR,
                       flip=cfg.TRAIN.FLIP, downsample_rate=cfg.TRAIN.DOWNSAMPLERATE)
    else:
        options = dict(multi_scale=False, flip=False, downsample_rate=1)
    try:
        return DATASETS[name](cfg.DATASET.ROOT, list_path, spec, train=train, **options,
                              **common)
    except FileNotFoundError as e:  # a missing root, list or listed file: the user's to fix
        raise DataError(str(e)) from e
