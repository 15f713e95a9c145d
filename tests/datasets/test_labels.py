import numpy as np
import pytest

from datasets.labels import (CITYSCAPES_CLASS_WEIGHTS, CITYSCAPES_CLASSES, CLASS_NAMES,
                             label_ids_to_train_ids, train_ids_to_label_ids)

# The contract of the ADP-C spec, section 4, written out independently of the code.
SPEC_MAPPING = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
                23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
# The evaluated classes of the Cityscapes label definitions (cityscapesScripts,
# helpers/labels.py) as (name, labelId, trainId).
CITYSCAPES_LABELS = [
    ('road', 7, 0), ('sidewalk', 8, 1), ('building', 11, 2), ('wall', 12, 3),
    ('fence', 13, 4), ('pole', 17, 5), ('traffic light', 19, 6), ('traffic sign', 20, 7),
    ('vegetation', 21, 8), ('terrain', 22, 9), ('sky', 23, 10), ('person', 24, 11),
    ('rider', 25, 12), ('car', 26, 13), ('truck', 27, 14), ('bus', 28, 15),
    ('train', 31, 16), ('motorcycle', 32, 17), ('bicycle', 33, 18)]
SPEC_IGNORED = [-1, 0, 1, 2, 3, 4, 5, 6, 9, 10, 14, 15, 16, 18, 29, 30]


@pytest.mark.parametrize('ignore_label', [255, -1])
def test_every_uint8_label_id_maps_as_specified(ignore_label):
    label_ids = np.arange(256, dtype=np.uint8).reshape(16, 16)
    train_ids = label_ids_to_train_ids(label_ids, ignore_label)
    assert train_ids.dtype == np.int64 and train_ids.shape == (16, 16)
    for label_id, train_id in zip(label_ids.ravel(), train_ids.ravel()):
        assert train_id == SPEC_MAPPING.get(int(label_id), ignore_label), label_id


def test_ignored_ids_of_the_spec_including_minus_one():
    label_ids = np.array(SPEC_IGNORED + [34, 100, 254, 255, 256, -7], dtype=np.int16)
    assert (label_ids_to_train_ids(label_ids, 255) == 255).all()
    assert (label_ids_to_train_ids(label_ids, -1) == -1).all()


def test_signed_input_maps_valid_ids_like_uint8():
    label_ids = np.array(list(SPEC_MAPPING) + [-1], dtype=np.int32)
    expected = list(SPEC_MAPPING.values()) + [255]
    assert label_ids_to_train_ids(label_ids).tolist() == expected


def test_float_labels_are_rejected():
    with pytest.raises(TypeError, match='integer'):
        label_ids_to_train_ids(np.zeros((2, 2), dtype=np.float32))


def test_train_ids_back_to_label_ids():
    train_ids = np.array(list(SPEC_MAPPING.values()) + [255, 19, -1])
    label_ids = train_ids_to_label_ids(train_ids)
    assert label_ids.dtype == np.uint8
    assert label_ids.tolist() == list(SPEC_MAPPING) + [0, 0, 0]
    assert (label_ids_to_train_ids(label_ids[:19]) == train_ids[:19]).all()


def test_class_weights_and_names_follow_the_spec():
    assert CITYSCAPES_CLASS_WEIGHTS == pytest.approx(
        [0.8373, 0.918, 0.866, 1.0345, 1.0166, 0.9969, 0.9754, 1.0489, 0.8786, 1.0023,
         0.9539, 0.9843, 1.1116, 0.9037, 1.0865, 1.0955, 1.0865, 1.1529, 1.0507])
    assert all(isinstance(weight, float) for weight in CITYSCAPES_CLASS_WEIGHTS)
    assert len(CLASS_NAMES) == 19 and CLASS_NAMES[0] == 'road' and CLASS_NAMES[-1] == 'bicycle'


def test_class_table_follows_the_cityscapes_label_definitions():
    by_train_id = sorted(CITYSCAPES_LABELS, key=lambda label: label[2])
    assert [train_id for _, _, train_id in by_train_id] == list(range(19))
    assert CLASS_NAMES == tuple(name for name, _, _ in by_train_id)
    assert CITYSCAPES_CLASSES == tuple((name, label_id) for name, label_id, _ in by_train_id)
    for name, label_id, train_id in CITYSCAPES_LABELS:
        assert label_ids_to_train_ids(np.array([label_id], dtype=np.uint8))[0] == train_id, name
