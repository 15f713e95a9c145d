"""Pictures and submissions follow the data set's spec: its palette, names and raw
label values (Cityscapes' by default, as before)."""
import logging

import numpy as np

from datasets.labels import CITYSCAPES_PALETTE, colorize, train_ids_to_label_ids
from datasets.spec import CITYSCAPES, DatasetSpec
from evaluation.figure import legend_entries
from evaluation.submission import SubmissionWriter, label_id_map, prediction_file

TWO = DatasetSpec(name='custom', classes=('background', 'person'),
                  palette=((1, 2, 3), (200, 100, 50)), label_map={10: 0, 20: 1})
SHARED = DatasetSpec(name='custom', classes=('background', 'person'),
                     palette=((1, 2, 3), (200, 100, 50)), label_map={10: 0, 11: 0, 20: 1})
IDS = np.array([[0, 1], [1, 0]])


def test_colorize_and_legend_use_the_palette_and_names():
    assert colorize(IDS, palette=TWO.palette)[0, 1].tolist() == [200, 100, 50]
    assert colorize(IDS)[0, 1].tolist() == list(CITYSCAPES_PALETTE[1])  # default unchanged
    assert legend_entries([IDS], None, TWO.classes, TWO.palette) == \
        [('background', (1, 2, 3)), ('person', (200, 100, 50))]


def test_submissions_hold_raw_values_where_the_map_has_an_inverse(tmp_path, caplog):
    assert label_id_map(IDS, TWO).tolist() == [[10, 20], [20, 10]]
    everything = np.arange(19).reshape(1, 19)
    assert np.array_equal(label_id_map(everything, CITYSCAPES),
                          train_ids_to_label_ids(everything))  # Cityscapes unchanged
    assert label_id_map(IDS, SHARED).tolist() == IDS.tolist()  # no inverse: trainIds
    with caplog.at_level(logging.INFO):
        SubmissionWriter(str(tmp_path), [4], threads=0, spec=SHARED).close()
    assert 'prediction PNGs hold trainIds' in caplog.text
    assert prediction_file('d', 4, 'a', TWO).endswith('exit4/a.png')
    assert prediction_file('d', 4, 'a').endswith('exit4/a_leftImg8bit.png')
