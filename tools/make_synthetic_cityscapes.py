"""Generate a small synthetic data set in the Cityscapes layout, with its list files.

    python tools/make_synthetic_cityscapes.py --root data/synthetic
    python tools/train_ee.py --cfg experiments/cityscapes/w18.yaml DATASET.ROOT data/synthetic ...
"""
import argparse

import _init_paths  # noqa: F401  (puts lib/ on sys.path)
from datasets.lists import LIST_DIR
from datasets.synthetic import generate_synthetic_cityscapes
from utils.io import check_writable
from utils.launch import reporting_user_errors


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--root', required=True, help='data root to create (DATASET.ROOT)')
    parser.add_argument('--train', type=int, default=24, help='training images (24)')
    parser.add_argument('--val', type=int, default=8, help='validation images (8)')
    parser.add_argument('--test', type=int, default=4, help='test images, unlabelled (4)')
    parser.add_argument('--height', type=int, default=256, help='image height (256)')
    parser.add_argument('--width', type=int, default=512, help='image width (512)')
    parser.add_argument('--seed', type=int, default=0, help='random seed (0)')
    args = parser.parse_args()
    check_writable(args.root, '--root')
    counts = generate_synthetic_cityscapes(
        args.root, num_train=args.train, num_val=args.val, num_test=args.test,
        height=args.height, width=args.width, seed=args.seed, progress=True)
    for name, count in counts.items():
        print(f'{args.root}/{LIST_DIR}/{name}.lst: {count} samples')


if __name__ == '__main__':
    reporting_user_errors(main)()  # a UserError: one 'error:' line, no traceback
