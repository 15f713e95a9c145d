"""Evaluate an anytime network: per-exit mIoU, per-class IoU, GFLOPs and parameters.

    python tools/test_ee.py --cfg experiments/cityscapes/w48.yaml TEST.MODEL_FILE <ckpt>.pth
    python tools/test_ee.py --cfg <run output dir>/config.yaml
    torchrun --nproc_per_node 4 tools/test_ee.py --cfg ... TEST.MODEL_FILE <ckpt>.pth

Writes result.txt (per-exit mIoU x 100 and their mean) and test_stats.json into the
run's directory (for a run's config.yaml) or OUTPUT_DIR/<dataset>/<cfg file stem>/.
"""
import argparse

import _init_paths  # noqa: F401  (puts lib/ on sys.path)
from config import config, update_config
from core.testing import run_evaluation
from utils.distributed import add_launcher_arguments, cleanup, init_distributed


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Evaluate an anytime segmentation network')
    parser.add_argument('--cfg', required=True,
                        help="experiment YAML file, or a training run's config.yaml")
    add_launcher_arguments(parser)
    parser.add_argument('opts', nargs=argparse.REMAINDER, default=[],
                        help='config overrides as KEY VALUE pairs, e.g. TEST.MODEL_FILE x.pth')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    update_config(config, args)
    ctx = init_distributed(args.local_rank, config.GPUS)
    try:
        run_evaluation(config, args.cfg, ctx)
    finally:
        cleanup()


if __name__ == '__main__':
    main()
