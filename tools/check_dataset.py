"""Read a data set as training would and say whether it is usable.

    python tools/check_dataset.py --cfg experiments/custom/w18_adpc.yaml DATASET.ROOT data/mine

Reads every image and label of DATASET.TRAIN_SET and DATASET.TEST_SET and prints, in a
few lines, the samples and image sizes of each list, the class frequencies of the
training labels and the classes never seen. Exit status 0 when the data set is usable;
2 with one ``error:`` line per kind of problem (missing or undecodable files, colour
label images, label values that are neither a class nor TRAIN.IGNORE_LABEL, labels of
another size than their image), each naming a few of its files.
"""
import argparse
import sys

import _init_paths  # noqa: F401  (puts lib/ on sys.path)
import cv2
from config import config, update_config
from datasets.inspection import inspect_dataset
from utils.launch import EXIT_USER_ERROR, add_overrides_argument, parse_command_line, \
    reporting_user_errors


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--cfg', required=True, help='experiment YAML')
    add_overrides_argument(parser)
    args = parse_command_line(parser, argv)
    cfg = update_config(config.clone(), args)
    # A truncated file is one of the problems reported below, not OpenCV's own lines.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    found, spec = inspect_dataset(cfg)
    for line in found.lines:
        print(line)
    for line in found.warnings:
        print(f'warning: {line}')
    errors = found.errors(spec)
    for line in errors:
        print(f'error: {line}', file=sys.stderr)
    if errors:
        raise SystemExit(EXIT_USER_ERROR)
    print('the data set is usable')


if __name__ == '__main__':
    reporting_user_errors(main)()  # a UserError: one 'error:' line, no traceback
