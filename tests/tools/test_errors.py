"""Errors a user can fix end the tools with one `error:` block, exit status 2 and no
traceback, before anything long is printed; under torchrun the message is printed once
and torchrun's summary names it as the root cause."""
import os
import re
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from datasets.synthetic import generate_synthetic_cityscapes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, 'experiments', 'synthetic', 'tiny_adpc.yaml')
ENV = dict(os.environ, CUDA_VISIBLE_DEVICES='', OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
for name in ('ADPC_DEBUG', 'WORLD_SIZE', 'RANK', 'LOCAL_RANK', 'TORCHELASTIC_ERROR_FILE'):
    ENV.pop(name, None)


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('synthetic'))
    generate_synthetic_cityscapes(root, num_train=4, num_val=1, num_test=0, height=32, width=64)
    return root


def run_tool(*argv, launcher=()):
    return subprocess.run([sys.executable, *launcher, *argv], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300)


def assert_one_error(proc, pattern):
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith('error:')]
    assert len(errors) == 1, proc.stderr
    assert re.search(pattern, errors[0]), errors[0]
    assert 'Traceback' not in proc.stdout + proc.stderr
    assert 'ADPC_DEBUG=1' in proc.stderr
    assert 'CUDNN' not in proc.stdout  # no config dump on the console


@pytest.mark.parametrize('opts,pattern', [
    (['TRAIN.BASE_LR', '0.1'], r'unknown config key TRAIN\.BASE_LR .*did you mean TRAIN\.LR\?'),
    (['MASK.CONF_THRE', 'abc'], r"MASK\.CONF_THRE 'abc' on the command line: expected a float"),
    (['GPUS', '(-1,)'], r'GPUS \(-1,\) on the command line is not allowed: use a list of '
                        r'values >= 0'),
    (['TRAIN.BATCH_SIZE_PER_GPU', '8'], r'4 training images .*BATCH_SIZE_PER_GPU 8'),
])
def test_training_errors_print_one_line(opts, pattern, data_root, tmp_path):
    proc = run_tool('tools/train_ee.py', '--cfg', TINY, 'DATASET.ROOT', data_root,
                    'OUTPUT_DIR', str(tmp_path), *opts)
    assert_one_error(proc, pattern)
    assert not os.listdir(tmp_path)  # refused before anything was written


def test_missing_cfg_and_missing_base(tmp_path):
    assert_one_error(run_tool('tools/test_ee.py', '--cfg', str(tmp_path / 'nope.yaml')),
                     r'--cfg file .*nope\.yaml does not exist')
    variant = tmp_path / 'variant.yaml'
    variant.write_text('_BASE_: w99.yaml\n')
    assert_one_error(run_tool('tools/train_ee.py', '--cfg', str(variant)),
                     r'_BASE_ of .*variant\.yaml: .*w99\.yaml does not exist')


def test_debug_shows_the_traceback(tmp_path):
    proc = run_tool('tools/test_ee.py', '--cfg', str(tmp_path / 'nope.yaml'), '--debug')
    assert proc.returncode == 2 and 'Traceback' in proc.stderr and 'error: --cfg' in proc.stderr


def test_under_torchrun_the_error_is_printed_once_and_is_the_root_cause(data_root, tmp_path):
    proc = run_tool('tools/train_ee.py', '--cfg', TINY, 'DATASET.ROOT', data_root,
                    'OUTPUT_DIR', str(tmp_path), 'TRAIN.BATCH_SIZE_PER_GPU', '3',
                    launcher=('-m', 'torch.distributed.run', '--standalone',
                              '--nproc_per_node', '2'))
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    errors = re.findall(r'^error: (4 training images .*BATCH_SIZE_PER_GPU 3 .*)$', text, re.M)
    assert len(errors) == 1, text
    message = errors[0]
    # torchrun raises its own ChildFailedError; no worker's traceback is shown.
    assert not re.search(r'File ".*(tools|lib)/[a-z_/]+\.py"', text), text
    root_cause = text.split('Root Cause (first observed failure):')[1]
    assert f'traceback : error: {message}' in root_cause
    assert 'exitcode  : 2' in root_cause
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize('argv,pattern', [
    (['tools/get_flops.py', '--cfg', 'nope.yaml'], r'--cfg file .*nope\.yaml does not exist'),
    (['tools/benchmark.py', '--cfg', TINY, 'MASK.CONF_THR', '0.9'],
     r'unknown config key MASK\.CONF_THR .*did you mean MASK\.CONF_THRE\?'),
    (['tools/make_synthetic_cityscapes.py', '--root', '{tmp}', '--height', '8'],
     r'at least 32x32'),
    (['tools/compare_results.py', '{tmp}', '{tmp}'], r'result'),
])
def test_the_other_tools_print_one_line(argv, pattern, tmp_path):
    proc = run_tool(*[a.format(tmp=tmp_path) for a in argv])
    assert_one_error(proc, pattern)


def test_pretrained_weights_of_another_network_stop_training(data_root, tmp_path):
    weights = str(tmp_path / 'resnet.safetensors')
    save_file({'fc.weight': torch.zeros(10, 4), 'fc.bias': torch.zeros(10)}, weights)
    out = str(tmp_path / 'output')
    proc = run_tool('tools/train_ee.py', '--cfg', TINY, 'DATASET.ROOT', data_root,
                    'OUTPUT_DIR', out, 'MODEL.PRETRAINED', weights)
    assert_one_error(proc, r'MODEL\.PRETRAINED .*resnet\.safetensors holds no tensor of this '
                           r'model: its 2 tensors are named like fc\.bias, fc\.weight')
    assert not os.path.exists(os.path.join(out, 'cityscapes', 'tiny_adpc', 'final_state.pth'))
