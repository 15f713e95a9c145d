"""Write the list files of a data set.

    python tools/make_lists.py custom --root DATA --images DATA/images --labels DATA/labels

``custom``: pairs each image of an images folder with the label file of the same name in
a labels folder (``a.jpg`` with ``a.png``, subfolders alike), keeps ``--val`` of them for
validation, and writes ``OUT/train.lst`` and ``OUT/val.lst`` (OUT: ``--out``, default
``ROOT/list``) with paths relative to ROOT (DATASET.ROOT). An image without a label, or
a label without an image, is refused by name. (Cityscapes: tools/make_cityscapes_lists.py.)
"""
import argparse
import os

import _init_paths  # noqa: F401  (puts lib/ on sys.path)
from datasets.custom_lists import make_custom_lists
from utils.launch import reporting_user_errors


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    layouts = parser.add_subparsers(dest='layout', required=True)
    custom = layouts.add_parser('custom', help='an images folder and a labels folder')
    custom.add_argument('--images', required=True, help='folder of the images')
    custom.add_argument('--labels', required=True,
                        help='folder of the label PNGs (one class value per pixel)')
    custom.add_argument('--root', help='data root (DATASET.ROOT) that the lists are '
                        'relative to; default: the folder holding --images and --labels')
    custom.add_argument('--out', help='folder of the list files; default ROOT/list')
    custom.add_argument('--val', type=float, default=0.1,
                        help='validation samples: a fraction below 1, or a number '
                        '(default 0.1; 0: no val.lst)')
    custom.add_argument('--seed', type=int, default=0, help='seed of the validation choice')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    root = args.root or os.path.commonpath([os.path.abspath(args.images),
                                            os.path.abspath(args.labels)])
    out = args.out or os.path.join(root, 'list')
    counts = make_custom_lists(root, args.images, args.labels, out, args.val, args.seed)
    for path, count in counts.items():
        print(f'{path}: {count} samples')
    print(f'DATASET.ROOT {root} DATASET.TRAIN_SET '
          f'{os.path.relpath(os.path.join(out, "train.lst"), root)}'
          + (f' DATASET.TEST_SET {os.path.relpath(os.path.join(out, "val.lst"), root)}'
             if len(counts) > 1 else ''))


if __name__ == '__main__':
    reporting_user_errors(main)()  # a UserError: one 'error:' line, no traceback
