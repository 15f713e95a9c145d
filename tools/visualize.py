"""Draw one PNG panel per image: input, ground truth, every exit's prediction, every
segment's mask, the confidence of exits 1-3 and each exit's errors.

    python tools/visualize.py --cfg <run dir>/config.yaml --num 4 --out panels/
    python tools/visualize.py --cfg experiments/cityscapes/w48_adpc.yaml \
        TEST.MODEL_FILE adpc.pth --images a_leftImg8bit.png b.png --out panels/

``--num N`` takes the first N images of DATASET.TEST_SET (with their labels); ``--images``
takes files (with their Cityscapes gtFine labelIds when they lie in the usual layout).
Without TEST.MODEL_FILE (or a run's config.yaml) the weights are random.
"""
import argparse

import _init_paths  # noqa: F401

import datasets
from datasets.spec import dataset_spec
from utils.io import check_writable
from utils.launch import parse_command_line, reporting_user_errors
from anytime.predict import add_model_arguments, model_from_args
from evaluation.panels import panels_of_dataset, panels_of_files


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--images', nargs='+', help='image files')
    source.add_argument('--num', type=int, help='first N images of DATASET.TEST_SET')
    parser.add_argument('--out', required=True, help='folder of the panels')
    add_model_arguments(parser)
    return parse_command_line(parser, argv)


def main(argv=None):
    args = parse_args(argv)
    check_writable(args.out, '--out')
    cfg, model = model_from_args(args)
    spec = dataset_spec(cfg)  # the classes and colours of the pictures
    if args.images:
        panels_of_files(model, args.images, args.out, cfg.TRAIN.IGNORE_LABEL, spec=spec)
    else:
        dataset = datasets.build_dataset(cfg, cfg.DATASET.TEST_SET, train=False)
        panels_of_dataset(model, dataset, args.out, args.num, cfg.TRAIN.IGNORE_LABEL,
                          spec=spec)


if __name__ == '__main__':
    reporting_user_errors(main)()  # a UserError: one 'error:' line, no traceback
