"""The first commands of a user, as real tool runs on tiny synthetic data: a start that
fails before its first checkpoint does not block the corrected command, a run with a
checkpoint stays protected, and Ctrl-C is one line with the command that continues."""
import argparse
import glob
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys

import pytest
import torch

import models
from config import config, update_config
from datasets.synthetic import generate_synthetic_cityscapes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, 'experiments', 'synthetic', 'tiny_adpc.yaml')
ENV = dict(os.environ, CUDA_VISIBLE_DEVICES='', OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
for name in ('ADPC_DEBUG', 'WORLD_SIZE', 'RANK', 'LOCAL_RANK', 'TORCHELASTIC_ERROR_FILE'):
    ENV.pop(name, None)
TIMEOUT = 300
# 4 training images of 32x64 at their own size, in list order, one log line per step:
# 2 steps per epoch with the config's batch of 2.
SMALL = ['TRAIN.IMAGE_SIZE', '[64,32]', 'TEST.IMAGE_SIZE', '[64,32]', 'TRAIN.BASE_SIZE', '64',
         'TEST.BASE_SIZE', '64', 'TRAIN.END_EPOCH', '1', 'TRAIN.SHUFFLE', 'False',
         'PRINT_FREQ', '1']


def make_data(root):
    generate_synthetic_cityscapes(str(root), num_train=4, num_val=1, num_test=0, height=32,
                                  width=64)
    return str(root)


@pytest.fixture
def data_root(tmp_path):
    return make_data(tmp_path / 'data')


def train_command(data_root, output_dir, *opts):
    return [sys.executable, 'tools/train_ee.py', '--cfg', TINY, 'DATASET.ROOT', data_root,
            'OUTPUT_DIR', str(output_dir)] + SMALL + list(opts)


def run(command):
    return subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=TIMEOUT)


def run_dir(output_dir):
    return os.path.join(str(output_dir), 'cityscapes', 'tiny_adpc')


def logs(folder):
    return sorted(glob.glob(os.path.join(folder, 'tiny_adpc_*_train.log')), key=os.path.getmtime)


def read(path):
    with open(path) as f:
        return f.read()


def error_line(proc):
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    (line,) = [line for line in proc.stderr.splitlines() if line.startswith('error:')]
    return line


def file_times(folder):
    return {path: os.stat(path).st_mtime_ns
            for path in glob.glob(os.path.join(folder, '**'), recursive=True)}


def test_the_fixed_command_after_two_failed_starts_trains(data_root, tmp_path):
    out = tmp_path / 'output'
    missing = run(train_command(data_root, out, 'MODEL.PRETRAINED', 'nothing.pth'))
    assert 'MODEL.PRETRAINED file not found: nothing.pth' in error_line(missing)
    assert not out.exists()  # refused before anything was written
    too_big = run(train_command(data_root, out, 'TRAIN.BATCH_SIZE_PER_GPU', '64'))
    assert 'TRAIN.BATCH_SIZE_PER_GPU 64' in error_line(too_big)
    assert not out.exists()
    fixed = run(train_command(data_root, out))
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    assert os.path.isfile(os.path.join(run_dir(out), 'final_state.pth'))


def tiny_weights(data_root):
    cfg = update_config(config.clone(), argparse.Namespace(
        cfg=TINY, opts=['DATASET.ROOT', data_root] + SMALL))
    torch.manual_seed(0)
    return models.get_seg_model(cfg, pretrained=False).state_dict()


def test_the_same_command_after_fixing_the_weights_file_takes_the_start_over(data_root,
                                                                             tmp_path):
    weights, out = tmp_path / 'weights.pth', tmp_path / 'output'
    weights.write_bytes(b'half a download')
    command = train_command(data_root, out, 'MODEL.PRETRAINED', str(weights))
    failed = run(command)
    assert 'is not a PyTorch checkpoint' in error_line(failed)
    folder = run_dir(out)
    (first_log,) = logs(folder)
    first_text = read(first_log)
    assert sorted(os.listdir(folder)) == sorted(['config.yaml', os.path.basename(first_log)])

    torch.save(tiny_weights(data_root), str(weights))
    again = run(command)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert read(first_log) == first_text  # the failed start's log is kept as it was
    second_log = [p for p in logs(folder) if p != first_log]
    assert len(second_log) == 1
    lines = [line for line in read(second_log[0]).splitlines() if 'taking over' in line]
    assert len(lines) == 1, read(second_log[0])
    assert f'taking over {folder}: it held no checkpoint and no results' in lines[0]
    assert os.path.basename(first_log) in lines[0]
    assert lines[0].endswith('keys changed since: none')
    assert os.path.isfile(os.path.join(folder, 'final_state.pth'))


def test_a_start_that_failed_in_its_first_epoch_is_taken_over_then_protected(tmp_path):
    data_root = make_data(tmp_path / 'data')
    with open(os.path.join(data_root, 'list', 'cityscapes', 'train.lst')) as f:
        third = os.path.join(data_root, 'cityscapes', f.read().splitlines()[2].split()[0])
    shutil.copy(third, str(tmp_path / 'good.png'))
    with open(third, 'r+b') as f:  # a PNG header that passes the checks, then nothing
        f.truncate(100)
    out = tmp_path / 'output'
    broken = run(train_command(data_root, out, 'TRAIN.LR', '0.1'))
    assert broken.returncode != 0
    folder = run_dir(out)
    (first_log,) = logs(folder)
    assert 'Epoch [1/1] Iter [0/2]' in read(first_log)  # it had trained a step
    assert 'Epoch [1/1] Iter [1/2]' not in read(first_log)
    assert not os.path.exists(os.path.join(folder, 'checkpoint.pth.tar'))

    shutil.copy(str(tmp_path / 'good.png'), third)
    fixed = run(train_command(data_root, out))
    assert fixed.returncode == 0, fixed.stdout[-3000:] + fixed.stderr[-3000:]
    assert 'keys changed since: TRAIN.LR 0.1 -> 0.2' in fixed.stdout
    assert os.path.isfile(os.path.join(folder, 'checkpoint.pth.tar'))

    # With a checkpoint the run is protected as any other.
    before = file_times(folder)
    other = run(train_command(data_root, out, 'TRAIN.LR', '0.1'))
    assert re.search(r'holds another run, .*\n    TRAIN\.LR: 0\.2 -> 0\.1\n', other.stderr)
    assert file_times(folder) == before


def test_ctrl_c_is_one_line_and_its_command_continues_the_run(data_root, tmp_path):
    out = tmp_path / 'output'
    command = train_command(data_root, out, 'TRAIN.END_EPOCH', '2', 'TRAIN.EVAL_INTERVAL', '1',
                            'TRAIN.BATCH_SIZE_PER_GPU', '1')  # 4 steps per epoch
    proc = subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if 'Epoch [2/2] Iter [0/4]' in line:  # one step into the second epoch
                proc.send_signal(signal.SIGINT)
                break
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill()
    assert proc.returncode == 130, stdout[-3000:] + stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    folder = run_dir(out)
    checkpoint_path = os.path.join(folder, 'checkpoint.pth.tar')
    found = re.fullmatch(r'training interrupted in epoch 2/2 after [1-3] of its 4 iterations; '
                         rf'last checkpoint: {re.escape(checkpoint_path)} \(1 epoch\(s\) done\); '
                         r'continue with: (.*)', lines[0])
    assert found, lines[0]
    assert shlex.split(found.group(1)) == command + ['AUTO_RESUME', 'True']
    assert 'Traceback' not in stdout + stderr
    checkpoint = torch.load(checkpoint_path, weights_only=True)  # intact
    assert (checkpoint['epoch'], checkpoint['iteration']) == (1, 4)

    before = file_times(folder)
    refused = run(command)
    assert 'unfinished run of this same configuration' in error_line(refused)
    assert file_times(folder) == before

    resumed = run(shlex.split(found.group(1)))
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    # The best mIoU in percent, as every other line gives it (0: none measured).
    best = checkpoint['best_mIoU']
    best = f'best mean mIoU {best * 100:.2f}' if best > 0 else 'no validation mIoU measured yet'
    assert f'resuming from {checkpoint_path}: 1 epoch(s) done, 4 steps, {best}\n' in resumed.stdout
    assert torch.load(checkpoint_path, weights_only=True)['epoch'] == 2
