"""Segment image files with an anytime network, optionally within a time budget.

    python tools/predict.py --cfg <run dir>/config.yaml --image a.png b.png --out pred/
    python tools/predict.py --cfg experiments/cityscapes/w48_adpc.yaml TEST.MODEL_FILE adpc.pth \
        --image frankfurt_000000_000294_leftImg8bit.png --budget-ms 1500 \
        --profile w48_profile.json --out pred/

For each image it writes ``<name>_color.png`` (the data set's palette, DATASET.PALETTE)
and ``<name>_labelIds.png`` (its raw label values: Cityscapes labelIds) and prints the exit reached and the time
taken. ``--budget-ms`` stops before a segment that the latency profile (measured on this
machine by tools/profile_latency.py, at the input size padded to a multiple of 32) says
will not fit.
"""
import argparse

import _init_paths  # noqa: F401
import torch

from datasets.spec import dataset_spec
from utils.io import check_writable
from utils.launch import parse_command_line, reporting_user_errors
from anytime.predict import add_model_arguments, model_from_args, predict_files


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--image', nargs='+', required=True, help='image files')
    parser.add_argument('--out', required=True, help='folder of the PNGs')
    parser.add_argument('--budget-ms', type=float, help='time budget per image')
    parser.add_argument('--profile', help='latency profile (tools/profile_latency.py)')
    add_model_arguments(parser)
    return parse_command_line(parser, argv)


def main(argv=None):
    args = parse_args(argv)
    check_writable(args.out, '--out')
    cfg, model = model_from_args(args)
    predict_files(model, args.image, args.out, torch.device(args.device), args.budget_ms,
                  args.profile, spec=dataset_spec(cfg))


if __name__ == '__main__':
    reporting_user_errors(main)()  # a UserError: one 'error:' line, no traceback
