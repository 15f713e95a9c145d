"""The CUDNN keys (CUDNN.ALLOW_TF32 above all) reach torch.backends through the setup of
every tool, and every output that holds a time records the TF32 flags it ran with: the
benchmark, the calibration, latency profiles, evaluation timings and sweeps measure the
arithmetic that training and evaluation run. (The CPU has no TF32, but the flags are
set and read alike.)"""
import argparse
import json
import os
import subprocess
import sys

import pytest
import torch

import engine.train as training
import evaluation.run as evaluation_run
import anytime.sweep as sweep
from anytime.predict import model_from_args
from config import default_config, merge_opts
from datasets.synthetic import generate_synthetic_cityscapes
from models.sparse import calibrate
from utils.distributed import DistContext
from utils.runtime import CUBLAS_DETERMINISTIC_WORKSPACE, apply_cudnn, full_float32, \
    tf32_flags

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TESTS, '..', 'tools'))
sys.path.insert(0, os.path.join(TESTS, 'models'))
import benchmark  # noqa: E402  (tools/benchmark.py)
import profile_latency  # noqa: E402
import time_eval_modes  # noqa: E402
from tiny import TINY_STAGES, tiny_cfg  # noqa: E402

TINY = 'experiments/synthetic/tiny_adpc.yaml'
OFF = {'cudnn': False, 'matmul': False}
cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul


@pytest.fixture(autouse=True)
def backends(monkeypatch):
    """The process-wide flags as they were before the test, restored after it."""
    monkeypatch.chdir(os.path.join(TESTS, '..'))
    monkeypatch.delenv('CUBLAS_WORKSPACE_CONFIG', raising=False)
    saved = (cudnn.enabled, cudnn.benchmark, cudnn.deterministic, cudnn.allow_tf32,
             matmul.allow_tf32, torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled())
    yield
    (cudnn.enabled, cudnn.benchmark, cudnn.deterministic, cudnn.allow_tf32,
     matmul.allow_tf32) = saved[:5]
    torch.use_deterministic_algorithms(saved[5], warn_only=saved[6])


def cfg_with(*opts):
    cfg = default_config()
    merge_opts(cfg, list(opts))
    return cfg


def test_the_default_is_pytorchs_default():
    fresh = subprocess.run(
        [sys.executable, '-c', 'import torch; b = torch.backends; '
                               'print(b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32)'],
        capture_output=True, text=True, check=True).stdout.split()
    cudnn.allow_tf32, matmul.allow_tf32 = False, True  # the other way round
    apply_cudnn(default_config())
    assert [str(v) for v in tf32_flags().values()] == fresh == ['True', 'False']


def test_apply_cudnn_sets_every_flag_of_the_section():
    apply_cudnn(cfg_with('CUDNN.ALLOW_TF32', 'False', 'CUDNN.BENCHMARK', 'True',
                         'CUDNN.ENABLED', 'False'))
    assert tf32_flags() == OFF and cudnn.benchmark and not cudnn.enabled
    assert not cudnn.deterministic and not torch.are_deterministic_algorithms_enabled()
    assert 'CUBLAS_WORKSPACE_CONFIG' not in os.environ

    apply_cudnn(cfg_with('CUDNN.DETERMINISTIC', 'True'))
    assert cudnn.deterministic and not cudnn.benchmark  # autotuning may pick other kernels
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled()
    assert os.environ['CUBLAS_WORKSPACE_CONFIG'] == CUBLAS_DETERMINISTIC_WORKSPACE
    assert tf32_flags() == {'cudnn': True, 'matmul': False}


def test_deterministic_keeps_a_cublas_workspace_the_user_chose(monkeypatch):
    monkeypatch.setenv('CUBLAS_WORKSPACE_CONFIG', ':16:8')
    apply_cudnn(cfg_with('CUDNN.DETERMINISTIC', 'True'))
    assert os.environ['CUBLAS_WORKSPACE_CONFIG'] == ':16:8'


def test_full_float32_holds_within_its_block_only():
    cudnn.allow_tf32 = matmul.allow_tf32 = True
    with full_float32():
        assert tf32_flags() == OFF
    assert tf32_flags() == {'cudnn': True, 'matmul': True}


def test_benchmark_times_with_the_key_and_records_it(tmp_path, monkeypatch, capsys):
    out = tmp_path / 'benchmark.json'
    tiny = [str(o) for o in TINY_STAGES] + ['MODEL.PRETRAINED', '', 'EXIT.INTER_CHANNEL', '8']
    monkeypatch.setattr(sys, 'argv', [
        'benchmark.py', '--cfg', 'experiments/cityscapes/w48_adpc.yaml', '--shape', '32',
        '32', '--skip-segments', '--warmup', '0', '--repeats', '1', '--json', str(out),
        'CUDNN.ALLOW_TF32', 'False', *tiny])
    cudnn.allow_tf32 = True
    benchmark.main()
    assert json.loads(out.read_text())['machine']['tf32'] == OFF == tf32_flags()
    assert f'TF32 {OFF}' in capsys.readouterr().out


def test_calibration_runs_with_the_key_and_prints_it(monkeypatch, capsys):
    seen = []

    def break_even(*layer, device):
        seen.append(tf32_flags())
        return 0.5
    monkeypatch.setattr(calibrate, 'break_even', break_even)
    calibrate.main(['--threads', '1', 'CUDNN.ALLOW_TF32', 'False'])
    dtypes = calibrate.calibration_dtypes(torch.device('cpu'))  # float32 (and bfloat16)
    assert seen == [OFF] * len(calibrate.LAYERS) * len(dtypes)
    assert f'TF32 {OFF}' in capsys.readouterr().out.splitlines()[0]


def test_model_tools_apply_the_key_and_profiles_record_it(tmp_path):
    """predict, visualize and profile_latency build their model with model_from_args."""
    args = argparse.Namespace(cfg=TINY, device='cpu', threads=None,
                              opts=['CUDNN.ALLOW_TF32', 'False'])
    cudnn.allow_tf32 = True
    model_from_args(args)
    assert tf32_flags() == OFF

    out = tmp_path / 'profile.json'
    profile_latency.main(['--cfg', TINY, '--shape', '64', '64', '--densities', '0.5',
                          '--repeats', '1', '--out', str(out), 'CUDNN.ALLOW_TF32', 'False'])
    assert json.loads(out.read_text())['device']['tf32'] == OFF


def test_evaluation_timings_apply_the_key_and_print_it(monkeypatch, capsys):
    monkeypatch.setattr(sys, 'argv', ['time_eval_modes.py', '--cfg', TINY, '--images', '1',
                                      '--height', '32', '--width', '64', '--modes', 'plain',
                                      'CUDNN.ALLOW_TF32', 'False'])
    cudnn.allow_tf32 = True
    time_eval_modes.main()
    assert tf32_flags() == OFF
    assert f'TF32 {OFF}' in capsys.readouterr().out


class ModelBuilt(Exception):
    """Raised where a tool builds its model: its setup is done."""


def stop_at_model(*args, **kwargs):
    raise ModelBuilt(tf32_flags())


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('synthetic'))
    generate_synthetic_cityscapes(root, num_train=2, num_val=1, num_test=0, height=32,
                                  width=64)
    return root


@pytest.mark.parametrize('tool', ['train', 'test', 'sweep'])
def test_training_evaluation_and_sweeps_apply_the_key_before_the_model(tool, data_root,
                                                                       tmp_path, monkeypatch):
    cfg = tiny_cfg('ee', 'DATASET.ROOT', data_root, 'OUTPUT_DIR', str(tmp_path),
                   'TRAIN.IMAGE_SIZE', [64, 32], 'TRAIN.BATCH_SIZE_PER_GPU', 1,
                   'TEST.MODEL_FILE', str(tmp_path / 'model.pth'), 'CUDNN.ALLOW_TF32', False)
    run = {'train': lambda: training.train(cfg, str(tmp_path / 'run.yaml'), DistContext()),
           'test': lambda: evaluation_run.run_evaluation(cfg, str(tmp_path / 'run.yaml'),
                                                         DistContext()),
           'sweep': lambda: sweep.run_sweep(cfg, str(tmp_path / 'run.yaml'), DistContext(),
                                            [0.9])}[tool]
    monkeypatch.setattr(training.models, 'get_seg_model', stop_at_model)
    monkeypatch.setattr(sweep, 'load_model', stop_at_model)
    cudnn.allow_tf32 = True
    with pytest.raises(ModelBuilt) as built:
        run()
    assert built.value.args[0] == OFF
