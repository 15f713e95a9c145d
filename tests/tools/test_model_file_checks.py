"""A TEST.MODEL_FILE that is missing, truncated or of another variant is refused in one
line before an evaluation (or a sweep) makes any folder: a run's directory gets no
``eval/...`` or ``sweep/`` folder, and no log, for a file it could not evaluate."""
import argparse
import os
import re

import pytest
import torch

from config import config, update_config
from models import get_seg_model
from test_unwritable_outputs import SMALL, TINY, data_root, run_tool  # noqa: F401 (fixture)
# torch's error recorder cannot enable faulthandler on pytest's captured stderr.
pytestmark = pytest.mark.filterwarnings('ignore:Unable to enable fault handler')


def tiny_config(*opts):
    return update_config(config.clone(), argparse.Namespace(cfg=TINY, opts=list(opts)))


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    """The three bad files, by name."""
    folder = tmp_path_factory.mktemp('weights')
    whole = folder / 'adpc.pth'
    torch.save(get_seg_model(tiny_config(), pretrained=False).state_dict(), whole)
    truncated = folder / 'truncated.pth'
    truncated.write_bytes(whole.read_bytes()[:2000])
    ee = folder / 'ee.pth'
    torch.save(get_seg_model(tiny_config('EXIT.TYPE', 'original', 'MASK.USE', 'False'),
                             pretrained=False).state_dict(), ee)
    return {'missing': (str(folder / 'nope.pth'), r'does not exist: check the path'),
            'truncated': (str(truncated), r'is truncated or damaged'),
            'other variant': (str(ee), r'does not fit the model built from the config')}


@pytest.mark.parametrize('case', ['missing', 'truncated', 'other variant'])
@pytest.mark.parametrize('tool', ['test_ee.py', 'sweep_threshold.py'])
def test_a_bad_model_file_leaves_the_run_directory_as_it_was(tool, case, checkpoints, data_root,
                                                             tmp_path, monkeypatch, capsys):
    run = tmp_path / 'cityscapes' / 'tiny_adpc'
    run.mkdir(parents=True)
    opts = ['DATASET.ROOT', data_root, 'OUTPUT_DIR', str(tmp_path)] + SMALL
    (run / 'config.yaml').write_text(tiny_config(*opts).dump())
    model_file, reason = checkpoints[case]
    status, stdout, stderr = run_tool([tool, '--cfg', TINY, 'TEST.MODEL_FILE', model_file]
                                      + opts, monkeypatch, capsys)
    errors = [line for line in stderr.splitlines() if line.startswith('error:')]
    assert status == 2, stdout[-2000:] + stderr[-2000:]
    assert len(errors) == 1 and model_file in errors[0], stderr
    assert re.search(reason, stderr), stderr
    assert 'Traceback' not in stdout + stderr
    assert os.listdir(run) == ['config.yaml']  # no eval/, sweep/ or log
