"""Train the anytime network (EE, RH, CA or ADP-C, as the config says).

    torchrun --nproc_per_node 4 tools/train_ee.py --cfg experiments/cityscapes/w48.yaml
    python -m torch.distributed.launch tools/train_ee.py --cfg experiments/cityscapes/w48.yaml
    python tools/train_ee.py --cfg experiments/synthetic/tiny_adpc.yaml TRAIN.END_EPOCH 2

Outputs go to OUTPUT_DIR/<dataset>/<cfg file stem>/; see docs/training.md.
"""
import _init_paths  # noqa: F401  (puts lib/ on sys.path)
from engine.train import train
from utils.launch import default_argument_parser, launch, parse_command_line


def main(argv=None):
    args = parse_command_line(default_argument_parser('Train an anytime segmentation network'),
                              argv)
    launch(train, args)


if __name__ == '__main__':
    main()
