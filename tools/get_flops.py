"""Per-exit GFLOPs and parameters of an anytime model, with the paper's accounting.

    python tools/get_flops.py --cfg experiments/cityscapes/w48_rh.yaml [--shape 1024 2048]
    python tools/get_flops.py --cfg experiments/cityscapes/w48_adpc.yaml \
        --image frankfurt_000000_000294_leftImg8bit.png TEST.MODEL_FILE adpc.pth

A masked (MASK.USE) model's cost depends on the image: give --image (and trained
weights in TEST.MODEL_FILE) for its real cost; without an image the figures are the
unmasked upper bound.
"""
import argparse
import json
import logging

import _init_paths  # noqa: F401
import cv2
import torch

from config import config, update_config
from datasets.transforms import normalize
from models.model_anytime import build_model
from utils.checkpoint import load_model_weights
from models.flops import anytime_flops, flops_table, with_mean


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--cfg', required=True, help='experiment YAML')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input size; default TEST.IMAGE_SIZE (given there as [w, h])')
    parser.add_argument('--image', help='image whose confidence masks to count (masked models)')
    parser.add_argument('--json', help='write {"gflops", "params", "gflops_mean"} here')
    parser.add_argument('opts', nargs=argparse.REMAINDER, help='KEY VALUE config overrides')
    return parser.parse_args()


def read_image(path):
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f'cannot read image {path}')
    return torch.from_numpy(normalize(image))[None]


def main():
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    args = parse_args()
    cfg = update_config(config, args)
    if args.image:
        x = read_image(args.image)
        model = build_model(cfg)
        if cfg.TEST.MODEL_FILE:
            load_model_weights(model, cfg.TEST.MODEL_FILE)
        elif cfg.MASK.USE:
            logging.warning('no TEST.MODEL_FILE: the masks come from random weights')
    else:
        h, w = args.shape or cfg.TEST.IMAGE_SIZE[::-1]
        if cfg.MASK.USE:
            print('MASK.USE is on but no --image was given: these are the unmasked upper bound')
        with torch.device('meta'):  # shapes only: no memory, no compute
            model = build_model(cfg)
        x = torch.empty(1, 3, h, w, device='meta')
    figures = with_mean(anytime_flops(model, x))
    print(f'input {tuple(x.shape[-2:])}, {args.cfg}')
    print(flops_table(figures))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(figures, f, indent=1)


if __name__ == '__main__':
    main()
