"""A whole TRAIN.AMP run through the tools, as a user starts it.

``train``: tools/make_synthetic_cityscapes.py writes a small synthetic Cityscapes; a run
of experiments/synthetic/tiny_adpc.yaml with TRAIN.AMP and TEST.AMP trains one epoch
under ``torchrun --nproc_per_node 1`` and ends; the same command with an extra epoch on
DATASET.EXTRA_TRAIN_SET (the one change a finished run accepts with AUTO_RESUME, see
utils/run_dir.py) resumes it from its checkpoint, with the gradient scaler's state on
CUDA. One process forms no process group (utils.distributed): NCCL needs two GPUs, as two
ranks cannot share one GPU under NCCL.

``evaluate``: tools/test_ee.py evaluates the resumed run from its config.yaml.

A failing command fails the check with the last lines of its log.
"""
import os
import sys
import tempfile
import time

import torch

from .prepare import ROOT, CheckFailed
from .processes import read_result, run_logged, tail

TINY_ADPC = os.path.join(ROOT, 'experiments', 'synthetic', 'tiny_adpc.yaml')
TRAIN_CHECK = 'train_amp_resume'  # the check whose run ``check_evaluate`` evaluates
MARGIN_S = 3  # of a check's time limit, kept to report a command that ran out of it


def _run(setup, step, command):
    """Run one command of the check; its output goes to ``<out>/<check>.<step>.log``."""
    log = os.path.join(setup.out, f'{setup.name}.{step}.log')
    left = setup.deadline - time.time() - MARGIN_S if setup.deadline else 600
    print(f'{step}: {" ".join(command)}\n  output in {log}', flush=True)
    status, seconds = run_logged(command, log, left, cwd=ROOT)
    if status != 0:
        what = f'ran out of time ({seconds:.0f} s)' if status is None else f'exit status {status}'
        raise CheckFailed(f'{step}: {what}; last lines of {log}:\n{tail(log)}',
                          {'failed_command': ' '.join(command), 'log': log})
    with open(log, errors='replace') as f:
        return f.read()


def _checkpoint(run_dir):
    return torch.load(os.path.join(run_dir, 'checkpoint.pth.tar'), map_location='cpu',
                      weights_only=True)


def check_train(setup):
    """One epoch of TRAIN.AMP through torchrun, ended, resumed for an extra epoch."""
    work = tempfile.mkdtemp(prefix=f'{setup.name}-', dir=setup.out)
    data, runs = os.path.join(work, 'data'), os.path.join(work, 'runs')
    run_dir = os.path.join(runs, 'cityscapes', 'tiny_adpc')
    _run(setup, 'data', [sys.executable, 'tools/make_synthetic_cityscapes.py', '--root', data,
                         '--height', '64', '--width', '128', '--train', '8', '--val', '2',
                         '--test', '1'])
    train = [sys.executable, '-m', 'torch.distributed.run', '--standalone',
             '--nproc_per_node', '1', 'tools/train_ee.py', '--cfg', TINY_ADPC,
             'DATASET.ROOT', data, 'OUTPUT_DIR', runs, 'TRAIN.BATCH_SIZE_PER_GPU', '4',
             'TRAIN.EVAL_INTERVAL', '1', 'TRAIN.AMP', 'True', 'TEST.AMP', 'True',
             'AUTO_RESUME', 'True', 'TRAIN.END_EPOCH', '1', 'PRINT_FREQ', '1']
    first = _run(setup, 'train', train)
    figures = {'run_dir': run_dir, 'epochs_first_run': _checkpoint(run_dir)['epoch']}
    where = f'process(es) on {setup.device.type}'
    if where not in first:
        raise CheckFailed(f"the run did not train on {setup.device.type} (its log lacks "
                          f"'{where}')", figures)
    resumed = _run(setup, 'resume', train + ['DATASET.EXTRA_TRAIN_SET', 'list/cityscapes/train.lst',
                                              'TRAIN.EXTRA_EPOCH', '1'])
    checkpoint = _checkpoint(run_dir)
    figures.update(epochs=checkpoint['epoch'], iterations=checkpoint['iteration'],
                   scaler=checkpoint.get('scaler'))
    final = torch.load(os.path.join(run_dir, 'final_state.pth'), map_location='cpu',
                       weights_only=True)
    faults = []
    if 'resuming from' not in resumed:
        faults.append("the second run did not resume (no 'resuming from' in its log)")
    if figures['epochs_first_run'] != 1 or checkpoint['epoch'] != 2:
        faults.append(f"epochs after each run {figures['epochs_first_run']}, "
                      f"{checkpoint['epoch']}; expected 1, 2")
    if (setup.device.type == 'cuda') != ('scaler' in checkpoint):
        faults.append('the checkpoint ' + ('lacks' if setup.device.type == 'cuda' else 'has')
                      + ' a gradient scaler state')
    if not all(torch.isfinite(v.float()).all() for v in final.values()):
        faults.append('final_state.pth holds non-finite weights')
    if faults:
        raise CheckFailed('; '.join(faults), figures)
    scale = '' if figures['scaler'] is None else f", scaler scale {figures['scaler']['scale']:g}"
    return (f"2 epochs ({checkpoint['iteration']} steps) after a resume{scale}"), figures


def check_evaluate(setup):
    """tools/test_ee.py on the resumed run of :func:`check_train`."""
    trained = read_result(setup.out, TRAIN_CHECK)
    if not trained or trained.get('status') != 'passed':
        raise CheckFailed(f'no run to evaluate: {TRAIN_CHECK} did not pass')
    run_dir = trained['figures']['run_dir']
    result = os.path.join(run_dir, 'result.txt')
    before = os.path.getmtime(result) if os.path.exists(result) else None
    _run(setup, 'test_ee', [sys.executable, 'tools/test_ee.py', '--cfg',
                            os.path.join(run_dir, 'config.yaml'), 'TEST.AMP', 'True'])
    if not os.path.exists(result) or os.path.getmtime(result) == before:
        raise CheckFailed(f'tools/test_ee.py did not write {result}')
    with open(result) as f:
        values = [float(v) for v in f.read().split()]
    figures = {'miou_per_exit': values[:-1], 'miou_mean': values[-1]}
    if len(values) != 5 or not all(0 <= v <= 100 for v in values):
        raise CheckFailed(f'{result} holds {values}: expected 4 exits and their mean, '
                          'each 0-100', figures)
    return f"mIoU per exit {' / '.join(f'{v:.1f}' for v in values[:-1])}", figures
