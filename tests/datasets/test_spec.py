"""datasets.spec: label rules of a data set description, checked against hand-made maps."""
import numpy as np

from config import config
from datasets.labels import label_ids_to_train_ids
from datasets.spec import DatasetSpec, dataset_spec, default_palette


def test_cityscapes_spec_maps_label_ids_as_the_cityscapes_table():
    spec = dataset_spec(config.clone())
    raw = np.arange(256, dtype=np.uint8).reshape(16, 16)
    spec = DatasetSpec(**{**spec.__dict__, 'ignore_label': 255})
    assert np.array_equal(spec.to_train_ids(raw), label_ids_to_train_ids(raw, 255))
    assert spec.num_classes == 19 and spec.classes[0] == 'road'


def test_reduce_zero_label_then_map_and_back():
    spec = DatasetSpec('x', classes=('a', 'b', 'c'), palette=default_palette(3),
                       ignore_label=7, reduce_zero_label=True)
    assert spec.to_train_ids(np.array([0, 1, 2, 3, 9])).tolist() == [7, 0, 1, 2, 8]
    assert spec.to_raw(np.array([0, 1, 2, 7])).tolist() == [1, 2, 3, 0]
    mapped = DatasetSpec('y', classes=('a', 'b'), palette=default_palette(2),
                         ignore_label=255, label_map={10: 0, 20: 1})
    assert mapped.to_train_ids(np.array([10, 20, 30])).tolist() == [0, 1, 255]
    assert mapped.to_raw(np.array([1, 0])).tolist() == [20, 10]
    shared = DatasetSpec('z', classes=('a',), palette=default_palette(1), label_map={1: 0, 2: 0})
    assert shared.to_raw(np.array([0])) is None


def test_flip_permutation_swaps_the_pairs():
    spec = DatasetSpec('lip', classes=tuple('abcdef'), palette=default_palette(6),
                       flip_pairs=((1, 2), (4, 5)))
    assert spec.flip_permutation().tolist() == [0, 2, 1, 3, 5, 4]


def test_default_palette_colours_are_distinct():
    palette = default_palette(200)
    assert len(set(palette)) == 200 and all(0 <= v <= 255 for c in palette for v in c)
