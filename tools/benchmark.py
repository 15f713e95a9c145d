"""Wall-clock benchmark of MASK.EXECUTION dense / sparse / auto, per segment and end to end.

    python tools/benchmark.py --cfg experiments/cityscapes/w48_adpc.yaml --shape 512 1024 \
        --densities 0.1,0.25,0.5 --threads 2 [--amp] --json benchmark.json

Masks are thresholded smooth noise of the given densities (random weights, or
TEST.MODEL_FILE); end to end, segments 1-3 get --e2e-densities (the paper's are about
0.8, 0.6, 0.35) and RH is the same network and weights without masks. Every model runs
channels-last, as inference sets it up.

With --amp (or TEST.AMP True) every figure is taken in float32 and under autocast
(bfloat16 on the CPU, float16 on CUDA), interleaved; the summary compares ADP-C ('auto')
and RH each at its faster precision. The first lines name what computes the reduced
precision natively (the CPU's bfloat16 units, or the GPU); the JSON records it.

The times are measured with the arithmetic every other tool uses (CUDNN.ALLOW_TF32,
recorded in the JSON beside the device); the agreement of sparse and auto with dense
is checked in full float32, so that TF32's rounding does not count as a disagreement.
"""
import argparse
import json
import logging
import os

import _init_paths  # noqa: F401
import torch

from config import config, update_config
from datasets.loaders import STRIDE, padded_size
from models.layout import to_inference
from models.masked_conv import MaskedConv2d
from models.model_anytime import build_model
from models.sparse.benchmark import benchmark_end_to_end, benchmark_evaluation, \
    benchmark_segments, best_line, dtype_name, end_to_end_table, segment_table
from utils.checkpoint import load_model_weights
from utils.io import atomic_write_text, check_writable
from utils.launch import add_overrides_argument, comma_floats, parse_command_line, \
    reporting_user_errors
from utils.runtime import amp_dtype, apply_cudnn, device_name, reduced_precision_units, \
    tf32_flags

TOLERANCE = 1e-4  # max |mode - dense| relative to the logits' scale


def set_rbf_lambda(model, value):
    """Every masked convolution's RBF Lambda set to ``value``."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, MaskedConv2d):
                module.Lambda.fill_(value)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--cfg', required=True, help='experiment YAML of a masked model')
    parser.add_argument('--shape', type=int, nargs=2, default=(512, 1024), metavar=('H', 'W'))
    parser.add_argument('--densities', type=comma_floats, default=[0.1, 0.25, 0.5],
                        help='mask densities of the per-segment measurements')
    parser.add_argument('--e2e-densities', type=comma_floats, default=[0.8, 0.6, 0.35],
                        help='mask densities of segments 1, 2, 3 end to end')
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--threads', type=int, help='torch CPU threads')
    parser.add_argument('--amp', action='store_true',
                        help='also time everything under autocast (as TEST.AMP True does)')
    parser.add_argument('--warmup', type=int, default=1, help='untimed rounds')
    parser.add_argument('--repeats', type=int, default=3, help='timed rounds (median)')
    parser.add_argument('--skip-segments', action='store_true', help='end to end only')
    parser.add_argument('--skip-end-to-end', action='store_true', help='segments only')
    parser.add_argument('--evaluation', action='store_true',
                        help="also time what counting the evaluation's FLOPs adds to its "
                             'forward (and the former second pass with hooks)')
    parser.add_argument('--rbf-lambda', type=float,
                        help="set every masked convolution's RBF Lambda (initial 3.0; the "
                             "fill reaches 1 pixel at 3.0, 3 pixels at 1.0 or less)")
    parser.add_argument('--json', help='write the figures here')
    add_overrides_argument(parser)
    return parse_command_line(parser)


def main():
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    args = parse_args()
    cfg = update_config(config.clone(), args)
    if args.json:
        check_writable(args.json, '--json', is_file=True)
    if not cfg.MASK.USE:
        raise SystemExit(f'{args.cfg}: MASK.USE is off; the execution modes only differ for '
                         f'masked models (add MASK.USE True)')
    if args.skip_segments and args.skip_end_to_end and not args.evaluation:
        raise SystemExit('--skip-segments and --skip-end-to-end without --evaluation leave '
                         'nothing to measure')
    if len(args.e2e_densities) != 3:
        raise SystemExit('--e2e-densities needs three values, one per segment')
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    apply_cudnn(cfg)
    model = build_model(cfg)
    if cfg.TEST.MODEL_FILE:
        load_model_weights(model, cfg.TEST.MODEL_FILE)
    if args.rbf_lambda is not None:
        set_rbf_lambda(model, args.rbf_lambda)
    model = to_inference(model, device)
    dtypes = [torch.float32] + ([amp_dtype(device)] if args.amp or cfg.TEST.AMP else [])
    shape = padded_size(args.shape)
    if shape != tuple(args.shape):
        print(f'input {tuple(args.shape)} padded to {shape} (right and bottom, to a multiple '
              f"of the network's stride {STRIDE}, as in evaluation): the figures are those of "
              'the padded input, which is what runs')
    x = torch.randn(1, 3, *shape, device=device)
    machine = {'torch': torch.__version__, 'threads': torch.get_num_threads(),
               'device': device_name(device) + ('' if device.type == 'cuda'
                                                else f', {os.cpu_count()} cores'),
               'shape': list(shape),
               'tf32': tf32_flags(),
               'reduced_precision_units': reduced_precision_units(device) or
               f'none: {dtype_name(amp_dtype(device))} emulated',
               'dtypes': [dtype_name(d) for d in dtypes], 'layout': 'channels-last',
               'cfg': args.cfg, 'opts': args.opts, 'rbf_lambda': args.rbf_lambda}
    print(f"torch {machine['torch']}, {machine['threads']} threads, {machine['device']}, "
          f"TF32 {machine['tf32']}, input {shape}, {args.cfg}")
    print(f"{dtype_name(amp_dtype(device))} units: {machine['reduced_precision_units']}; "
          f"timing {', '.join(machine['dtypes'])}, channels-last")
    result = {'machine': machine}
    if not args.skip_segments:
        rows = benchmark_segments(model, x, args.densities, args.warmup, args.repeats,
                                  dtypes=dtypes)
        print(segment_table(rows))
        result['segments'] = rows
    if not args.skip_end_to_end:
        e2e = benchmark_end_to_end(model, x, args.e2e_densities, args.warmup, args.repeats,
                                   dtypes=dtypes)
        print(f"end to end, densities {e2e['densities']}, FLOPs ratio "
              f"{e2e['flops_ratio']:.3f}, max relative difference {e2e['max_rel_diff']:.1e}")
        print(end_to_end_table(e2e))
        print(best_line(e2e))
        result['end_to_end'] = e2e
    if args.evaluation:
        ev = benchmark_evaluation(model, x, args.e2e_densities, args.warmup, args.repeats)
        print(f"evaluation (MASK.EXECUTION {model.execution}, densities {args.e2e_densities}): "
              f"forward {ev['forward']:.3f}s, forward + FLOPs from its masks "
              f"{ev['evaluation']:.3f}s ({ev['overhead'] * 100:+.1f}%); cost table once per "
              f"input size {ev['cost_table']:.3f}s; formerly forward + dense pass with hooks "
              f"{ev['forward_and_hooks']:.3f}s")
        result['evaluation'] = ev
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1))
    parts = result.get('segments', []) + [result[k] for k in ('end_to_end',) if k in result]
    if not parts:
        return
    worst = max(part['max_rel_diff'] for part in parts)
    if worst > TOLERANCE:
        raise SystemExit(f'outputs disagree with dense: max relative difference {worst:.1e} '
                         f'> {TOLERANCE}')
    print(f'outputs agree with dense: max relative difference {worst:.1e} <= {TOLERANCE}')


if __name__ == '__main__':
    reporting_user_errors(main)()  # a UserError: one 'error:' line, no traceback
