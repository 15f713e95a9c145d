"""Per-exit mIoU and GFLOPs of two evaluations of one model, side by side.

    python tools/compare_results.py output/cityscapes/tiny_adpc \
        output/cityscapes/tiny_adpc/eval/MASK.CONF_THRE=1.0 --names masked unmasked

Each directory holds the result.txt and test_stats.json of an evaluation (a training
run's directory, or one that tools/test_ee.py wrote).
"""
import argparse

import _init_paths  # noqa: F401  (puts lib/ on sys.path)
from utils.results import comparison_table, read_results
from utils.launch import reporting_user_errors


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('first', help='directory of the first evaluation')
    parser.add_argument('second', help='directory of the second evaluation')
    parser.add_argument('--names', nargs=2, default=('first', 'second'),
                        metavar=('FIRST', 'SECOND'), help='column labels')
    args = parser.parse_args(argv)
    print(comparison_table(read_results(args.first), read_results(args.second), args.names))


if __name__ == '__main__':
    reporting_user_errors(main)()  # a UserError: one 'error:' line, no traceback
