"""Data: lists of image/label pairs read through a data set's description (`spec`:
Cityscapes, ADE20K, LIP, PASCAL-Context, COCO-Stuff or the user's own), label mapping, sample preparation, a synthetic generator,
per-process loaders (with padding to the network's stride) and image files.

Layer: beside ``models``, below ``evaluation``. May import utils and config; knows
nothing of models.

    from datasets import build_dataset
    train_set = build_dataset(cfg, cfg.DATASET.TRAIN_SET, train=True)
"""
from . import cityscapes
from .build import DATASETS, build_dataset
from .cityscapes import CITYSCAPES_CLASS_WEIGHTS, Cityscapes
from .list_dataset import ListDataset

__all__ = ['build_dataset', 'DATASETS', 'ListDataset', 'Cityscapes',
           'CITYSCAPES_CLASS_WEIGHTS', 'cityscapes']
