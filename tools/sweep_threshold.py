"""Accuracy versus cost of a confidence-masked model over thresholds of MASK.CRIT.

    python tools/sweep_threshold.py --cfg <run dir>/config.yaml --thresholds 0.9 0.99 0.998
    python tools/sweep_threshold.py --cfg experiments/cityscapes/w48_adpc.yaml \
        TEST.MODEL_FILE adpc.pth --thresholds 0.9 0.99 0.998 1.0 --compare <RH run dir>
    torchrun --nproc_per_node 4 tools/sweep_threshold.py --cfg ... --thresholds ...

Evaluates DATASET.TEST_SET once per threshold (exit 1 once per image, shared) and writes
sweep.csv, sweep.json and sweep.png (mIoU against GFLOPs per exit) into <run dir>/sweep/
(sweep_2/, ... when taken) or --out. The unmasked point (conf_thre 1.0, entropy_thre 0)
is always included. An unmasked model (EE, RH) gives its single point.
"""
import argparse
import functools

import _init_paths  # noqa: F401
from anytime.sweep import run_sweep
from utils.distributed import add_launcher_arguments
from utils.launch import add_overrides_argument, launch, parse_command_line


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--cfg', required=True, help="experiment YAML, or a run's config.yaml")
    add_launcher_arguments(parser)
    parser.add_argument('--thresholds', type=float, nargs='+', default=[0.9, 0.99, 0.998],
                        help='thresholds of the criterion')
    parser.add_argument('--criterion', choices=['conf_thre', 'entropy_thre'],
                        help='default: MASK.CRIT')
    parser.add_argument('--out', help='output folder (default <run dir>/sweep)')
    parser.add_argument('--compare', nargs='+', default=[],
                        help='folders with result.txt and test_stats.json to plot as references')
    parser.add_argument('--latency', action='store_true', help='also time each exit')
    add_overrides_argument(parser)
    args = parse_command_line(parser, argv)
    launch(functools.partial(run_sweep, thresholds=args.thresholds, criterion=args.criterion,
                             out_dir=args.out, compare=args.compare, latency=args.latency),
           args)


if __name__ == '__main__':
    main()
