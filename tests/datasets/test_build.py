import pytest

from config import config
from datasets import Cityscapes, build_dataset


@pytest.fixture
def cfg(synthetic_root):
    cfg = config.clone()
    cfg.DATASET.ROOT = synthetic_root
    cfg.TRAIN.IGNORE_LABEL = 255
    cfg.TRAIN.IMAGE_SIZE = [40, 24]  # [width, height]
    cfg.TRAIN.BASE_SIZE = 96
    return cfg


def test_training_set_reads_the_train_keys(cfg):
    cfg.TRAIN.NUM_SAMPLES = 3
    cfg.TRAIN.DOWNSAMPLERATE = 2
    cfg.TRAIN.SCALE_FACTOR = 4
    dataset = build_dataset(cfg, cfg.DATASET.TRAIN_SET, train=True)
    assert isinstance(dataset, Cityscapes) and dataset.train
    assert len(dataset) == 3
    assert (dataset.crop_size, dataset.base_size, dataset.scale_factor) == ((24, 40), 96, 4)
    image, label, _ = dataset[0]
    assert image.shape == (3, 24, 40) and label.shape == (12, 20)


def test_evaluation_set_gives_whole_images(cfg, synthetic_args):
    cfg.TEST.NUM_SAMPLES = 2
    cfg.TRAIN.DOWNSAMPLERATE = 2  # training only: evaluation labels stay full size
    dataset = build_dataset(cfg, cfg.DATASET.TEST_SET, train=False)
    assert not dataset.train and len(dataset) == 2
    image, label, _ = dataset[1]
    size = (synthetic_args['height'], synthetic_args['width'])
    assert image.shape == (3,) + size and label.shape == size


def test_unknown_dataset_names_the_key(cfg):
    cfg.DATASET.DATASET = 'mapillary'
    with pytest.raises(ValueError, match="DATASET.DATASET is 'mapillary'"):
        build_dataset(cfg, cfg.DATASET.TRAIN_SET, train=True)


def test_image_size_must_be_width_height(cfg):
    cfg.TRAIN.IMAGE_SIZE = [40]
    with pytest.raises(ValueError, match=r'TRAIN.IMAGE_SIZE must be \[width, height\]'):
        build_dataset(cfg, cfg.DATASET.TRAIN_SET, train=True)
