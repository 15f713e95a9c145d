"""ListDataset: a custom list relative to DATASET.ROOT, label files (grey, palette,
colour), LIP's flip swapping left and right in training, and an ignore label other than
255 through the data set, the loader's padding, the loss and the metric."""
import os
import random
import struct
import zlib

import cv2
import numpy as np
import pytest
import torch

from config import config
from datasets import ListDataset, build_dataset
from datasets.images import read_label_file
from datasets.loaders import pad_collate
from datasets.spec import LIP, dataset_spec
from datasets.transforms import flip_classes
from engine.criterion import MultiExitLoss
from evaluation.metrics import ConfusionMatrix


def write_palette_png(path, indices, palette):
    """A palette (colour type 3) PNG of ``indices`` (H x W uint8), written by hand."""
    def chunk(kind, data):
        return (struct.pack('>I', len(data)) + kind + data +
                struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))
    height, width = indices.shape
    rows = b''.join(b'\0' + row.tobytes() for row in indices.astype(np.uint8))
    with open(path, 'wb') as handle:
        handle.write(b'\x89PNG\r\n\x1a\n' +
                     chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 3, 0, 0, 0)) +
                     chunk(b'PLTE', bytes(np.asarray(palette, np.uint8).ravel())) +
                     chunk(b'IDAT', zlib.compress(rows)) + chunk(b'IEND', b''))


def custom_root(tmp_path, labels, list_sep=' '):
    """Images and labels under tmp_path with a list of ``image label`` pairs."""
    os.makedirs(tmp_path / 'images' / 'sub', exist_ok=True)
    os.makedirs(tmp_path / 'masks' / 'sub', exist_ok=True)
    lines = []
    for index, label in enumerate(labels):
        image = f'images/sub/{index}.png'
        cv2.imwrite(str(tmp_path / image), np.full(label.shape + (3,), 40 * index, np.uint8))
        cv2.imwrite(str(tmp_path / f'masks/sub/{index}.png'), label)
        lines.append(f'{image}{list_sep}masks/sub/{index}.png\n')
    (tmp_path / 'train.txt').write_text(''.join(lines))
    return str(tmp_path)


def custom_cfg(root, ignore_label, **data):
    cfg = config.clone()
    cfg.DATASET.update(ROOT=root, DATASET='custom', NUM_CLASSES=2,
                       CLASSES=['background', 'object'], TRAIN_SET='train.txt',
                       TEST_SET='train.txt', **data)
    cfg.TRAIN.IGNORE_LABEL = ignore_label
    return cfg


def test_custom_list_is_read_relative_to_the_root_with_its_label_map(tmp_path):
    label = np.array([[0, 0, 9, 9], [0, 9, 9, 3]], np.uint8)
    root = custom_root(tmp_path, [label])
    cfg = custom_cfg(root, 250, LABEL_MAP=[[0, 0], [9, 1]])
    dataset = build_dataset(cfg, cfg.DATASET.TEST_SET, train=False)
    assert isinstance(dataset, ListDataset) and dataset.num_classes == 2
    image, train_ids, name = dataset[0]
    assert name == '0' and image.shape == (3, 2, 4)
    # 3 is not in the map: ignored with the ignore label 250.
    assert train_ids.tolist() == [[0, 0, 1, 1], [0, 1, 1, 250]]


def test_palette_label_pngs_give_their_indices(tmp_path):
    indices = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    palette = [(0, 0, 0), (128, 0, 0), (0, 128, 0)]  # VOC's first colours
    write_palette_png(str(tmp_path / 'p.png'), indices, palette)
    assert cv2.imread(str(tmp_path / 'p.png'), cv2.IMREAD_GRAYSCALE).tolist() != \
        indices.tolist()  # what reading it as grey would have given
    assert read_label_file(str(tmp_path / 'p.png')).tolist() == indices.tolist()
    colour = np.zeros((2, 2, 3), np.uint8)
    colour[0, 0] = (255, 0, 0)
    cv2.imwrite(str(tmp_path / 'c.png'), colour)
    with pytest.raises(ValueError, match='colour image'):
        read_label_file(str(tmp_path / 'c.png'))


def seed_that(flips):
    """A seed whose first ``random()`` draw flips (< 0.5) or not, as asked."""
    return next(s for s in range(100) if (random.Random(s).random() < 0.5) == flips)


def test_lip_training_flip_swaps_left_and_right(tmp_path):
    # 14/15 left/right arm, 16/17 left/right leg, 18/19 left/right shoe, 2 hair.
    raw = np.array([[14, 14, 2, 15],
                    [16, 0, 19, 17],
                    [18, 18, 18, 2]], np.uint8)
    root = custom_root(tmp_path, [raw], list_sep='\t')
    cfg = config.clone()
    cfg.DATASET.update(ROOT=root, DATASET='lip', NUM_CLASSES=20, TRAIN_SET='train.txt')
    cfg.TRAIN.update(IGNORE_LABEL=255, MULTI_SCALE=False, FLIP=True)
    dataset = build_dataset(cfg, cfg.DATASET.TRAIN_SET, train=True)
    _, kept, _ = dataset[(0, seed_that(flips=False))]
    assert kept.tolist() == raw.tolist()
    _, flipped, _ = dataset[(0, seed_that(flips=True))]
    # Mirrored by hand, then every left part made right and every right part left.
    assert flipped.tolist() == [[14, 2, 15, 15],
                                [16, 18, 0, 17],
                                [2, 19, 19, 19]]


def test_flip_classes_keeps_the_ignore_label():
    label = np.array([[14, 15, -1, 255, 3]])
    assert flip_classes(label, LIP.flip_permutation()).tolist() == [[15, 14, -1, 255, 3]]


@pytest.mark.parametrize('ignore_label', [250, -1])
def test_an_ignore_label_other_than_255_reaches_loss_and_metric(tmp_path, ignore_label):
    # 4 x 6 labels: raw 7 is no class (ignored); crops of 8 x 8 pad with the ignore label.
    labels = [np.array([[0, 1, 1, 7, 0, 1]] * 4, np.uint8),
              np.array([[1] * 6] * 2 + [[7] * 6] * 2, np.uint8)]
    root = custom_root(tmp_path, labels)
    cfg = custom_cfg(root, ignore_label, LABEL_MAP=[[0, 0], [1, 1]])
    cfg.TRAIN.update(IMAGE_SIZE=[8, 8], BASE_SIZE=6, SCALE_FACTOR=0, FLIP=False)
    assert dataset_spec(cfg).ignore_label == ignore_label
    train_set = build_dataset(cfg, cfg.DATASET.TRAIN_SET, train=True)
    _, crop, _ = train_set[0]  # scale 0.5: 3 x 2 resized, padded to 8 x 8
    assert crop.shape == (8, 8) and (crop[2:] == ignore_label).all()
    assert (crop[:, 3:] == ignore_label).all() and 255 not in crop

    eval_set = build_dataset(cfg, cfg.DATASET.TEST_SET, train=False)
    images, batch_labels, _, sizes = pad_collate([eval_set[0], eval_set[1]], ignore_label,
                                                 stride=8)
    assert batch_labels.shape == (2, 8, 8) and sizes.tolist() == [[4, 6], [4, 6]]
    valid = batch_labels != ignore_label
    assert int(valid.sum()) == 4 * 5 + 2 * 6  # raw 7 and the padding are ignored
    assert (batch_labels[:, 4:] == ignore_label).all() and 255 not in batch_labels

    torch.manual_seed(0)
    logits = torch.randn(2, 2, 8, 8)
    loss = MultiExitLoss([1.0], num_classes=2, ignore_label=ignore_label)
    total, _ = loss([logits], batch_labels)
    picked = torch.log_softmax(logits, 1).permute(0, 2, 3, 1)[valid]
    expected = -picked.gather(1, batch_labels[valid].unsqueeze(1)).mean()
    torch.testing.assert_close(total, expected)  # same float32 ops up to summation order

    matrix = ConfusionMatrix(2, ignore_label)
    matrix.update(logits, batch_labels)
    assert int(matrix.mat.sum()) == int(valid.sum())
    pred = logits.argmax(1)
    assert int(matrix.mat.trace()) == int((pred == batch_labels)[valid].sum())
