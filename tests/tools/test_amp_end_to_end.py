"""TRAIN.AMP / TEST.AMP end to end on the CPU (bf16): a tiny ADP-C trained 2 epochs,
killed in its second epoch, resumed, evaluated."""
import glob
import os
import sys

import pytest
import torch

from datasets.synthetic import generate_synthetic_cityscapes
from test_end_to_end import TINY, kill_in_second_epoch, read_result, run, run_dir

AMP = ['TRAIN.END_EPOCH', '2', 'TRAIN.EVAL_INTERVAL', '1', 'TRAIN.BATCH_SIZE_PER_GPU', '2',
       'PRINT_FREQ', '1', 'AUTO_RESUME', 'True', 'TRAIN.AMP', 'True', 'TEST.AMP', 'True']


@pytest.fixture(scope='module')
def amp_run(tmp_path_factory):
    """A 2-epoch TRAIN.AMP run killed in its second epoch and resumed."""
    root = str(tmp_path_factory.mktemp('synthetic_amp'))
    generate_synthetic_cityscapes(root, num_train=8, num_val=2, num_test=1, height=64,
                                  width=128)
    output_dir = str(tmp_path_factory.mktemp('amp'))
    command = [sys.executable, 'tools/train_ee.py', '--cfg', TINY, 'DATASET.ROOT', root,
               'OUTPUT_DIR', output_dir] + AMP
    out = run_dir(output_dir)
    kill_in_second_epoch(command, out)
    assert torch.load(os.path.join(out, 'checkpoint.pth.tar'), weights_only=True)['epoch'] == 1
    proc = run(command)
    return root, out, proc.stdout + proc.stderr


def test_amp_run_resumes_after_kill_and_evaluates(amp_run):
    root, out, _ = amp_run
    logs = ''.join(read_result(p) for p in glob.glob(os.path.join(out, '*_train.log')))
    assert 'resuming from' in logs and '1 epoch(s) done' in logs
    assert 'AMP: true' in logs  # the run config says how it trained
    checkpoint = torch.load(os.path.join(out, 'checkpoint.pth.tar'), weights_only=True)
    assert checkpoint['epoch'] == 2 and checkpoint['iteration'] == 8
    assert 'scaler' not in checkpoint  # bf16 trains without a gradient scaler
    final = torch.load(os.path.join(out, 'final_state.pth'), weights_only=True)
    assert all(torch.isfinite(v.float()).all() for v in final.values())
    for name in ('result.txt', 'test_stats.json'):
        assert os.path.isfile(os.path.join(out, name))

    run([sys.executable, 'tools/test_ee.py', '--cfg', os.path.join(out, 'config.yaml'),
         'TEST.AMP', 'True'])
    values = [float(v) for v in read_result(os.path.join(out, 'result.txt')).split('\t')]
    assert len(values) == 5 and all(0 <= v <= 100 for v in values)
