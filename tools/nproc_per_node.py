"""Print how many training processes to start on this machine: one per visible GPU
(CUDA_VISIBLE_DEVICES counts), or --cpu N (2) when no GPU is visible.

    torchrun --nproc_per_node "$(python tools/nproc_per_node.py)" tools/train_ee.py --cfg ...
"""
import argparse

import _init_paths  # noqa: F401  (puts lib/ on sys.path)
from utils.launchers import processes_per_node


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--cpu', type=int, default=2,
                        help='processes when no GPU is visible (2)')
    print(processes_per_node(parser.parse_args(argv).cpu))


if __name__ == '__main__':
    main()
