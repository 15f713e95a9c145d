"""Check on one GPU what the CPU test suite cannot, and measure what the docs report.

    python tools/gpu_check.py [--out DIR] [--json PATH] [--quick] [--only NAME,...]
    python tools/gpu_check.py --device cpu --json out.json    # the same code, tiny, on the CPU

Every check runs in a process of its own under its own time limit, so that a failure or a
hang ends that check only; each keeps its full log in DIR (default: a new temporary
folder, printed). At the end a table gives each check's status (passed, failed or
skipped), main figure and seconds; --json writes them with all figures. The exit status
is 1 when a check failed.

Correctness (--quick runs these only; estimated 2 minutes on one GPU, not yet measured):
  reference_adpc, reference_ca  W48 ADP-C / CA at 512x1024, float32 on CUDA in 'dense',
                    'sparse' and 'auto' (TF32 off) against the same weights run dense on
                    the CPU with the same input and masks (float64 with fixed masks,
                    float32 with its own); CUDA's confidence masks against the CPU's;
  autocast_fp16, autocast_bf16  every mode under torch.autocast against float32: finite
                    (else 'overflow', with where), logits within 8 epsilons of the type,
                    top class and masks agreeing on >= 99% of the pixels;
  train_amp_resume  a TRAIN.AMP run of tools/train_ee.py under torchrun on synthetic
                    data: one epoch, ended, resumed for an extra epoch;
  evaluate_run      tools/test_ee.py on that run.
Speed (CUDA only):
  forward_speed     W48 ADP-C at 1024x2048 end to end in each mode, and RH;
  train_step_speed  W48 ADP-C training step (3 x 512x1024), TRAIN.AMP off and on, with
                    peak memory;
  evaluation_speed  forward + FLOPs counting at 1024x2048, TEST.AMP off and on;
  break_even        break-even densities of 'auto', printed for policy.BREAK_EVEN['cuda'].
Tolerances and their derivations: tools/gpu_checks/correctness.py.

The models keep activations in a trained network's range: He-normal weights with
BatchNorm statistics of synthetic scenes, briefly trained for the autocast checks
(tools/gpu_checks/prepare.py); every check reports its largest activation or logit.

With --device cpu every correctness check runs on a W48 shrunk to tiny_adpc.yaml's widths
at 64x128 (in seconds; the test suite runs it), the speed checks are skipped, and the
device side and the references are all the CPU: 'sparse' and 'auto' are still compared
with dense float64 and float32 runs. --inject-fault NAME (not listed in
--help) is for the tests only: it injects a fault of tools/gpu_checks/faults.py to show
that the checks catch it.
"""
import argparse
import dataclasses
import importlib
import json
import os
import signal
import sys
import tempfile
import time
import traceback

import _init_paths  # noqa: F401  (puts lib/ on sys.path)
import torch

from gpu_checks.processes import read_result, result_path, run_logged, tail
from utils.errors import UserError
from utils.io import atomic_write_text, check_writable
from utils.launch import reporting_user_errors
from utils.runtime import device_name

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEADLINE_ENV = 'GPU_CHECK_DEADLINE'
LOG_TAIL_LINES = 15
FIGURE_WIDTH = 100  # characters of a check's figure or message in the table
TOTAL_LIMIT_S = 360  # the sum of the checks' time limits: six minutes on one GPU


@dataclasses.dataclass(frozen=True)
class Check:
    """A check: its name, kind ('correctness' or 'speed': CUDA only), time limit (seconds,
    model builds included) and function (``module:function`` in gpu_checks, with args)."""
    name: str
    kind: str
    limit_s: int
    target: str
    args: tuple = ()


CHECKS = [
    Check('reference_adpc', 'correctness', 70, 'correctness:check_reference', ('w48_adpc',)),
    Check('reference_ca', 'correctness', 60, 'correctness:check_reference', ('w48_ca',)),
    Check('autocast_fp16', 'correctness', 35, 'correctness:check_autocast', ('float16',)),
    Check('autocast_bf16', 'correctness', 25, 'correctness:check_autocast', ('bfloat16',)),
    Check('train_amp_resume', 'correctness', 40, 'end_to_end:check_train'),
    Check('evaluate_run', 'correctness', 20, 'end_to_end:check_evaluate'),
    Check('forward_speed', 'speed', 35, 'speed:check_forward'),
    Check('train_step_speed', 'speed', 40, 'speed:check_train_step'),
    Check('evaluation_speed', 'speed', 20, 'speed:check_evaluation'),
    Check('break_even', 'speed', 15, 'speed:check_break_even'),
]
BY_NAME = {check.name: check for check in CHECKS}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='checks: ' + ', '.join(f'{c.name} ({c.limit_s} s)' for c in CHECKS))
    parser.add_argument('--device', default='cuda', choices=['cuda', 'cpu'],
                        help='device under test (cuda; cpu: tiny shapes, speed skipped)')
    parser.add_argument('--out', help='folder for logs, results and scratch files '
                                      '(default: a new temporary folder)')
    parser.add_argument('--json', metavar='PATH', help='write every check and its figures here')
    parser.add_argument('--quick', action='store_true', help='correctness checks only')
    parser.add_argument('--only', metavar='NAME,...', help='run these checks only')
    parser.add_argument('--run-check', help=argparse.SUPPRESS)  # one check, in this process
    parser.add_argument('--inject-fault', help=argparse.SUPPRESS)  # tests only
    return parser.parse_args(argv)


def run_check(args):
    """Run check ``args.run_check`` here and write its result file; exit status 0 if passed."""
    from gpu_checks import faults
    from gpu_checks.prepare import CheckFailed, setup_for

    # A time limit's SIGTERM unwinds the check, so that what it started is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    check = BY_NAME[args.run_check]
    deadline = float(os.environ.get(DEADLINE_ENV, 0)) or None
    setup = dataclasses.replace(setup_for(args.device, args.out, args.inject_fault),
                                name=check.name, deadline=deadline)
    print(f'{check.name}: torch {torch.__version__}, {device_name(setup.device)}', flush=True)
    faults.install(args.inject_fault)
    module, function = check.target.split(':')
    fn = getattr(importlib.import_module(f'gpu_checks.{module}'), function)
    try:
        summary, figures = fn(setup, *check.args)
        result = {'status': 'passed', 'message': summary, 'figures': figures}
    except CheckFailed as e:
        result = {'status': 'failed', 'message': str(e), 'figures': e.figures}
    except Exception as e:  # a bug or a crash: the traceback goes to the log
        traceback.print_exc()
        result = {'status': 'failed', 'message': f'{type(e).__name__}: {e}', 'figures': {}}
    print(f"{check.name}: {result['status'].upper()}: {result['message']}", flush=True)
    atomic_write_text(result_path(args.out, check.name),
                      json.dumps(result, indent=1, default=str) + '\n')
    return 0 if result['status'] == 'passed' else 1


def run_isolated(check, args):
    """Run ``check`` in a process of its own under its time limit; its result as a dict."""
    log = os.path.join(args.out, f'{check.name}.log')
    if os.path.exists(result_path(args.out, check.name)):
        os.remove(result_path(args.out, check.name))  # an earlier run's, in the same --out
    env = dict(os.environ, PYTHONUNBUFFERED='1', **{DEADLINE_ENV: str(time.time() + check.limit_s)})
    if args.device == 'cpu':  # tiny shapes: one thread is fastest, and no GPU is touched
        env.update(CUDA_VISIBLE_DEVICES='', OMP_NUM_THREADS='1')
    command = [sys.executable, os.path.abspath(__file__), '--run-check', check.name,
               '--device', args.device, '--out', args.out]
    if args.inject_fault:
        command += ['--inject-fault', args.inject_fault]
    status, seconds = run_logged(command, log, check.limit_s, env=env, cwd=ROOT)
    result = read_result(args.out, check.name) or {'figures': {}}
    if status is None:
        result.update(status='failed', message=f'did not finish within its limit of '
                                               f'{check.limit_s} s')
    elif 'status' not in result:
        result.update(status='failed', message=f'ended with exit status {status} before '
                                               'reporting a result')
    entry = {'name': check.name, 'status': result['status'], 'figures': result['figures'],
             'seconds': round(seconds, 1), 'log': log, 'message': result['message']}
    if entry['status'] == 'failed':
        entry['log_tail'] = tail(log, LOG_TAIL_LINES)
    return entry


def skipped(check, reason):
    return {'name': check.name, 'status': 'skipped', 'figures': {}, 'seconds': 0.0,
            'log': None, 'message': reason}


def table(entries):
    """The final table: check, status, figure (or why it failed or was skipped), seconds."""
    width = max(len(e['name']) for e in entries)
    lines = [f"{'check':<{width}}  status   seconds  figure", '-' * (width + 60)]
    for e in entries:
        first = e['message'].splitlines()[0] if e['message'] else ''
        if len(first) > FIGURE_WIDTH:
            first = first[:FIGURE_WIDTH - 3] + '...'
        lines.append(f"{e['name']:<{width}}  {e['status']:<7}  {e['seconds']:7.1f}  {first}")
    return '\n'.join(lines)


def selected_checks(only):
    if not only:
        return CHECKS
    names = [n.strip() for n in only.split(',') if n.strip()]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise UserError(f"--only: no check named {', '.join(unknown)}; the checks are "
                        f"{', '.join(BY_NAME)}")
    return [check for check in CHECKS if check.name in names]


def main(argv=None):
    args = parse_args(argv)
    if args.run_check:
        return run_check(args)
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise UserError('--device cuda: no CUDA device is visible; run this on a GPU '
                        'machine, or check the CPU paths with --device cpu')
    checks = selected_checks(args.only)
    if args.out:
        check_writable(args.out, '--out')
    if args.json:
        check_writable(args.json, '--json', is_file=True)
    args.out = os.path.abspath(args.out or tempfile.mkdtemp(prefix='gpu_check-'))
    os.makedirs(args.out, exist_ok=True)
    print(f'gpu_check on {device_name(torch.device(args.device))}, torch {torch.__version__}; '
          f'logs and results in {args.out}', flush=True)
    entries = []
    for i, check in enumerate(checks, start=1):
        if check.kind == 'speed' and args.device != 'cuda':
            entry = skipped(check, 'timings are measured on CUDA only')
        elif check.kind == 'speed' and args.quick:
            entry = skipped(check, '--quick: correctness checks only')
        else:
            print(f'[{i}/{len(checks)}] {check.name} (limit {check.limit_s} s) ...', flush=True)
            entry = run_isolated(check, args)
        entries.append(entry)
        print(f"[{i}/{len(checks)}] {check.name}: {entry['status']} ({entry['seconds']:.1f} s)",
              flush=True)
    print('\n' + table(entries))
    for e in entries:
        if e['status'] == 'failed':
            print(f"\n{e['name']} FAILED: {e['message']}\n  log: {e['log']}; its last lines:\n"
                  + '\n'.join('    ' + line for line in e['log_tail'].splitlines()))
    if args.json:
        atomic_write_text(args.json, json.dumps(entries, indent=1, default=str) + '\n')
        print(f'\nresults: {args.json}')
    failed = [e['name'] for e in entries if e['status'] == 'failed']
    print(f"\n{len(failed)} failed: {', '.join(failed)}" if failed else '\nno check failed')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(reporting_user_errors(main)())
