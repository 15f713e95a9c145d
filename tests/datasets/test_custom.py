"""One's own data: lists from two folders, the custom reader, and the checker's message
for each kind of problem."""
import os
import sys

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'models'))
from blobs import make_blob_folder  # noqa: E402
from tiny import tiny_cfg  # noqa: E402
from datasets import build_dataset  # noqa: E402
from datasets.custom_lists import make_custom_lists, pair_files  # noqa: E402
from datasets.inspection import inspect_dataset  # noqa: E402
from utils.errors import DataError  # noqa: E402


@pytest.fixture
def root(tmp_path):
    root = str(tmp_path)
    make_blob_folder(root, count=6, height=32, width=64)
    make_custom_lists(root, os.path.join(root, 'images'), os.path.join(root, 'labels'),
                      os.path.join(root, 'list'), val=2)
    return root


def cfg_for(root, *opts):
    return tiny_cfg('ee', 'DATASET.DATASET', 'custom', 'DATASET.ROOT', root,
                    'DATASET.TRAIN_SET', 'list/train.lst', 'DATASET.TEST_SET', 'list/val.lst',
                    'DATASET.NUM_CLASSES', 2, 'LOSS.CLASS_BALANCE', False, *opts)


def listed(root, name='train'):
    with open(os.path.join(root, 'list', f'{name}.lst')) as f:
        return [line.split() for line in f if line.strip()]


def test_unmatched_files_are_refused_by_name(tmp_path):
    images, labels = make_blob_folder(str(tmp_path), count=3)
    os.remove(os.path.join(labels, 'blob_001.png'))
    cv2.imwrite(os.path.join(labels, 'stray.png'), np.zeros((4, 4), np.uint8))
    with pytest.raises(DataError) as error:
        pair_files(images, labels)
    message = str(error.value)
    assert 'blob_001.jpg' in message and 'no label' in message
    assert 'stray.png' in message and 'no image' in message


def test_lists_split_and_are_never_overwritten(root):
    assert len(listed(root, 'train')) == 4 and len(listed(root, 'val')) == 2
    with pytest.raises(DataError, match='not overwritten'):
        make_custom_lists(root, os.path.join(root, 'images'), os.path.join(root, 'labels'),
                          os.path.join(root, 'list'), val=3)
    assert len(listed(root, 'val')) == 2


def test_the_reader_maps_labels_and_honours_another_ignore_label(root):
    image, label = listed(root)[0]
    raw = cv2.imread(os.path.join(root, label), cv2.IMREAD_UNCHANGED)
    # Raw 1 (person) -> class 0, raw 0 unmapped -> the ignore label 9.
    cfg = cfg_for(root, 'DATASET.LABEL_MAP', [[1, 0]], 'TRAIN.IGNORE_LABEL', 9,
                  'DATASET.NUM_CLASSES', 1)
    _, train_ids, name = build_dataset(cfg, cfg.DATASET.TRAIN_SET, train=False)[0]
    assert name == os.path.splitext(os.path.basename(image))[0]
    assert torch.equal(train_ids, torch.from_numpy(np.where(raw == 1, 0, 9)).long())


def test_a_broken_label_in_a_worker_is_one_line(root):
    label = listed(root)[0][1]
    broken = cv2.imread(os.path.join(root, label), cv2.IMREAD_UNCHANGED)
    broken[0, 0] = 5
    cv2.imwrite(os.path.join(root, label), broken)
    cfg = cfg_for(root)
    dataset = build_dataset(cfg, cfg.DATASET.TRAIN_SET, train=False)
    with pytest.raises(DataError) as error:
        next(iter(DataLoader(dataset, num_workers=1)))
    assert str(error.value).startswith(f'{os.path.join(root, label)} holds label values 5')
    assert 'Traceback' not in str(error.value) and '\n' not in str(error.value)


def errors_of(root, *opts):
    cfg = cfg_for(root, *opts)
    found, spec = inspect_dataset(cfg)
    return found, found.errors(spec)


def test_a_clean_set_has_no_error_and_says_what_it_holds(root):
    found, errors = errors_of(root, 'DATASET.CLASSES', ['background', 'person', 'car'],
                              'DATASET.NUM_CLASSES', 3)
    assert errors == []
    assert 'train list/train.lst: 4 samples, images 64x32 (4)' in found.lines
    pixels = np.concatenate([cv2.imread(os.path.join(root, l), 0).ravel()
                             for _, l in listed(root)])
    person = (pixels == 1).mean() * 100
    assert f'person {person:.1f}%' in found.lines[-1]
    assert found.warnings == ['classes never seen in list/train.lst: 2 car (the network '
                              'cannot learn them)']


def test_each_kind_of_problem_is_one_error_line_with_its_files(root):
    (image0, label0), (_, label1), (_, label2), (image3, label3) = listed(root)
    for label, value in ((label0, 7), (label1, 7)):
        broken = cv2.imread(os.path.join(root, label), 0)
        broken[0, 0] = value
        cv2.imwrite(os.path.join(root, label), broken)
    with open(os.path.join(root, label2), 'r+b') as f:
        f.truncate(60)  # the header survives, the pixels do not
    cv2.imwrite(os.path.join(root, label3), np.zeros((8, 8), np.uint8))
    val_image, val_label = listed(root, 'val')[0]
    os.remove(os.path.join(root, val_image))
    cv2.imwrite(os.path.join(root, listed(root, 'val')[1][1]),
                np.dstack([np.zeros((32, 64), np.uint8)] * 2 + [np.ones((32, 64), np.uint8)]))
    _, errors = errors_of(root)
    assert len(errors) == 5, errors
    text = '\n'.join(errors)
    stray = next(e for e in errors if 'neither a class nor ignored' in e)
    assert '7 in 2 file(s)' in stray and label0 in stray and label1 in stray
    assert 'DATASET.LABEL_MAP' in stray
    assert next(e for e in errors if 'undecodable label' in e).endswith(label2)
    assert '8x8, its image 64x32' in next(e for e in errors if 'another size' in e)
    assert val_image in next(e for e in errors if 'missing file' in e)
    assert 'colour label' in text


def test_the_tool_exits_2_with_error_lines(root, capsys):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', 'tools'))
    import check_dataset
    cv2.imwrite(os.path.join(root, listed(root)[0][1]), np.full((32, 64), 3, np.uint8))
    with pytest.raises(SystemExit) as exit_:
        check_dataset.main(['--cfg', os.path.join(os.path.dirname(__file__), '..', '..',
                                                   'experiments', 'custom', 'w18_adpc.yaml'),
                            'DATASET.ROOT', root])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: label values neither a class')
