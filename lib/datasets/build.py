"""Turn the configuration into a data set: the one place where data keys are read."""
import os

from utils.errors import DataError

from .cityscapes import Cityscapes
from .custom import ListDataset
from .spec import dataset_spec

# DATASET.DATASET → data set class.
DATASETS = {'cityscapes': Cityscapes, 'custom': ListDataset}
# DATASET.DATASET → the folder under DATASET.ROOT that its lists' paths are relative to.
DATA_DIRS = {'cityscapes': 'cityscapes'}


def data_dir(cfg):
    """The folder that the paths of the configuration's list files are relative to."""
    sub = DATA_DIRS.get(cfg.DATASET.DATASET)
    return os.path.join(cfg.DATASET.ROOT, sub) if sub else cfg.DATASET.ROOT


def build_dataset(cfg, list_path, train):
    """Build the data set named by ``DATASET.DATASET`` from the configuration.

    Training reads TRAIN.{IMAGE_SIZE [w, h], BASE_SIZE, MULTI_SCALE, SCALE_FACTOR, FLIP,
    DOWNSAMPLERATE, NUM_SAMPLES}; evaluation takes whole images and reads
    TEST.{IMAGE_SIZE, BASE_SIZE, NUM_SAMPLES}, with labels at full resolution, as the
    original release did. Both read DATASET.{ROOT, NUM_CLASSES} and TRAIN.IGNORE_LABEL.

    Args:
        cfg (yacs.config.CfgNode): the merged configuration.
        list_path (str): list file relative to DATASET.ROOT, e.g. ``cfg.DATASET.TRAIN_SET``.
        train (bool): True for the augmented training set, False for evaluation.

    Returns:
        torch.utils.data.Dataset: e.g. a `Cityscapes` instance.

    Raises:
        ValueError: DATASET.DATASET is not a known data set, or an IMAGE_SIZE is not [w, h].
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
    common = dict(num_classes=cfg.DATASET.NUM_CLASSES,
                  ignore_label=cfg.TRAIN.IGNORE_LABEL,
                  crop_size=(height, width),
                  base_size=node.BASE_SIZE,
                  num_samples=node.NUM_SAMPLES)
    if train:
        options = dict(multi_scale=cfg.TRAIN.MULTI_SCALE, scale_factor=cfg.TRAIN.SCALE_FACTOR,
                       flip=cfg.TRAIN.FLIP, downsample_rate=cfg.TRAIN.DOWNSAMPLERATE)
    else:
        options = dict(multi_scale=False, flip=False, downsample_rate=1)
    if name == 'custom':  # described by the configuration's spec alone
        del common['num_classes'], common['ignore_label']
        common['spec'] = dataset_spec(cfg)
    try:
        return DATASETS[name](cfg.DATASET.ROOT, list_path, train=train, **options, **common)
    except FileNotFoundError as e:  # a missing root, list or listed file: the user's to fix
        raise DataError(str(e)) from e
