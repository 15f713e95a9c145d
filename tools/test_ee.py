"""Evaluate an anytime network: per-exit mIoU, per-class IoU, GFLOPs and parameters.

    python tools/test_ee.py --cfg experiments/cityscapes/w48.yaml TEST.MODEL_FILE <ckpt>.pth
    python tools/test_ee.py --cfg <run output dir>/config.yaml
    torchrun --nproc_per_node 4 tools/test_ee.py --cfg ... TEST.MODEL_FILE <ckpt>.pth
    python tools/test_ee.py --cfg ... TEST.MODEL_FILE <ckpt>.pth \\
        DATASET.TEST_SET list/cityscapes/test.lst --submit DIR [--exit K]

Writes result.txt (per-exit mIoU x 100 and their mean) and test_stats.json into the
run's directory (for a run's config.yaml) or OUTPUT_DIR/<dataset>/<cfg file stem>/.
``--submit DIR`` also writes the predictions as labelId PNGs for the Cityscapes server,
one folder per exit (``--exit K``: exit K only); a list without labels gets predictions
only. TEST.FLIP_TEST, TEST.MULTI_SCALE and TEST.SCALE_LIST add flipped and rescaled
passes; inputs larger than TEST.IMAGE_SIZE run as sliding windows. ``--show-dir DIR``
also writes one PNG panel per image (see tools/visualize.py).
"""
from functools import partial

import _init_paths  # noqa: F401  (puts lib/ on sys.path)
from evaluation.run import run_evaluation
from utils.launch import default_argument_parser, launch, parse_command_line


def main(argv=None):
    parser = default_argument_parser('Evaluate an anytime segmentation network',
                                     cfg_help="experiment YAML file, or a training run's "
                                              'config.yaml')
    parser.add_argument('--submit', metavar='DIR',
                        help='also write labelId PNGs for the Cityscapes benchmark server '
                             'into DIR/exit<K>/ (the only output for a list without labels)')
    parser.add_argument('--exit', type=int, metavar='K',
                        help='with --submit: write exit K (1-4) only')
    parser.add_argument('--show-dir', metavar='DIR',
                        help='also write a panel of every image (input, ground truth, exits, '
                             'masks, confidence, errors) into DIR')
    args = parse_command_line(parser, argv)
    if args.exit is not None and args.submit is None:
        parser.error('--exit K selects the exit that --submit writes; add --submit DIR')
    launch(partial(run_evaluation, submit_dir=args.submit, submit_exit=args.exit,
                   show_dir=args.show_dir), args)


if __name__ == '__main__':
    main()
