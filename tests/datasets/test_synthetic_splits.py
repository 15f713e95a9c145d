"""The splits of the synthetic data set, and of any list files, stay disjoint: no city, no
sample name, no file and no picture is in two of train, val and test, as in the real
Cityscapes; an overlap would evaluate a model on images it was trained on."""
import hashlib
import itertools
import os

import cv2

from datasets.lists import SPLITS, make_cityscapes_lists, read_list
from datasets.synthetic import CITIES, generate_synthetic_cityscapes

PAIRS = list(itertools.combinations(SPLITS, 2))


def lists(root):
    return {name: read_list(root, f'list/cityscapes/{name}.lst')
            for name in ('train', 'val', 'trainval', 'test')}


def split_files(root):
    """Split -> the image files under cityscapes/leftImg8bit/SPLIT, relative to it."""
    base = os.path.join(root, 'cityscapes', 'leftImg8bit')
    return {split: sorted(os.path.relpath(os.path.join(folder, name), base)
                          for folder, _, names in os.walk(os.path.join(base, split))
                          for name in names) for split in SPLITS}


def test_the_generator_s_cities_are_disjoint():
    for a, b in PAIRS:
        assert not set(CITIES[a]) & set(CITIES[b]), (a, b)


def test_generated_splits_share_no_city_name_file_or_picture(synthetic_root):
    files = split_files(synthetic_root)
    cities = {s: {path.split(os.sep)[1] for path in files[s]} for s in SPLITS}
    names = {s: {os.path.basename(path) for path in files[s]} for s in SPLITS}
    base = os.path.join(synthetic_root, 'cityscapes', 'leftImg8bit')
    pictures = {s: {hashlib.sha256(cv2.imread(os.path.join(base, p)).tobytes()).hexdigest()
                    for p in files[s]} for s in SPLITS}
    for a, b in PAIRS:
        assert files[a] and files[b]
        assert not cities[a] & cities[b], (a, b, cities[a] & cities[b])
        assert not names[a] & names[b], (a, b)
        assert not pictures[a] & pictures[b], (a, b)
    for split in SPLITS:  # every image of a split is a different picture
        assert len(pictures[split]) == len(files[split]), split


def assert_lists_keep_the_splits_apart(root):
    listed = lists(root)
    images = {name: [image for image, _ in entries] for name, entries in listed.items()}
    for split in SPLITS:
        # Each list holds its own split's folder, each image once, and all of it.
        assert all(path.startswith(f'leftImg8bit/{split}/') for path in images[split])
        assert all(label is None or label.startswith(f'gtFine/{split}/')
                   for _, label in listed[split])
        assert len(set(images[split])) == len(images[split])
        assert sorted(p.split('/', 1)[1] for p in images[split]) == \
            sorted(p.replace(os.sep, '/') for p in split_files(root)[split])
    for a, b in PAIRS:
        assert not set(images[a]) & set(images[b]), (a, b)
    assert images['trainval'] == images['train'] + images['val']


def test_generated_lists_keep_the_splits_apart(synthetic_root):
    assert_lists_keep_the_splits_apart(synthetic_root)


def test_lists_made_from_a_folder_keep_the_splits_apart(synthetic_args, tmp_path):
    root = str(tmp_path)
    generate_synthetic_cityscapes(root, **dict(synthetic_args, num_train=4, num_val=3,
                                               num_test=2, height=32, width=64))
    os.remove(os.path.join(root, 'list', 'cityscapes', 'train.lst'))
    make_cityscapes_lists(root)
    assert_lists_keep_the_splits_apart(root)
