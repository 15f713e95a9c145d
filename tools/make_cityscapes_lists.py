"""Write the Cityscapes list files of a data root.

    python tools/make_cityscapes_lists.py --root DIR

scans DIR/cityscapes/leftImg8bit/{train,val,test}/ (with the matching gtFine labelIds)
and writes DIR/list/cityscapes/{train,val,trainval,test}.lst. For the complete
Cityscapes these are the lists shipped in data/list/cityscapes/, byte for byte; the
tool serves other copies (a subset, more cities) under a root of their own.
"""
import argparse
import os

import _init_paths  # noqa: F401  (puts lib/ on sys.path)
from datasets.lists import LIST_DIR, make_cityscapes_lists
from utils.io import check_writable
from utils.launch import reporting_user_errors


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--root', required=True,
                        help='data root containing cityscapes/ (DATASET.ROOT)')
    args = parser.parse_args()
    check_writable(os.path.join(args.root, LIST_DIR), '--root')
    counts = make_cityscapes_lists(args.root)
    for name, count in counts.items():
        print(f'{args.root}/{LIST_DIR}/{name}.lst: {count} samples')


if __name__ == '__main__':
    reporting_user_errors(main)()  # a UserError: one 'error:' line, no traceback
