"""Write the list files of a data set.

    python tools/make_lists.py ade20k --root data/
    python tools/make_lists.py custom --images data/mine/images --labels data/mine/labels

A named data set (cityscapes, ade20k, lip, pascal_ctx, cocostuff): scans ROOT in the data
set's standard layout (docs/datasets.md) and writes ROOT/list/NAME/ with one
'image<TAB>label' line per sample, as the experiments of experiments/NAME/ read them
(cityscapes: what tools/make_cityscapes_lists.py writes).

``custom``: pairs each image of an images folder with the label file of the same name in
a labels folder (``a.jpg`` with ``a.png``, subfolders alike), keeps ``--val`` of them for
validation, and writes ``OUT/train.lst`` and ``OUT/val.lst`` (OUT: ``--out``, default
``ROOT/list``) with paths relative to ROOT (DATASET.ROOT). An image without a label, or
a label without an image, is refused by name (docs/datasets.md).
"""
import argparse
import os

import _init_paths  # noqa: F401  (puts lib/ on sys.path)
from datasets.custom_lists import make_custom_lists
from datasets.layouts import LAYOUTS, make_lists
from utils.errors import DataError
from utils.launch import reporting_user_errors


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    layouts = parser.add_subparsers(dest='layout', required=True)
    for name in ['cityscapes', *LAYOUTS]:
        named = layouts.add_parser(name, help=f'{name} in its standard download layout')
        named.add_argument('--root', required=True, help='data root (DATASET.ROOT)')
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


def named_lists(name, root):
    """Write the lists of a named data set; print each list's sample count."""
    try:
        counts = make_lists(name, root)
    except FileNotFoundError as e:
        if e.errno is None:  # the folder is not in the layout: the message says where
            raise DataError(str(e)) from e
        raise DataError(f'{e.filename}: {e.strerror}') from e
    except OSError as e:  # e.g. an unwritable list folder
        raise DataError(f'{e.filename}: cannot write the lists ({e.strerror})') from e
    for path, count in counts.items():
        print(f'{root}/{path}: {count} samples')


def custom_lists(args):
    """Write the lists of an images and a labels folder; print the keys that read them."""
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


def main(argv=None):
    args = parse_args(argv)
    if args.layout == 'custom':
        custom_lists(args)
    else:
        named_lists(args.layout, args.root)


if __name__ == '__main__':
    reporting_user_errors(main)()  # a UserError: one 'error:' line, no traceback
