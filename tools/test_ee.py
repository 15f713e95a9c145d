"""Evaluate an anytime network: per-exit mIoU, per-class IoU, GFLOPs and parameters.

    python tools/test_ee.py --cfg experiments/cityscapes/w48.yaml TEST.MODEL_FILE <ckpt>.pth
    python tools/test_ee.py --cfg <run output dir>/config.yaml
    torchrun --nproc_per_node 4 tools/test_ee.py --cfg ... TEST.MODEL_FILE <ckpt>.pth

Writes result.txt (per-exit mIoU x 100 and their mean) and test_stats.json into the
run's directory (for a run's config.yaml) or OUTPUT_DIR/<dataset>/<cfg file stem>/.
"""
import _init_paths  # noqa: F401  (puts lib/ on sys.path)
from core.testing import run_evaluation
from utils.launch import default_argument_parser, launch


def main(argv=None):
    parser = default_argument_parser('Evaluate an anytime segmentation network',
                                     cfg_help="experiment YAML file, or a training run's "
                                              'config.yaml')
    launch(run_evaluation, parser.parse_args(argv))


if __name__ == '__main__':
    main()
