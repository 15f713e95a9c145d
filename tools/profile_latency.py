"""Measure a latency profile for AnytimePredictor, and check the predictor against it.

    python tools/profile_latency.py --cfg experiments/cityscapes/w48_adpc.yaml \
        --shape 512 1024 --threads 2 --out w48_profile.json
    python tools/profile_latency.py --cfg experiments/cityscapes/w48_adpc.yaml \
        --shape 512 1024 --threads 2 --profile w48_profile.json --evaluate

The profile times exit 1, each later segment at several mask densities (thresholded
smooth noise, so random weights can be profiled) and the final upsampling, for this
model, input shape, device, thread count and MASK.EXECUTION. ``--evaluate`` then runs the
predictor at ``--budgets`` budgets from half of exit 1's time to 1.3 x the full
network's (as planned at the slowest density set), under noise masks of each ``--eval-densities`` set, and prints the share of
calls that end later than budget + 10%, whether the exit reached ever decreases as the
budget grows, and whether an unlimited call equals the model's last output.
"""
import argparse
import json

import _init_paths  # noqa: F401
import torch

from utils.io import atomic_write_text, check_writable
from utils.launch import comma_floats, parse_command_line, reporting_user_errors
from anytime.predictor import AnytimePredictor, budget_grid, evaluate_predictor
from anytime.latency import DENSITIES, LatencyProfile, measure_profile, profile_table
from anytime.predict import add_model_arguments, model_from_args


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add_model_arguments(parser, cfg_help='experiment YAML (TEST.MODEL_FILE optional: speed '
                                         'does not depend on the weights)')
    parser.add_argument('--shape', type=int, nargs=2, default=(512, 1024), metavar=('H', 'W'))
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--densities', type=comma_floats, default=list(DENSITIES),
                        help='mask densities of the segment timings')
    parser.add_argument('--repeats', type=int, default=5, help='timed rounds per figure')
    parser.add_argument('--out', help='write the measured profile here (JSON)')
    parser.add_argument('--profile', help='use this profile instead of measuring one')
    parser.add_argument('--evaluate', action='store_true',
                        help='run the predictor over a range of budgets and check it')
    parser.add_argument('--budgets', type=int, default=24, help='number of budgets')
    parser.add_argument('--eval-densities', type=comma_floats, nargs='+',
                        default=[[0.8, 0.6, 0.35], [0.3, 0.2, 0.1], [1.0, 1.0, 1.0]],
                        help='mask densities of segments 1-3, one comma-separated set each')
    parser.add_argument('--json', help='write the evaluation here')
    args = parse_command_line(parser, argv)
    if not (args.out or args.profile):
        parser.error('give --out to write a profile, or --profile to use one')
    if any(len(s) != 3 for s in args.eval_densities):
        parser.error('--eval-densities: three densities per set (segments 1, 2, 3)')
    return args


def main(argv=None):
    args = parse_args(argv)
    for option in ('out', 'json'):
        if getattr(args, option):
            check_writable(getattr(args, option), f'--{option}', is_file=True)
    _, model = model_from_args(args)
    device = torch.device(args.device)
    shape = (args.batch, 3, *args.shape)
    print(f'torch {torch.__version__}, input {list(shape)}, MASK.EXECUTION {model.execution}')
    if args.profile:
        profile = LatencyProfile.load(args.profile)
        profile.check(model, torch.empty(shape, device=device))
    else:
        profile = measure_profile(model, shape, args.densities, args.repeats, config=args.cfg)
        profile.save(args.out)
        print(f'wrote {args.out}')
    print(profile_table(profile))
    if not args.evaluate:
        return
    sets = [tuple(s) for s in args.eval_densities]
    budgets = budget_grid(profile, args.budgets, sets)
    x = torch.randn(shape, device=device)

    def show(row):
        print(f"densities {row['densities']}  budget {row['budget_ms']:8.1f} ms  exit "
              f"{row['exit']}  took {row['elapsed_ms']:8.1f} ms{'  LATE' if row['late'] else ''}",
              flush=True)
    report = evaluate_predictor(AnytimePredictor(model, profile), x, budgets, sets,
                                progress=show)
    calls = len(report['calls'])
    print(f"{calls} calls ({len(budgets)} budgets from {budgets[0]:.0f} to {budgets[-1]:.0f} "
          f"ms x {len(sets)} density sets): {report['late_fraction'] * 100:.1f}% finished "
          f"later than budget + 10%; exit never decreases with the budget: "
          f"{all(report['monotonic'])} {report['monotonic']}; unlimited budget equals "
          f"model(x)[-1]: {all(report['full_equal'])} (max |diff| "
          f"{max(report['full_max_abs_diff']):.1e})")
    if args.json:
        atomic_write_text(args.json, json.dumps(
            {'args': vars(args), 'profile': args.profile or args.out, **report}, indent=1))


if __name__ == '__main__':
    reporting_user_errors(main)()  # a UserError: one 'error:' line, no traceback
