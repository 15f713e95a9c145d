"""Benchmark-server predictions: labelId PNGs with the official names (evaluation.submission)."""
import os

import cv2
import numpy as np
import pytest

from evaluation.submission import SubmissionWriter, label_id_map, prediction_file
from datasets.labels import CITYSCAPES_CLASSES, label_ids_to_train_ids
from utils.errors import OutputError, RunDirectoryError


def test_train_ids_map_back_to_label_ids_and_never_to_ignore():
    train_ids = np.arange(19).reshape(1, 19).repeat(2, axis=0)
    label_ids = label_id_map(train_ids)
    assert label_ids.dtype == np.uint8
    assert label_ids[0].tolist() == [label_id for _, label_id in CITYSCAPES_CLASSES]
    assert np.array_equal(label_ids_to_train_ids(label_ids), train_ids)  # round trip
    with pytest.raises(ValueError, match='trainIds 0..18'):
        label_id_map(np.array([[0, 255]]))


@pytest.mark.parametrize('threads', [0, 2])
def test_writer_names_files_as_the_server_asks_one_folder_per_exit(tmp_path, threads):
    rng = np.random.default_rng(0)
    predictions = {name: rng.integers(0, 19, (48, 96)) for name in
                   ('berlin_000000_000019', 'bonn_000012_000019', 'bonn_000013_000019')}
    with SubmissionWriter(str(tmp_path), [2, 4], threads=threads) as writer:
        for name, pred in predictions.items():
            writer.add(2, name, pred)
            writer.add(4, name, 18 - pred)
    assert sorted(os.listdir(tmp_path)) == ['exit2', 'exit4']
    assert sorted(os.listdir(tmp_path / 'exit4')) == [
        'berlin_000000_000019_leftImg8bit.png', 'bonn_000012_000019_leftImg8bit.png',
        'bonn_000013_000019_leftImg8bit.png']
    for name, pred in predictions.items():
        for k, expected in ((2, pred), (4, 18 - pred)):
            image = cv2.imread(prediction_file(str(tmp_path), k, name), cv2.IMREAD_UNCHANGED)
            assert image.shape == (48, 96) and image.dtype == np.uint8  # full size, 1 channel
            assert np.array_equal(label_ids_to_train_ids(image), expected)


def test_writer_never_overwrites_earlier_predictions(tmp_path):
    with SubmissionWriter(str(tmp_path), [1], threads=0) as writer:
        writer.add(1, 'lindau_000000_000019', np.zeros((4, 4), dtype=np.int64))
    with pytest.raises(RunDirectoryError, match='already holds predictions'):
        SubmissionWriter(str(tmp_path), [1, 2])
    assert not (tmp_path / 'exit2').exists()
    SubmissionWriter(str(tmp_path), [3]).close()  # another exit's folder is free


def test_write_errors_surface_when_the_writer_closes(tmp_path):
    writer = SubmissionWriter(str(tmp_path), [1], threads=2)
    (tmp_path / 'exit1' / 'blocker').write_text('a file where a folder would go')
    writer.add(1, os.path.join('blocker', 'frame'), np.zeros((4, 4), dtype=np.int64))
    with pytest.raises(OutputError, match=r'cannot write .*blocker.*frame_leftImg8bit\.png'):
        writer.close()
