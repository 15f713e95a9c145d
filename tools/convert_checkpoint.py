"""Rewrite a trusted checkpoint once so that it loads with weights_only=True.

    python tools/convert_checkpoint.py old.pth.tar new.pth.tar --trust

The tools refuse checkpoints that hold Python objects beyond tensors, because loading
them could run code. This tool unpickles such a file fully, only with --trust, and
writes what a checkpoint of this project holds: the model's tensors, and the optimiser
state and counters (epoch, iteration, best_mIoU) of a resume checkpoint.
"""
import argparse
import logging

import _init_paths  # noqa: F401  (puts lib/ on sys.path)
from utils.checkpoint_conversion import convert_checkpoint
from utils.launch import reporting_user_errors


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', metavar='IN', help='the checkpoint to convert')
    parser.add_argument('dst', metavar='OUT', help='the new file (must not exist)')
    parser.add_argument('--trust', action='store_true',
                        help='unpickle IN fully, which runs any code it holds: only for '
                             'files whose source you trust')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    reporting_user_errors(convert_checkpoint)(args.src, args.dst, trust=args.trust)


if __name__ == '__main__':
    main()
