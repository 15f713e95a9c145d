"""Per-exit GFLOPs and parameters of an anytime model, with the paper's accounting.

    python tools/get_flops.py --cfg experiments/cityscapes/w48_rh.yaml [--shape 1024 2048]
    python tools/get_flops.py --cfg experiments/cityscapes/w48_adpc.yaml \
        --image frankfurt_000000_000294_leftImg8bit.png TEST.MODEL_FILE adpc.pth

A masked (MASK.USE) model's cost depends on the image: give --image (and trained
weights: TEST.MODEL_FILE, or a training run's final_state.pth when --cfg is the run's
config.yaml, as tools/test_ee.py does) for its real cost; without an image the figures are
the unmasked upper bound.

Inputs are padded on the right and bottom to a multiple of the network's stride (32), as
in evaluation; the figures are those of the padded input, which is what runs.
"""
import argparse
import json
import logging
import os

import _init_paths  # noqa: F401
import torch

from config import config, update_config
from datasets.images import read_image
from datasets.loaders import STRIDE, pad_to, padded_size
from models.flops import anytime_flops, flops_table, with_mean
from models.model_anytime import build_model
from utils.checkpoint import load_model_weights
from utils.io import atomic_write_text, check_writable
from utils.launch import add_overrides_argument, parse_command_line, reporting_user_errors
from utils.run_dir import FINAL_STATE, RUN_CONFIG


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--cfg', required=True, help='experiment YAML')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input size; default TEST.IMAGE_SIZE (given there as [w, h])')
    parser.add_argument('--image', help='image whose confidence masks to count (masked models)')
    parser.add_argument('--json', help='write {"gflops", "params", "gflops_mean"} here')
    add_overrides_argument(parser)
    return parse_command_line(parser)


def model_file(cfg, cfg_path):
    """TEST.MODEL_FILE, else a training run's final_state.pth when ``cfg_path`` is its
    config.yaml, else None."""
    if cfg.TEST.MODEL_FILE:
        return cfg.TEST.MODEL_FILE
    if os.path.basename(cfg_path) == RUN_CONFIG:
        return os.path.join(os.path.dirname(os.path.abspath(cfg_path)), FINAL_STATE)
    return None


def main():
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    args = parse_args()
    cfg = update_config(config.clone(), args)
    if args.json:
        check_writable(args.json, '--json', is_file=True)
    if args.image:
        x = read_image(args.image)[0][None]
        model = build_model(cfg)
        weights = model_file(cfg, args.cfg)
        if weights:
            load_model_weights(model, weights)
            print(f'weights: {weights}')
        elif cfg.MASK.USE:
            logging.warning('no TEST.MODEL_FILE: the masks come from random weights')
    else:
        h, w = args.shape or cfg.TEST.IMAGE_SIZE[::-1]
        if cfg.MASK.USE:
            print('MASK.USE is on but no --image was given: these are the unmasked upper bound')
        with torch.device('meta'):  # shapes only: no memory, no compute
            model = build_model(cfg)
        x = torch.empty(1, 3, h, w, device='meta')
    size = tuple(x.shape[-2:])
    padded = padded_size(size)
    if padded != size:
        x = pad_to(x, padded, 0.0)
        print(f'input {size} padded to {padded} (right and bottom, to a multiple of the '
              f"network's stride {STRIDE}, as in evaluation): these are the FLOPs of the "
              'padded input, which is what runs')
    figures = with_mean(anytime_flops(model, x))
    print(f'input {tuple(x.shape[-2:])}, {args.cfg}')
    print(flops_table(figures))
    if args.json:
        atomic_write_text(args.json, json.dumps(figures, indent=1))


if __name__ == '__main__':
    reporting_user_errors(main)()  # a UserError: one 'error:' line, no traceback
