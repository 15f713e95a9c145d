"""Measure the break-even densities of 'auto' (MASK.EXECUTION) on the current device.

For representative masked layers (HRNet-W48 shapes at 512x1024 input) it times the
engine's sparse and dense layer at mask densities chosen by bisection and finds the
density at which sparse stops being faster, in float32 and, where the device computes
it natively, in the autocast dtype (bfloat16 on a CPU with bfloat16 units, float16 on
CUDA). The tables go into the user's cache (``models.sparse.tables``), keyed by device,
torch version, dtype and threads, where 'auto' finds them:

    python tools/calibrate.py [--device cuda] [--threads N] [KEY VALUE ...]

The layers run with the CUDNN keys of the defaults and the ``KEY VALUE`` overrides (TF32
convolutions on CUDA unless ``CUDNN.ALLOW_TF32 False``), as training and evaluation do;
the first line printed says which. It takes tens of seconds on a 2-core CPU in float32
(the wide 1x1 layer dominates), seconds on a GPU.
"""
import argparse
import time
from functools import partial

import torch
import torch.nn as nn

from config import default_config, merge_opts
from utils.launch import add_overrides_argument, parse_command_line
from utils.runtime import amp_dtype, apply_cudnn, device_name, reduced_precision_units, \
    tf32_flags
from ..masked_conv import MaskedConv2d, MaskSlot
from .benchmark import interleaved_medians
from .engine import SegmentEngine
from .kernels import channels_last
from .noise_masks import SmoothNoiseMasks
from .policy import ExecutionPolicy
from .tables import dtype_name, machine_key, store_table

# (kernel, C_in, C_out, h, w): 3x3 branch convs of W48 at 512x1024, and 1x1 head convs.
LAYERS = [(3, 48, 48, 128, 256), (3, 96, 96, 64, 128), (3, 192, 192, 32, 64),
          (3, 384, 384, 16, 32), (1, 720, 720, 128, 256), (1, 720, 128, 64, 128)]
DENSITIES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
# The output-channel limits of ``policy.BREAK_EVEN``'s keys, per kernel size (None: any).
CHANNEL_LIMITS = {3: (64, 128, 256, None), 1: (256, None)}


def break_even(kernel, c_in, c_out, h, w, densities=DENSITIES, repeats=3, device='cpu'):
    """Highest of ``densities`` at which the sparse layer is still faster than the dense
    one (0 for none), found by bisection: sparse pays off below a density and not above
    it, so about log2(len(densities)) of them are timed."""
    device = torch.device(device)
    conv = MaskedConv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False,
                        slot=MaskSlot()).to(device)
    bn = nn.BatchNorm2d(c_out).to(device).eval()
    x = channels_last(torch.randn(1, c_in, h, w, device=device))
    densities = sorted(densities)
    faster, slower = -1, len(densities)  # indices known faster / not faster
    with torch.no_grad():
        while slower - faster > 1:
            i = (faster + slower) // 2
            d = densities[i]
            masks = SmoothNoiseMasks(1, (h, w), d, smoothness=max(2, h // 8)).to(device)
            # One engine per density: a segment builds its geometry once for all its
            # layers, so the per-layer comparison leaves that cost out.
            engines = {'sparse': SegmentEngine(masks, ExecutionPolicy('sparse')),
                       'dense': SegmentEngine(masks, ExecutionPolicy('auto', {}))}
            t = interleaved_medians({mode: partial(engine.conv, conv, bn, x, relu=True)
                                     for mode, engine in engines.items()}, 1, repeats, device)
            if t['sparse'] < t['dense']:
                faster = i
            else:
                slower = i
            print(f'  k{kernel} {c_in}->{c_out} {h}x{w} density {d:.1f}: sparse '
                  f"{t['sparse'] * 1e3:.2f} ms, dense {t['dense'] * 1e3:.2f} ms")
    return densities[faster] if faster >= 0 else 0.0


def calibrate(device, dtype=torch.float32, layers=LAYERS):
    """Break-even table of ``device`` (torch.device) computing in ``dtype`` (under autocast
    unless float32), as 'auto' takes it (see :func:`policy_entry`)."""
    measured = []
    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        for layer in layers:
            measured.append((layer, break_even(*layer, device=device)))
            print(f'break-even of k{layer[0]} {layer[1]}->{layer[2]} at {layer[3]}x{layer[4]}'
                  f' in {dtype_name(dtype)}: {measured[-1][1]:.1f}')
    return policy_entry(measured)


def calibration_dtypes(device):
    """float32, and the autocast dtype where ``device`` computes it natively."""
    return [torch.float32] + ([amp_dtype(device)] if reduced_precision_units(device) else [])


def policy_key(kernel, c_out):
    """The ``policy.BREAK_EVEN`` key (kernel, channel limit) that a layer falls under."""
    return next((kernel, limit) for limit in CHANNEL_LIMITS[kernel]
                if limit is None or c_out <= limit)


def policy_entry(measured, step=DENSITIES[1] - DENSITIES[0]):
    """``policy.BREAK_EVEN``'s entry for a device from measured break-even densities.

    Args:
        measured (list): ((kernel, c_in, c_out, h, w), highest density at which the
            sparse layer was faster, 0 for none) per layer.
        step (float): spacing of the measured densities.
    Returns:
        dict: key -> density halfway to the next measured one (the lowest of the layers
        under one key), ordered so that the first matching key is the narrowest.
    """
    entry = {}
    for (kernel, _, c_out, _, _), best in measured:
        key = policy_key(kernel, c_out)
        entry[key] = min(entry.get(key, 1.0), round(best + step / 2, 3))
    order = {key: i for i, key in enumerate((k, limit) for k, limits in CHANNEL_LIMITS.items()
                                            for limit in limits)}
    return dict(sorted(entry.items(), key=lambda item: order[item[0]]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cpu', help="'cpu' or 'cuda'")
    parser.add_argument('--threads', type=int, help='torch CPU threads')
    add_overrides_argument(parser)
    args = parse_command_line(parser, argv)
    cfg = default_config()
    merge_opts(cfg, args.opts)  # the CUDNN keys, e.g. CUDNN.ALLOW_TF32 False
    apply_cudnn(cfg)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f'torch {torch.__version__}, {device_name(device)}, {torch.get_num_threads()} '
          f'threads, TF32 {tf32_flags()}, reduced precision units: '
          f'{reduced_precision_units(device) or "none (only float32 is measured)"}')
    for dtype in calibration_dtypes(device):
        start = time.perf_counter()
        table = calibrate(device, dtype)
        seconds = time.perf_counter() - start
        key = machine_key(device, dtype)
        path = store_table(key, table, seconds)
        print(f'{key}: {table} ({seconds:.0f} s)' +
              (f', cached in {path}' if path else ', not cached (see the warning)'))


if __name__ == '__main__':
    main()
