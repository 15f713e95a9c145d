"""Write the list files of a data set from the layout of its unpacked downloads.

    python tools/make_lists.py --dataset ade20k --root data/

scans DIR in the data set's standard layout (docs/datasets.md) and writes
DIR/list/NAME/ with one 'image<TAB>label' line per sample, as the experiments of
experiments/NAME/ read them. --dataset cityscapes does what tools/make_cityscapes_lists.py
does.
"""
import argparse

import _init_paths  # noqa: F401  (puts lib/ on sys.path)
from datasets.layouts import LAYOUTS, make_lists
from utils.errors import DataError
from utils.launch import reporting_user_errors


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--dataset', required=True, choices=['cityscapes', *LAYOUTS],
                        help='the data set (DATASET.DATASET)')
    parser.add_argument('--root', required=True, help='data root (DATASET.ROOT)')
    args = parser.parse_args()
    try:
        counts = make_lists(args.dataset, args.root)
    except FileNotFoundError as e:
        if e.errno is None:  # the folder is not in the layout: the message says where
            raise DataError(str(e)) from e
        raise DataError(f'{e.filename}: {e.strerror}') from e
    except OSError as e:  # e.g. an unwritable list folder
        raise DataError(f'{e.filename}: cannot write the lists ({e.strerror})') from e
    for path, count in counts.items():
        print(f'{args.root}/{path}: {count} samples')


if __name__ == '__main__':
    reporting_user_errors(main)()  # a UserError: one 'error:' line, no traceback
