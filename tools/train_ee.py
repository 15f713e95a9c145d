"""Train the anytime network (EE, RH, CA or ADP-C, as the config says).

    torchrun --nproc_per_node 4 tools/train_ee.py --cfg experiments/cityscapes/w48.yaml
    python -m torch.distributed.launch tools/train_ee.py --cfg experiments/cityscapes/w48.yaml
    python tools/train_ee.py --cfg experiments/synthetic/tiny_adpc.yaml TRAIN.END_EPOCH 2

Outputs go to OUTPUT_DIR/<dataset>/<cfg file stem>/; see README.md.
"""
import argparse

import _init_paths  # noqa: F401  (puts lib/ on sys.path)
from config import config, update_config
from core.training import train
from utils.distributed import add_launcher_arguments, cleanup, init_distributed


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train an anytime segmentation network')
    parser.add_argument('--cfg', required=True, help='experiment YAML file')
    add_launcher_arguments(parser)
    parser.add_argument('opts', nargs=argparse.REMAINDER, default=[],
                        help='config overrides as KEY VALUE pairs, e.g. TRAIN.END_EPOCH 10')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    update_config(config, args)
    ctx = init_distributed(args.local_rank, config.GPUS)
    try:
        train(config, args.cfg, ctx)
    finally:
        cleanup()


if __name__ == '__main__':
    main()
