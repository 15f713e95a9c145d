"""tools/make_lists.py and datasets.layouts: the lists of each named data set, written
from tiny trees in its standard layout and read back through build_dataset."""
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from config import config
from datasets import build_dataset
from datasets.layouts import LAYOUTS, make_lists
from datasets.spec import SPECS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Each data set's raw label values, drawn on 8x8 labels (0 is background or void).
RAW_VALUES = {'ade20k': [0, 1, 150], 'lip': [0, 14, 19], 'pascal_ctx': [0, 5, 59],
              'cocostuff': [0, 91, 255]}
STEMS = {'train': ['b_2', 'a_1'], 'val': ['c_3']}


def make_tree(root, name):
    """Write two train and one val sample of ``name`` in its layout; returns
    ``{stem: raw label}``."""
    layout, labels = LAYOUTS[name], {}
    rng = np.random.default_rng(len(name))
    for split_list, split in layout.splits.items():
        stems = STEMS['train' if 'train' in split_list else 'val']
        for stem in stems:
            image_path, label_path = (os.path.join(root, t.format(split=split, stem=stem))
                                      for t in (layout.image, layout.label))
            for path in (image_path, label_path):
                os.makedirs(os.path.dirname(path), exist_ok=True)
            cv2.imwrite(image_path, rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
            labels[stem] = rng.choice(RAW_VALUES[name], (8, 8)).astype(np.uint8)
            cv2.imwrite(label_path, labels[stem])
        if layout.stems:
            path = os.path.join(root, layout.stems.format(split=split))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, 'w') as handle:
                handle.write(''.join(stem + '\n' for stem in stems))
    return labels


@pytest.mark.parametrize('name', sorted(LAYOUTS))
def test_lists_of_each_layout_are_read_with_the_data_set_rules(tmp_path, name):
    root = str(tmp_path)
    labels = make_tree(root, name)
    counts = make_lists(name, root)
    list_names = list(LAYOUTS[name].splits)
    assert counts == {f'list/{name}/{list_names[0]}': 2, f'list/{name}/{list_names[1]}': 1}
    train_list = os.path.join(root, 'list', name, list_names[0])
    lines = open(train_list).read().splitlines()
    assert lines == sorted(lines) and all(len(line.split('\t')) == 2 for line in lines)
    assert os.path.basename(lines[0].split('\t')[0]).startswith('a_1.')

    cfg = config.clone()
    cfg.DATASET.update(ROOT=root, DATASET=name, NUM_CLASSES=SPECS[name].num_classes,
                       TEST_SET=f'list/{name}/{list_names[0]}')
    cfg.TRAIN.IGNORE_LABEL = 255
    dataset = build_dataset(cfg, cfg.DATASET.TEST_SET, train=False)
    assert [dataset.files[i]['name'] for i in range(2)] == ['a_1', 'b_2']
    spec = SPECS[name]
    for index, stem in enumerate(['a_1', 'b_2']):
        image, label, _ = dataset[index]
        assert image.shape == (3, 8, 8)
        expected = spec.to_train_ids(labels[stem])
        assert np.array_equal(label.numpy(), expected)
    # The rules were applied: each data set's raw values came out as train ids.
    raw = np.array(RAW_VALUES[name], np.uint8)
    hand = {'ade20k': [255, 0, 149], 'lip': [0, 14, 19], 'pascal_ctx': [255, 4, 58],
            'cocostuff': [0, 80, 255]}
    assert spec.to_train_ids(raw).tolist() == hand[name]


def test_make_lists_of_cityscapes_is_the_cityscapes_tool(synthetic_root, tmp_path):
    import shutil
    root = str(tmp_path / 'copy')
    shutil.copytree(synthetic_root, root)
    list_dir = os.path.join(root, 'list', 'cityscapes')
    before = {n: open(os.path.join(list_dir, n), 'rb').read() for n in os.listdir(list_dir)}
    shutil.rmtree(list_dir)
    counts = make_lists('cityscapes', root)
    assert set(counts) == {f'list/cityscapes/{n}' for n in before}
    assert all(open(os.path.join(list_dir, n), 'rb').read() == b for n, b in before.items())


def test_missing_label_and_empty_tree_are_named(tmp_path):
    root = str(tmp_path)
    make_tree(root, 'lip')
    label = os.path.join(root, 'lip/TrainVal_parsing_annotations/val_segmentations/c_3.png')
    os.remove(label)
    with pytest.raises(FileNotFoundError, match=label):
        make_lists('lip', root)
    with pytest.raises(FileNotFoundError, match='ADEChallengeData2016/images/training'):
        make_lists('ade20k', root)


def test_tool_reports_a_wrong_folder_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, 'tools/make_lists.py', 'cocostuff',
                             '--root', str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and 'Traceback' not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith('error:')]
    assert len(errors) == 1 and 'cocostuff/images/train2017' in errors[0]
    assert not os.path.exists(tmp_path / 'list')
