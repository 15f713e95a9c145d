import glob
import itertools
import os
import re
import runpy
import sys

import cv2
import numpy as np
import pytest

from datasets.cityscapes import Cityscapes
from datasets.labels import IGNORED_LABEL_IDS, LABEL_ID_TO_TRAIN_ID
from datasets.synthetic import (CITIES, MARKER, STYLES, generate_synthetic_cityscapes,
                                render_scene)
from utils.errors import ConfigError, DataError

TOOLS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), 'tools')
NAME = r'(?P<city>[a-z]+)_(?P<seq>\d{6})_(?P<frame>\d{6})'


def all_files(root):
    return sorted(os.path.relpath(os.path.join(folder, name), root).replace(os.sep, '/')
                  for folder, _, names in os.walk(root) for name in names)


def test_exact_cityscapes_layout_and_naming(synthetic_root, synthetic_args):
    files = all_files(os.path.join(synthetic_root, 'cityscapes'))
    images = [f for f in files if f.startswith('leftImg8bit/')]
    labels = [f for f in files if f.startswith('gtFine/')]
    assert set(files) == set(images) | set(labels) | {MARKER}
    for split in ('train', 'val', 'test'):
        split_images = [f for f in images if f.split('/')[1] == split]
        count = synthetic_args['num_' + split]
        assert len(split_images) == count
        for path in split_images:
            match = re.fullmatch(rf'leftImg8bit/{split}/(\w+)/{NAME}_leftImg8bit\.png', path)
            assert match and match.group(1) == match.group('city'), path
            assert match.group('city') in CITIES[split]
        cities = {path.split('/')[2] for path in split_images}
        assert len(cities) == min(count, len(CITIES[split]))  # spread over several cities
    expected_labels = [f.replace('leftImg8bit/', 'gtFine/', 1)
                       .replace('_leftImg8bit.png', '_gtFine_labelIds.png')
                       for f in images if f.split('/')[1] != 'test']
    assert labels == sorted(expected_labels)


def test_labels_hold_real_label_ids_with_void_ones(synthetic_root, synthetic_args):
    base = os.path.join(synthetic_root, 'cityscapes')
    seen = set()
    for path in all_files(base):
        if path.startswith('gtFine/'):
            label = cv2.imread(os.path.join(base, path), cv2.IMREAD_UNCHANGED)
            assert label.dtype == np.uint8 and label.ndim == 2
            assert label.shape == (synthetic_args['height'], synthetic_args['width'])
            seen |= set(np.unique(label).tolist())
    assert seen <= set(LABEL_ID_TO_TRAIN_ID) | set(IGNORED_LABEL_IDS)
    assert 1 in seen  # the ego vehicle, ignored as in real data
    assert len(seen & set(LABEL_ID_TO_TRAIN_ID)) >= 8


def test_scenes_cover_all_classes_and_void_ids():
    seen = set()
    for index in range(20):
        seen |= set(np.unique(render_scene(128, 256, np.random.default_rng(index))[1]).tolist())
    assert set(LABEL_ID_TO_TRAIN_ID) <= seen
    assert {0, 1, 4, 9} <= seen


def test_classes_differ_in_colour():
    # A nearest-mean-colour classifier, fitted on some scenes and tested on others, must
    # beat chance by far: the property that lets a small network learn the data quickly.
    def pixels(seeds):
        images, labels = zip(*(render_scene(64, 128, np.random.default_rng(s)) for s in seeds))
        return (np.concatenate([i.reshape(-1, 3) for i in images]).astype(np.float64),
                np.concatenate([l.ravel() for l in labels]))
    colours, label_ids = pixels(range(10))
    classes = [c for c in LABEL_ID_TO_TRAIN_ID if (label_ids == c).any()]
    means = np.stack([colours[label_ids == c].mean(0) for c in classes])
    colours, label_ids = pixels(range(100, 105))
    keep = np.isin(label_ids, classes)
    nearest = np.argmin(((colours[keep, None] - means[None]) ** 2).sum(-1), axis=1)
    accuracy = (np.asarray(classes)[nearest] == label_ids[keep]).mean()
    assert accuracy > 0.95


def test_evaluated_classes_have_distant_colours():
    colours = {label_id: np.array(STYLES[label_id][0], dtype=float)
               for label_id in LABEL_ID_TO_TRAIN_ID}
    distances = [np.linalg.norm(colours[a] - colours[b])
                 for a, b in itertools.combinations(colours, 2)]
    assert min(distances) > 75


def test_quick_start_validation_set_holds_every_class(tmp_path):
    # The data of scripts/quickstart.sh: a class missing from the validation images would
    # count as 0 IoU in every exit's mIoU.
    generate_synthetic_cityscapes(str(tmp_path), num_train=0, num_val=16, num_test=0,
                                  height=128, width=256)
    seen, pixels = set(), 0
    for path in glob.glob(str(tmp_path / 'cityscapes' / 'gtFine' / 'val' / '*' / '*.png')):
        label = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        seen |= set(np.unique(label).tolist())
        pixels += label.size
    assert pixels == 16 * 128 * 256
    assert set(LABEL_ID_TO_TRAIN_ID) <= seen


def test_same_seed_same_data_and_images_do_not_depend_on_counts(synthetic_root,
                                                               synthetic_args, tmp_path):
    args = dict(synthetic_args, num_train=2, num_val=1, num_test=0)
    generate_synthetic_cityscapes(str(tmp_path / 'a'), **args)
    generate_synthetic_cityscapes(str(tmp_path / 'b'), **dict(args, seed=args['seed'] + 1))
    path = 'cityscapes/leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png'
    first = cv2.imread(os.path.join(synthetic_root, path))
    assert (cv2.imread(str(tmp_path / 'a' / path)) == first).all()
    assert not (cv2.imread(str(tmp_path / 'b' / path)) == first).all()


def test_generated_lists_load_through_cityscapes(synthetic_root):
    for name, train in (('train', True), ('val', False), ('trainval', False),
                        ('test', False)):
        dataset = Cityscapes(synthetic_root, f'list/cityscapes/{name}.lst', train=train,
                             base_size=96, crop_size=(32, 48))
        image, label, sample = dataset[len(dataset) - 1]
        assert image.shape[0] == 3 and label.shape == image.shape[1:]
        assert re.fullmatch(NAME, sample)


def test_regenerating_replaces_a_synthetic_tree_but_never_other_data(synthetic_args,
                                                                     tmp_path):
    root = tmp_path / 'root'
    args = dict(synthetic_args, num_train=3, num_val=1, num_test=1)
    generate_synthetic_cityscapes(str(root), **args)
    generate_synthetic_cityscapes(str(root), **dict(args, num_train=1))
    assert len(all_files(root / 'cityscapes' / 'leftImg8bit' / 'train')) == 1
    other = tmp_path / 'other'
    (other / 'cityscapes' / 'leftImg8bit').mkdir(parents=True)
    with pytest.raises(DataError, match=str(other / 'cityscapes')):
        generate_synthetic_cityscapes(str(other), **args)


def test_lists_of_other_data_are_never_overwritten(synthetic_args, tmp_path):
    # A root like the repository's data/: shipped Cityscapes lists, no images linked yet.
    lists = tmp_path / 'list' / 'cityscapes'
    lists.mkdir(parents=True)
    shipped = 'leftImg8bit/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png\n'
    (lists / 'test.lst').write_text(shipped)
    with pytest.raises(DataError, match=f'{lists} holds list files that this generator did '
                                        'not write; choose another --root'):
        generate_synthetic_cityscapes(str(tmp_path), **synthetic_args)
    assert (lists / 'test.lst').read_text() == shipped
    assert not (tmp_path / 'cityscapes').exists()


def test_too_small_images_are_refused():
    with pytest.raises(ConfigError, match='at least 32x32'):
        render_scene(16, 64, np.random.default_rng(0))


def run_tool(name, args, monkeypatch, capsys):
    monkeypatch.syspath_prepend(TOOLS)
    monkeypatch.setattr(sys, 'argv', [name] + args)
    runpy.run_path(os.path.join(TOOLS, name), run_name='__main__')
    return capsys.readouterr().out


def test_command_line_tools(tmp_path, monkeypatch, capsys):
    root = str(tmp_path / 'data')
    out = run_tool('make_synthetic_cityscapes.py',
                   ['--root', root, '--train', '2', '--val', '1', '--test', '1',
                    '--height', '32', '--width', '64'], monkeypatch, capsys)
    assert 'train.lst: 2 samples' in out and 'trainval.lst: 3 samples' in out
    assert cv2.imread(os.path.join(
        root, 'cityscapes/leftImg8bit/val/frankfurt/frankfurt_000000_000019_leftImg8bit.png'
    )).shape == (32, 64, 3)
    out = run_tool('make_cityscapes_lists.py', ['--root', root], monkeypatch, capsys)
    assert 'val.lst: 1 samples' in out and 'test.lst: 1 samples' in out
