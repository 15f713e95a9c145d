"""End to end on a small synthetic Cityscapes: 2-process gloo training through torchrun,
evaluation with tools/test_ee.py and tools/test.py, and resume after kill -9."""
import glob
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from datasets.synthetic import generate_synthetic_cityscapes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, 'experiments', 'synthetic', 'tiny_adpc.yaml')
# 24 training images, 2 per process on 2 processes: 6 iterations per epoch.
SMALL = ['TRAIN.END_EPOCH', '2', 'TRAIN.EVAL_INTERVAL', '1', 'TRAIN.BATCH_SIZE_PER_GPU', '2',
         'PRINT_FREQ', '1', 'AUTO_RESUME', 'True']
ENV = dict(os.environ, CUDA_VISIBLE_DEVICES='', OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
RUN_TIMEOUT = 300


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('synthetic'))
    generate_synthetic_cityscapes(root, num_train=24, num_val=4, num_test=2, height=64, width=128)
    return root


def train_command(data_root, output_dir):
    return [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node',
            '2', 'tools/train_ee.py', '--cfg', TINY, 'DATASET.ROOT', data_root,
            'OUTPUT_DIR', output_dir] + SMALL


def run(command):
    proc = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT)
    assert proc.returncode == 0, f'{command} failed:\n{proc.stdout[-5000:]}\n{proc.stderr[-5000:]}'
    return proc


def run_dir(output_dir):
    return os.path.join(output_dir, 'cityscapes', 'tiny_adpc')


@pytest.fixture(scope='module')
def reference_run(data_root, tmp_path_factory):
    output_dir = str(tmp_path_factory.mktemp('reference'))
    proc = run(train_command(data_root, output_dir))
    return run_dir(output_dir), proc.stdout + proc.stderr


def event_tags(folder):
    """Scalar tags of the TensorBoard event files in ``folder`` (TFRecord framing)."""
    from tensorboardX.proto.event_pb2 import Event
    tags = set()
    for path in glob.glob(os.path.join(folder, 'events.out.tfevents.*')):
        data, pos = open(path, 'rb').read(), 0
        while pos < len(data):
            (length,) = struct.unpack('<Q', data[pos:pos + 8])
            event = Event.FromString(data[pos + 12:pos + 12 + length])
            tags.update(value.tag for value in event.summary.value)
            pos += 12 + length + 4
    return tags


def read_result(path):
    with open(path) as f:
        return f.read()


def test_torchrun_training_writes_every_output(reference_run):
    out, log = reference_run
    for name in ('config.yaml', 'checkpoint.pth.tar', 'final_state.pth', 'best.pth',
                 'result.txt', 'test_stats.json'):
        assert os.path.isfile(os.path.join(out, name)), name

    checkpoint = torch.load(os.path.join(out, 'checkpoint.pth.tar'), weights_only=True)
    assert checkpoint['epoch'] == 2 and checkpoint['iteration'] == 12
    assert set(checkpoint) == {'epoch', 'iteration', 'best_mIoU', 'state_dict', 'optimizer'}
    final = torch.load(os.path.join(out, 'final_state.pth'), weights_only=True)
    assert 'loss.criterion.weight' in final
    best = torch.load(os.path.join(out, 'best.pth'), weights_only=True)
    assert set(best) == set(final)
    assert all(k.startswith('model.') for k in final if k != 'loss.criterion.weight')
    assert any(k.endswith('.Lambda') for k in final)  # the ADP-C variant was trained

    result = read_result(os.path.join(out, 'result.txt'))
    assert re.fullmatch(r'\d+\.\d\d(\t\d+\.\d\d){4}', result), result
    values = [float(v) for v in result.split('\t')]
    assert values[4] == pytest.approx(np.mean(values[:4]), abs=0.01)
    assert checkpoint['best_mIoU'] * 100 >= values[4] - 0.01  # the last epoch was validated

    with open(os.path.join(out, 'test_stats.json')) as f:
        stats = json.load(f)
    assert set(stats) == {'params', 'flops', 'Gflops', 'Gflops_mean', 'Mparams'}
    assert all(len(stats[k]) == 4 for k in ('params', 'flops', 'Gflops', 'Mparams'))
    # After 2 epochs exit 1 is confident nowhere (max probability < CONF_THRE), so every
    # later exit computes all pixels and costs more than the one before.
    assert all(a < b for a, b in zip(stats['Gflops'], stats['Gflops'][1:])), stats['Gflops']
    assert stats['Gflops'][0] > 0 and stats['params'] == sorted(set(stats['params']))
    assert stats['Gflops_mean'] == pytest.approx(np.mean(stats['Gflops']))

    logs = glob.glob(os.path.join(out, 'tiny_adpc_*_train.log'))
    assert len(logs) == 1
    text = read_result(logs[0])
    assert text.count('validation mIoU per exit') == 2
    assert '2 process(es) on cpu' in text
    assert 'mean over 4 images, each with its own masks' in text  # mask-aware FLOPs
    assert event_tags(out) >= {'train/loss', 'train/lr', 'valid/mIoU_mean'} | \
        {f'train/loss_exit{k}' for k in range(1, 5)} | {f'valid/mIoU_exit{k}' for k in range(1, 5)}


@pytest.mark.parametrize('tool', ['tools/test_ee.py', 'tools/test.py'])
def test_evaluating_final_state_reproduces_result(reference_run, data_root, tmp_path, tool):
    out, _ = reference_run
    proc = run([sys.executable, tool, '--cfg', TINY, 'DATASET.ROOT', data_root,
                'OUTPUT_DIR', str(tmp_path), 'TEST.MODEL_FILE', os.path.join(out, 'final_state.pth')])
    mine = run_dir(str(tmp_path))
    assert read_result(os.path.join(mine, 'result.txt')) == read_result(os.path.join(out, 'result.txt'))
    with open(os.path.join(mine, 'test_stats.json')) as f, \
            open(os.path.join(out, 'test_stats.json')) as g:
        mine_stats, run_stats = json.load(f), json.load(g)
    assert mine_stats.keys() == run_stats.keys()
    for key in run_stats:  # approx compares flat values or lists, not nested dicts
        assert mine_stats[key] == pytest.approx(run_stats[key]), key
    assert 'class IoU' in proc.stdout and 'GFLOPs per exit' in proc.stdout
    assert 'road' in proc.stdout  # per-class table names the classes


def read_stats(folder):
    with open(os.path.join(folder, 'test_stats.json')) as f:
        return json.load(f)


def test_exit_fine_tuning_counts_its_frozen_parameters(reference_run, data_root, tmp_path):
    """A TRAIN.EE_ONLY run ends with its backbone frozen; its test_stats.json still
    counts every parameter, as test_ee.py on its final_state.pth does."""
    reference, _ = reference_run
    command = train_command(data_root, str(tmp_path)) + [
        'TRAIN.EE_ONLY', 'True', 'TRAIN.END_EPOCH', '1', 'MODEL.LOAD_STAGE', '2',
        'MODEL.PRETRAINED', os.path.join(reference, 'final_state.pth')]
    run(command)
    out = run_dir(str(tmp_path))
    trained = read_stats(out)
    assert trained['params'] == read_stats(reference)['params']  # same network, all counted
    run([sys.executable, 'tools/test_ee.py', '--cfg', os.path.join(out, 'config.yaml')])
    evaluated = read_stats(out)
    assert evaluated['params'] == trained['params']
    assert evaluated['Gflops'] == pytest.approx(trained['Gflops'])


def test_legacy_launcher_on_a_run_config_writes_into_the_run(reference_run):
    out, _ = reference_run
    result = os.path.join(out, 'result.txt')
    expected, before = read_result(result), os.stat(result).st_mtime_ns
    proc = run([sys.executable, '-m', 'torch.distributed.launch', 'tools/test_ee.py',
                '--cfg', os.path.join(out, 'config.yaml')])
    assert os.stat(result).st_mtime_ns > before
    assert read_result(result) == expected
    assert glob.glob(os.path.join(out, 'config_*_test.log'))
    assert f'weights: {os.path.join(out, "final_state.pth")}' in proc.stdout


def file_times(folder):
    return {path: os.stat(path).st_mtime_ns
            for path in glob.glob(os.path.join(folder, '**'), recursive=True)}


def test_training_into_a_run_of_another_config_is_refused_and_writes_nothing(reference_run,
                                                                              data_root):
    out, _ = reference_run
    before = file_times(out)
    command = [sys.executable, 'tools/train_ee.py', '--cfg', TINY, 'DATASET.ROOT', data_root,
               'OUTPUT_DIR', os.path.dirname(os.path.dirname(out))] + SMALL
    other = subprocess.run(command + ['MASK.CONF_THRE', '0.55', 'EXIT.INTER_CHANNEL', '4'],
                           cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert other.returncode == 2, other.stderr
    assert re.search(r'MASK\.CONF_THRE: [\d.]+ -> 0\.55\n', other.stderr), other.stderr
    assert re.search(r'EXIT\.INTER_CHANNEL: \d+ -> 4\n', other.stderr)
    assert 'OUTPUT_DIR' in other.stderr
    same = subprocess.run(command + ['AUTO_RESUME', 'False'], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert same.returncode == 2 and 'finished run of this same configuration' in same.stderr
    assert 'Traceback' not in other.stderr + same.stderr
    assert file_times(out) == before  # not a file added, replaced or touched


def test_evaluation_with_overrides_writes_into_its_own_subdirectory(reference_run):
    out, _ = reference_run
    before = {name: os.stat(os.path.join(out, name)).st_mtime_ns
              for name in ('result.txt', 'test_stats.json', 'config.yaml')}
    proc = run([sys.executable, 'tools/test_ee.py', '--cfg', os.path.join(out, 'config.yaml'),
                'MASK.CONF_THRE', '1.0'])
    sub = os.path.join(out, 'eval', 'MASK.CONF_THRE=1.0')
    assert {name: os.stat(os.path.join(out, name)).st_mtime_ns for name in before} == before
    assert glob.glob(os.path.join(sub, 'config_*_test.log'))
    with open(os.path.join(sub, 'config.yaml')) as f:
        text = f.read()
    assert 'CONF_THRE: 1.0' in text and os.path.join(out, 'final_state.pth') in text
    with open(os.path.join(sub, 'test_stats.json')) as f, \
            open(os.path.join(out, 'test_stats.json')) as g:
        unmasked, masked = json.load(f), json.load(g)
    assert all(u >= m for u, m in zip(unmasked['Gflops'], masked['Gflops']))
    assert re.fullmatch(r'\d+\.\d\d(\t\d+\.\d\d){4}', read_result(os.path.join(sub, 'result.txt')))
    assert proc.stdout.count('mIoU (%)') == 1  # the results are printed once
    assert f'wrote result.txt and test_stats.json to {sub}' in proc.stdout


def process_tree(pid):
    """``pid`` and all its descendants (Linux /proc). torchrun starts its workers in
    sessions of their own, so killing torchrun's process group would not reach them."""
    children = {}
    for stat in glob.glob('/proc/[0-9]*/stat'):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(')', 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.split('/')[2]))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


def kill_tree(pid):
    """SIGKILL ``pid`` and its descendants, as a crash of the machine would."""
    for p in process_tree(pid):
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_for(predicate, proc, timeout=RUN_TIMEOUT):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        if proc is not None and proc.poll() is not None:
            return predicate()
        time.sleep(0.02)
    return False


def kill_in_second_epoch(command, out):
    """Start the 2-epoch training ``command`` and SIGKILL its process tree as soon as the
    log in ``out`` shows the second epoch's first iteration.

    Returns:
        list[int]: the pids of the processes it had started (data loader workers).
    """
    def in_second_epoch():
        logs = glob.glob(os.path.join(out, '*_train.log'))
        return bool(logs) and 'Epoch [2/2] Iter [1/' in read_result(logs[0])

    proc = subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        reached = wait_for(in_second_epoch, proc)
        workers = process_tree(proc.pid)[1:]
    finally:
        kill_tree(proc.pid)
        proc.wait()
    assert reached, 'the run never reached its second epoch'
    assert not os.path.exists(os.path.join(out, 'final_state.pth')), 'killed too late'
    return workers


def test_resume_after_kill_mid_epoch_ends_as_if_never_stopped(reference_run, data_root, tmp_path):
    reference, _ = reference_run
    command = train_command(data_root, str(tmp_path))
    out = run_dir(str(tmp_path))
    workers = kill_in_second_epoch(command, out)
    assert len(workers) >= 2
    assert wait_for(lambda: not any(os.path.exists(f'/proc/{p}') for p in workers), None, 30)
    checkpoint = torch.load(os.path.join(out, 'checkpoint.pth.tar'), weights_only=True)
    assert checkpoint['epoch'] == 1 and checkpoint['iteration'] == 6

    proc = run(command)
    logs = sorted(glob.glob(os.path.join(out, '*_train.log')))
    assert any('resuming from' in read_result(p) and '1 epoch(s) done' in read_result(p)
               for p in logs), proc.stdout[-3000:]

    resumed = torch.load(os.path.join(out, 'final_state.pth'), weights_only=True)
    uninterrupted = torch.load(os.path.join(reference, 'final_state.pth'), weights_only=True)
    assert resumed.keys() == uninterrupted.keys()
    for key in resumed:
        assert torch.allclose(resumed[key].float(), uninterrupted[key].float(), atol=1e-6), key
    assert read_result(os.path.join(out, 'result.txt')) == \
        read_result(os.path.join(reference, 'result.txt'))
    checkpoint = torch.load(os.path.join(out, 'checkpoint.pth.tar'), weights_only=True)
    assert checkpoint['epoch'] == 2 and checkpoint['iteration'] == 12
