"""Data problems are found before training starts (issue 10, section 4)."""
import os
import shutil
import sys

import cv2
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'models'))
from tiny import tiny_cfg  # noqa: E402
from datasets.checks import MAX_PROBLEMS, check_training_inputs, png_size  # noqa: E402
from utils.errors import DataError  # noqa: E402


def listed(root, name):
    with open(os.path.join(root, 'list', 'cityscapes', name + '.lst')) as f:
        return [line.split() for line in f if line.strip()]


def cfg_for(root, *opts):
    return tiny_cfg('ee', 'DATASET.ROOT', root, 'TRAIN.IMAGE_SIZE', [96, 32], *opts)


@pytest.fixture
def root(synthetic_root, tmp_path):
    copy = str(tmp_path / 'data')
    shutil.copytree(synthetic_root, copy)
    return copy


def test_png_size_reads_the_header_only(root):
    image, label = listed(root, 'val')[0]
    path = os.path.join(root, 'cityscapes', image)
    assert png_size(path) == cv2.imread(path).shape[:2]
    with open(path, 'r+b') as f:
        f.truncate(10)
    assert 'not a PNG' in png_size(path)


def test_clean_data_passes_and_odd_sized_validation_images_are_fine(root):
    image, label = listed(root, 'val')[0]
    cv2.imwrite(os.path.join(root, 'cityscapes', image), np.zeros((90, 200, 3), np.uint8))
    cv2.imwrite(os.path.join(root, 'cityscapes', label), np.zeros((90, 200), np.uint8))
    check_training_inputs(cfg_for(root))  # evaluation pads odd sizes: no problem


def test_every_problem_is_listed_with_its_file(root):
    (train_image, train_label), (other_image, _) = listed(root, 'train')[:2]
    os.remove(os.path.join(root, 'cityscapes', train_label))
    with open(os.path.join(root, 'cityscapes', other_image), 'wb') as f:
        f.write(b'not an image')
    val_image, val_label = listed(root, 'val')[0]
    cv2.imwrite(os.path.join(root, 'cityscapes', val_label), np.zeros((10, 20), np.uint8))
    with pytest.raises(DataError) as error:
        check_training_inputs(cfg_for(root, 'TRAIN.IMAGE_SIZE', [100, 32]))
    message = str(error.value)
    assert '4 problem(s)' in message
    assert 'TRAIN.IMAGE_SIZE [100, 32]' in message
    assert train_label in message and 'does not exist' in message
    assert other_image in message and 'not a PNG' in message
    assert val_label in message and '20x10' in message


def test_missing_cityscapes_folder_is_one_problem(root):
    # data/ as the repository ships it: the lists, no data set linked yet.
    shutil.rmtree(os.path.join(root, 'cityscapes'))
    with pytest.raises(DataError) as error:
        check_training_inputs(cfg_for(root))
    message = str(error.value)
    assert '1 problem(s)' in message
    assert (f'{root}/cityscapes does not exist: unpack Cityscapes there or link a copy '
            f'(ln -s /path/to/cityscapes {root}/cityscapes)') in message


def test_at_most_twenty_problems_are_shown(root):
    with open(os.path.join(root, 'list', 'cityscapes', 'val.lst'), 'w') as f:
        f.writelines(f'leftImg8bit/val/x/missing{i}_leftImg8bit.png\tgtFine/val/x/m{i}.png\n'
                     for i in range(15))
    with pytest.raises(DataError) as error:
        check_training_inputs(cfg_for(root))
    message = str(error.value)
    assert '30 problem(s)' in message and '... and 10 more' in message
    assert message.count('does not exist') == MAX_PROBLEMS


def test_training_stops_before_writing_anything(root, tmp_path):
    from engine.train import train
    from utils.distributed import DistContext
    _, label = listed(root, 'val')[-1]
    os.remove(os.path.join(root, 'cityscapes', label))
    out = tmp_path / 'output'
    cfg = cfg_for(root, 'OUTPUT_DIR', str(out), 'TRAIN.END_EPOCH', 1)
    with pytest.raises(DataError, match=label):
        train(cfg, 'tiny.yaml', DistContext())
    assert not out.exists()
