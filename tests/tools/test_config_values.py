"""A value of the right type that its key does not allow ends train_ee and test_ee with
one `error:` line naming key, value and the values allowed, before anything is written:
no run directory, and no eval/<KEY=value>/ folder in an existing run."""
import os

import pytest
import yaml

from config import default_config, merge_yaml
from test_errors import TINY, assert_one_error, run_tool

# (override, what the error line must say)
NOT_ALLOWED = [
    (['EXIT.TYPE', 'flexi'], r"EXIT\.TYPE 'flexi' on the command line is not allowed: "
                             r"use one of 'original', 'flex'$"),
    (['MASK.EXECUTION', 'fast'], r"MASK\.EXECUTION 'fast' .* is not allowed: "
                                 r"use one of 'dense', 'sparse', 'auto'$"),
    (['MASK.CRIT', 'conf'], r"MASK\.CRIT 'conf' .* is not allowed: "
                            r"use one of 'conf_thre', 'entropy_thre'$"),
    (['MODEL.NAME', 'seg_hrnet_ee'], r"MODEL\.NAME 'seg_hrnet_ee' .* is not allowed: "
                                     r"use 'model_anytime'$"),
    (['TEST.BATCH_SIZE_PER_GPU', '0'], r'TEST\.BATCH_SIZE_PER_GPU 0 .* is not allowed: '
                                       r'use a value >= 1$'),
]


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
    """A training run's directory: its config.yaml (what test_ee evaluates in place)."""
    run = tmp_path_factory.mktemp('run')
    cfg = default_config()
    merge_yaml(cfg, TINY)
    (run / 'config.yaml').write_text(yaml.safe_dump(yaml.safe_load(cfg.dump())))
    return run


@pytest.mark.parametrize('opts,pattern', NOT_ALLOWED)
def test_evaluating_a_run_refuses_the_value_and_writes_nothing(opts, pattern, run_dir):
    proc = run_tool('tools/test_ee.py', '--cfg', str(run_dir / 'config.yaml'),
                    'TEST.MODEL_FILE', str(run_dir / 'final_state.pth'), *opts)
    assert_one_error(proc, pattern)
    assert os.listdir(run_dir) == ['config.yaml']  # no eval/<KEY=value>/, no log


@pytest.mark.parametrize('opts,pattern', NOT_ALLOWED)
def test_training_refuses_the_value_and_writes_nothing(opts, pattern, tmp_path):
    proc = run_tool('tools/train_ee.py', '--cfg', TINY, 'OUTPUT_DIR', str(tmp_path / 'out'),
                    *opts)
    assert_one_error(proc, pattern)
    assert os.listdir(tmp_path) == []  # no run directory
