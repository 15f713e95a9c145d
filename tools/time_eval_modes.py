"""Time every evaluation mode against plain evaluation on generated images.

    python tools/time_eval_modes.py --cfg experiments/synthetic/tiny_adpc.yaml \
        --images 8 --height 64 --width 128
    python tools/time_eval_modes.py --cfg experiments/synthetic/tiny_adpc.yaml \
        --images 3 --height 1024 --width 2048 --modes 'submit, 1 thread' 'submit, 4 threads'
    python tools/time_eval_modes.py --cfg experiments/synthetic/tiny_adpc.yaml \
        TEST.MODEL_FILE final_state.pth --images 50 --height 1024 --width 2048 \
        --modes plain 'submit, 1 thread' 'submit, 4 threads'
    python tools/time_eval_modes.py --writer --images 50 --height 1024 --width 2048

Generates a synthetic Cityscapes val set of the given size in a temporary folder, builds
the model of the config with random weights (or TEST.MODEL_FILE), evaluates it once per
mode (plain first) and prints time and GFLOPs relative to plain evaluation. With
``--writer``, times only the PNG writing of --submit (four exits per image) on scene-like
prediction maps, in the evaluating thread and on 4 threads.
"""
import argparse
import tempfile

import _init_paths  # noqa: F401  (puts lib/ on sys.path)
import torch

from config import config, update_config
from evaluation.cost import MODES, cost_table, scene_predictions, time_modes, time_writer
from datasets.synthetic import generate_synthetic_cityscapes
from models import get_seg_model
from utils.checkpoint import load_model_weights
from utils.distributed import DistContext
from utils.logger import setup_logger
from utils.launch import add_overrides_argument, parse_command_line, reporting_user_errors
from utils.runtime import apply_cudnn, tf32_flags


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--cfg', help='experiment YAML file (not needed with --writer)')
    parser.add_argument('--writer', action='store_true',
                        help='time only the PNG writer of --submit')
    parser.add_argument('--images', type=int, default=8, help='val images (8)')
    parser.add_argument('--height', type=int, default=64, help='image height (64)')
    parser.add_argument('--width', type=int, default=128, help='image width (128)')
    parser.add_argument('--modes', nargs='+', default=list(MODES), choices=list(MODES),
                        help='modes to time (all); plain is always timed')
    parser.add_argument('--threads', type=int, default=0,
                        help='torch threads (0: PyTorch default)')
    add_overrides_argument(parser)
    args = parse_command_line(parser)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.writer:
        maps = scene_predictions(args.images, args.height, args.width)
        print(f'PNG writing of {args.images} images of {args.height}x{args.width}, 4 exits each')
        for threads in (0, 4):
            seconds = time_writer(maps, threads)
            print(f'{threads} writer threads: {seconds:.2f} s of the evaluating thread, '
                  f'{1000 * seconds / args.images:.0f} ms per image')
        return
    if not args.cfg:
        parser.error('--cfg is required (except with --writer)')
    with tempfile.TemporaryDirectory() as root:
        generate_synthetic_cityscapes(root, num_train=0, num_val=args.images, num_test=0,
                                      height=args.height, width=args.width, progress=True)
        args.opts += ['DATASET.ROOT', root,
                      'TEST.IMAGE_SIZE', f'[{args.width}, {args.height}]',
                      'TEST.BASE_SIZE', str(max(args.width, args.height))]
        cfg = update_config(config.clone(), args)
        apply_cudnn(cfg)
        setup_logger(root, 'time_eval_modes', 'test', True)
        model = get_seg_model(cfg, pretrained=False)  # timed with the file's or random weights
        if cfg.TEST.MODEL_FILE:
            load_model_weights(model, cfg.TEST.MODEL_FILE)
        rows = time_modes(model, cfg, DistContext(), args.modes)
    print(f'{args.images} images of {args.height}x{args.width}, {args.cfg}, '
          f'{torch.get_num_threads()} threads, TF32 {tf32_flags()}')
    print(cost_table(rows))


if __name__ == '__main__':
    reporting_user_errors(main)()  # a UserError: one 'error:' line, no traceback
