import os
import random
import shutil

import cv2
import numpy as np
import pytest
import torch

from datasets.cityscapes import CITYSCAPES_CLASS_WEIGHTS, Cityscapes
from datasets.labels import label_ids_to_train_ids
from datasets.transforms import normalize
from utils.errors import DataError

TRAIN, VAL, TEST = ('list/cityscapes/%s.lst' % split for split in ('train', 'val', 'test'))
LIST_TOOLS = ('tools/make_cityscapes_lists.py', 'tools/make_synthetic_cityscapes.py')


def listed(root, list_path):
    return [line.split('\t') for line in
            open(os.path.join(root, list_path)).read().splitlines()]


def test_class_weights_are_exposed_for_the_loss():
    assert len(CITYSCAPES_CLASS_WEIGHTS) == 19
    assert torch.tensor(CITYSCAPES_CLASS_WEIGHTS).shape == (19,)


def test_evaluation_items_are_whole_normalised_images_with_train_ids(synthetic_root):
    dataset = Cityscapes(synthetic_root, VAL, train=False, crop_size=(8, 8))
    entries = listed(synthetic_root, VAL)
    assert len(dataset) == len(entries)
    for (image_path, label_path), (image, label, name) in zip(entries, dataset):
        raw = cv2.imread(os.path.join(synthetic_root, 'cityscapes', image_path))
        label_ids = cv2.imread(os.path.join(synthetic_root, 'cityscapes', label_path),
                               cv2.IMREAD_GRAYSCALE)
        assert image.dtype == torch.float32 and image.shape == (3,) + raw.shape[:2]
        assert label.dtype == torch.int64 and label.shape == raw.shape[:2]
        assert torch.equal(image, torch.from_numpy(normalize(raw)))
        # Channel 0 is red: OpenCV's BGR was reversed.
        # float32 rounds value/255, the centred value and the result (u each; see
        # test_transforms' normalisation test).
        centred = raw[..., 2] / 255 - 0.485
        bound = 2.0 ** -24 * ((raw[..., 2] / 255 + np.abs(centred)) / 0.229 +
                              np.abs(centred / 0.229))
        assert (np.abs(image[0].numpy() - centred / 0.229) <= bound).all()
        assert torch.equal(label, torch.from_numpy(label_ids_to_train_ids(label_ids, 255)))
        assert name == os.path.basename(image_path)[:-len('_leftImg8bit.png')]


def test_training_items_are_augmented_crops(synthetic_root):
    random.seed(0)
    dataset = Cityscapes(synthetic_root, TRAIN, train=True, base_size=96, crop_size=(24, 40),
                         ignore_label=255)
    flipped_or_scaled = False
    for index in range(len(dataset)):
        image, label, name = dataset[index]
        assert image.shape == (3, 24, 40) and label.shape == (24, 40)
        assert image.dtype == torch.float32 and label.dtype == torch.int64
        assert set(label.unique().tolist()) <= set(range(19)) | {255}
        assert name.startswith(('aachen', 'bochum', 'bremen', 'cologne'))
        flipped_or_scaled |= not torch.equal(image, dataset[index][0])
    assert flipped_or_scaled  # the same index gives different random samples


def test_test_split_has_ignore_labels_only(synthetic_root):
    dataset = Cityscapes(synthetic_root, TEST, train=False, ignore_label=-1)
    image, label, _ = dataset[0]
    assert label.shape == image.shape[1:] and (label == -1).all()
    with pytest.raises(ValueError, match='without labels'):
        Cityscapes(synthetic_root, TEST, train=True)


@pytest.mark.parametrize('ignore_label', [-1, 100])
def test_ignore_label_marks_void_pixels_of_labelled_images(synthetic_root, ignore_label):
    dataset = Cityscapes(synthetic_root, VAL, train=False, ignore_label=ignore_label)
    void = 0
    for (_, label_path), (_, label, _) in zip(listed(synthetic_root, VAL), dataset):
        label_ids = cv2.imread(os.path.join(synthetic_root, 'cityscapes', label_path),
                               cv2.IMREAD_GRAYSCALE)
        expected = np.where(np.isin(label_ids, [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24,
                                                25, 26, 27, 28, 31, 32, 33]),
                            label.numpy(), ignore_label)
        assert torch.equal(label, torch.from_numpy(expected))
        assert 255 not in label
        void += int((label == ignore_label).sum())
    assert void > 0  # the synthetic labels have void pixels


def test_ignore_label_fills_the_padding_of_training_crops(synthetic_root):
    # Scale 0.5 (scale_factor 0) of base size 96 makes the 96 x 48 images 48 x 24, so a
    # 80 x 40 crop is the image padded at the bottom and the right.
    dataset = Cityscapes(synthetic_root, TRAIN, train=True, base_size=96, crop_size=(40, 80),
                         scale_factor=0, flip=False, ignore_label=100)
    _, label, _ = dataset[0]
    assert label.shape == (40, 80)
    assert torch.all(label[24:] == 100) and torch.all(label[:, 48:] == 100)
    assert label[:24, :48].lt(19).float().mean() > 0.5 and 255 not in label


def test_num_samples_and_dataloader_batches(synthetic_root):
    dataset = Cityscapes(synthetic_root, TRAIN, train=True, num_samples=2, base_size=96,
                         crop_size=(16, 32))
    assert len(dataset) == 2
    images, labels, names = next(iter(torch.utils.data.DataLoader(dataset, batch_size=2)))
    assert images.shape == (2, 3, 16, 32) and labels.shape == (2, 16, 32)
    assert list(names) == [dataset.files[0]['name'], dataset.files[1]['name']]


def test_label_downsampling(synthetic_root):
    dataset = Cityscapes(synthetic_root, TRAIN, train=True, base_size=96, crop_size=(16, 32),
                         downsample_rate=2)
    image, label, _ = dataset[0]
    assert image.shape == (3, 16, 32) and label.shape == (8, 16)


def test_only_nineteen_classes():
    with pytest.raises(ValueError, match='DATASET.NUM_CLASSES'):
        Cityscapes('unused', VAL, train=False, num_classes=20)


def assert_names_path_and_tools(error, path):
    message = str(error.value)
    assert str(path) in message
    assert all(tool in message for tool in LIST_TOOLS)


def test_missing_root_names_it(tmp_path):
    root = tmp_path / 'nowhere'
    with pytest.raises(FileNotFoundError) as error:
        Cityscapes(str(root), VAL, train=False)
    assert_names_path_and_tools(error, root)


def test_missing_list_names_it(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        Cityscapes(str(tmp_path), VAL, train=False)
    assert_names_path_and_tools(error, tmp_path / VAL)


@pytest.fixture
def copied_root(synthetic_root, tmp_path):
    root = tmp_path / 'copy'
    shutil.copytree(synthetic_root, root)
    return root


def test_missing_image_names_it_when_the_dataset_is_built(copied_root):
    image = copied_root / 'cityscapes' / listed(str(copied_root), VAL)[1][0]
    image.unlink()
    with pytest.raises(FileNotFoundError) as error:
        Cityscapes(str(copied_root), VAL, train=False)
    assert_names_path_and_tools(error, image)


def test_missing_label_names_it(copied_root):
    label = copied_root / 'cityscapes' / listed(str(copied_root), TRAIN)[0][1]
    label.unlink()
    with pytest.raises(FileNotFoundError) as error:
        Cityscapes(str(copied_root), TRAIN, train=True)
    assert_names_path_and_tools(error, label)


def test_image_removed_after_building_names_it_when_read(copied_root):
    dataset = Cityscapes(str(copied_root), VAL, train=False)
    image = copied_root / 'cityscapes' / listed(str(copied_root), VAL)[0][0]
    image.unlink()
    with pytest.raises(DataError) as error:
        dataset[0]
    assert_names_path_and_tools(error, image)


def test_label_of_another_size_is_reported(copied_root):
    image_path, label_path = listed(str(copied_root), VAL)[0]
    label = copied_root / 'cityscapes' / label_path
    cv2.imwrite(str(label), np.zeros((8, 8), dtype=np.uint8))
    with pytest.raises(DataError, match=str(label)):
        Cityscapes(str(copied_root), VAL, train=False)[0]
