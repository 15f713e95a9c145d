"""Wall-clock benchmark of the execution modes of a confidence-masked model (MASK.EXECUTION).

For each segment after exits 1-3 and each mask density it times ``dense``, ``sparse`` and
``auto`` on the same inputs and masks, interleaving the modes so that a change of machine
load hits them alike, and reports the median after warm-up next to the FLOPs ratio of the
paper's accounting (ADP-C Sec. 4, spec Sec. 3). End to end it times the four-exit forward
of each mode and of RH (the same network and weights without masks), with the latency of
every exit, the figure an anytime user plans deadlines with.

Masks are thresholded smooth noise of chosen density (``SmoothNoiseMasks``), so that
random weights can be timed at the densities trained models produce. The times use the
process's TF32 flags (CUDNN.ALLOW_TF32, as every tool sets them) and, for each of
``dtypes``, float32 or autocast to a reduced precision, interleaved with the others; the
agreement between the modes is computed in full float32. The model runs as inference
sets it up (channels-last, ``models.layout``), RH included.
"""
import copy
import statistics
import time

import torch
import torch.nn as nn

from utils.runtime import full_float32, sync
from ..flops import FlopsCounter, anytime_flops, conv_multiply_adds
from ..hrnet import apply_transition
from ..model_anytime import NUM_EXITS, exit_input
from .noise_masks import SmoothNoiseMasks
from .tables import dtype_name

MODES = ('dense', 'sparse', 'auto')


def _stem(model, x):
    """Input branches of segment 1 (stem and layer1)."""
    y = model.relu(model.bn1(model.conv1(x)))
    return [model.layer1(model.relu(model.bn2(model.conv2(y))))]


def _segment_inputs(model, x):
    """Input branches and exit logits of segments 1, 2, 3 (dense, unmasked)."""
    branches = _stem(model, x)
    inputs = [(branches, model.exit1(exit_input(branches)))]
    for j in range(1, NUM_EXITS - 1):
        branches = apply_transition(getattr(model, f'transition{j}'), branches)
        branches = getattr(model, f'stage{j + 1}')(branches)
        inputs.append((branches, getattr(model, f'exit{j + 1}')(exit_input(branches))))
    return inputs


def segment_runner(model, j, inputs, masks, mode):
    """A function running segment j of ``model`` on ``inputs`` (branches, exit j's logits)
    with ``masks`` in ``mode``; it returns (output branches, aggregated exit logits)."""
    branches, logits = inputs

    def run():
        previous, model.execution = model.execution, mode
        try:
            out_branches, out, _ = model._run_segment(j, branches, logits,
                                                      model._runs_sparse(logits.device), masks)
        finally:
            model.execution = previous
        return out_branches, out
    return run


class _ConvCounter:
    """Multiply-adds of the convolutions that run, with the spec's mask-aware accounting."""

    def __init__(self, modules):
        self.total = 0
        self.handles = [m.register_forward_hook(self._hook) for m in modules
                        if isinstance(m, nn.Conv2d)]

    def _hook(self, module, inputs, output):
        self.total += conv_multiply_adds(module, output)

    def remove(self):
        for h in self.handles:
            h.remove()


def count_multiply_adds(fn, modules):
    """Run ``fn`` on the dense path and count its convolutions' multiply-adds."""
    counter = _ConvCounter(modules)
    try:
        fn()
    finally:
        counter.remove()
    return counter.total


def _segment_modules(model, j):
    return [m for top in model.parts()[j] for m in top.modules()]


def logit_size(shape):
    """(h, w) of the exits' logits for an input of ``shape`` (its last two entries are
    h, w): two stride-2, padding-1 convolutions."""
    return tuple(((s + 1) // 2 + 1) // 2 for s in shape[-2:])


def in_dtype(fn, device, dtype):
    """``fn`` run under autocast to ``dtype`` on ``device`` (as it is for float32)."""
    def run():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            return fn()
    return run


def interleaved_medians(fns, warmup, repeats, device):
    """Median seconds of each function, timed in turns (warm-up rounds not counted)."""
    times = {name: [] for name in fns}
    for round_ in range(warmup + repeats):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            if round_ >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def max_relative_difference(got, ref, mask=None):
    """max |got - ref| (where ``mask`` is 1) over the reference's scale (at least 1)."""
    diff = (got - ref).abs()
    if mask is not None:
        diff = diff * mask
    return diff.max().item() / max(1.0, ref.abs().max().item())


def benchmark_segments(model, x, densities, warmup=1, repeats=3, smoothness=16, log=print,
                       dtypes=(torch.float32,)):
    """Time segments 1-3 in every mode at every density, in each of ``dtypes``.

    Args:
        model (AnytimeHRNet): a masked model in eval mode.
        x (Tensor): 1 x 3 x H x W input.
        densities (list[float]): mask densities to time.
        warmup, repeats (int): rounds discarded, rounds timed (median).
        smoothness (int): correlation length of the masks, in pixels at 1/4 resolution.
        dtypes (sequence[torch.dtype]): float32 and/or autocast dtypes, timed interleaved.
    Returns:
        list[dict]: one row per (segment, density, dtype) with times, ratios and the
        agreement (float32) of sparse and auto with dense.
    """
    device = x.device
    rows = []
    with torch.no_grad():
        # Channels-last, as inference runs it (models.layout) and the sparse engine works.
        inputs = _segment_inputs(model, x.contiguous(memory_format=torch.channels_last))
        size = logit_size(x.shape)
        for j in range(1, NUM_EXITS):
            modules = _segment_modules(model, j)
            full = SmoothNoiseMasks(x.shape[0], size, 1.0).to(device)
            dense_flops = count_multiply_adds(
                segment_runner(model, j, inputs[j - 1], full, 'dense'), modules)
            for d in densities:
                masks = SmoothNoiseMasks(x.shape[0], size, d, smoothness, seed=j).to(device)
                fns = {mode: segment_runner(model, j, inputs[j - 1], masks, mode)
                       for mode in MODES}
                flops = count_multiply_adds(fns['dense'], modules)
                agreement = 0.0
                with full_float32():  # a check of the engine, not of TF32's rounding
                    ref_branches, ref = fns['dense']()
                    for mode in ('sparse', 'auto'):
                        got_branches, got = fns[mode]()
                        agreement = max([agreement, max_relative_difference(
                            got, ref, masks.at(ref.shape[-2:]))] + [
                            max_relative_difference(a, b)
                            for a, b in zip(got_branches, ref_branches)])
                times = interleaved_medians(
                    {(mode, dtype): in_dtype(fn, device, dtype)
                     for dtype in dtypes for mode, fn in fns.items()}, warmup, repeats, device)
                for dtype in dtypes:
                    row = {'segment': j, 'density': d, 'dtype': dtype_name(dtype),
                           'flops_ratio': flops / dense_flops,
                           'seconds': {mode: times[(mode, dtype)] for mode in MODES},
                           'max_rel_diff': agreement}
                    for mode in ('sparse', 'auto'):
                        ratio = row['seconds'][mode] / row['seconds']['dense']
                        row[f'{mode}_time_ratio'] = ratio
                        row[f'{mode}_efficiency'] = (ratio / row['flops_ratio']
                                                     if row['flops_ratio'] > 0 else None)
                    rows.append(row)
                    log(format_segment_row(row))
    return rows


def unmasked_copy(model):
    """RH: the same network and weights with plain convolutions (no masks)."""
    rh = copy.deepcopy(model)
    rh.use_masks = False  # masked convolutions with empty slots are plain convolutions
    return rh


def run_name(name, dtype):
    """A run of the end-to-end benchmark: 'auto' in float32, 'auto bfloat16' under
    autocast."""
    return name if dtype == torch.float32 else f'{name} {dtype_name(dtype)}'


def benchmark_end_to_end(model, x, densities, warmup=1, repeats=3, smoothness=16,
                         dtypes=(torch.float32,)):
    """Four-exit forward of every mode and of RH, in each of ``dtypes``, with per-exit
    latencies; all runs interleaved.

    Args:
        model (AnytimeHRNet): a masked model in eval mode.
        x (Tensor): 1 x 3 x H x W input.
        densities (list[float]): mask density of segments 1, 2, 3.
        dtypes (sequence[torch.dtype]): float32 and/or autocast dtypes.
    Returns:
        dict: per-exit latencies (medians) and total per run (:func:`run_name`), speed-ups
        against dense and RH of the same dtype, FLOPs ratio, agreement (float32), and
        ``best``: ADP-C ('auto') and RH each at its fastest dtype, and their ratio.
    """
    device = x.device
    masks = [SmoothNoiseMasks(x.shape[0], logit_size(x.shape), d, smoothness, seed=j).to(device)
             for j, d in enumerate(densities, start=1)]
    rh = unmasked_copy(model)
    runs = {}
    for dtype in dtypes:
        runs.update({run_name(mode, dtype): (model, masks, mode, dtype) for mode in MODES})
        runs[run_name('RH', dtype)] = (rh, None, 'dense', dtype)
    latencies = {name: [] for name in runs}
    with torch.no_grad():
        conv_modules = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        flops = count_multiply_adds(lambda: _forward(model, x, masks, 'dense'), conv_modules)
        dense_flops = count_multiply_adds(lambda: _forward(rh, x, None, 'dense'),
                                          [m for m in rh.modules() if isinstance(m, nn.Conv2d)])
        with full_float32():  # a check of the engine, not of TF32's rounding
            ref = _forward(model, x, masks, 'dense')[0]
            agreement = max(max_relative_difference(a, b)
                            for mode in ('sparse', 'auto')
                            for a, b in zip(_forward(model, x, masks, mode)[0], ref))
        for round_ in range(warmup + repeats):
            for name, (net, m, mode, dtype) in runs.items():
                _, stamps = in_dtype(lambda: _forward(net, x, m, mode), device, dtype)()
                if round_ >= warmup:
                    latencies[name].append(stamps)
    medians = {name: [statistics.median(s[k] for s in stamps) for k in range(NUM_EXITS)]
               for name, stamps in latencies.items()}
    seconds = {n: v[-1] for n, v in medians.items()}

    def relative_to(base):
        return {name: seconds[run_name(base, dtype)] / seconds[name]
                for name, (_, _, _, dtype) in runs.items()}

    adpc = min((run_name('auto', dtype) for dtype in dtypes), key=seconds.get)
    rh_best = min((run_name('RH', dtype) for dtype in dtypes), key=seconds.get)
    return {'densities': list(densities), 'dtypes': [dtype_name(d) for d in dtypes],
            'flops_ratio': flops / dense_flops, 'exit_latency_s': medians, 'seconds': seconds,
            'speedup_vs_dense': relative_to('dense'), 'speedup_vs_rh': relative_to('RH'),
            'best': {'adpc': adpc, 'rh': rh_best, 'speedup': seconds[rh_best] / seconds[adpc]},
            'max_rel_diff': agreement}


def benchmark_evaluation(model, x, densities, warmup=1, repeats=3, smoothness=16):
    """What counting FLOPs adds to an evaluation's forward (``MASK.EXECUTION`` as set).

    Times, interleaved: the forward alone; the forward with its masks returned and
    counted by ``FlopsCounter`` (what evaluation does); and, once, the forward followed
    by ``anytime_flops``'s second, dense pass with hooks (what evaluation did before).
    The counter's cost table is built once per input size, before the rounds; its time
    is reported on its own.

    Args:
        model (AnytimeHRNet): a masked model in eval mode.
        x (Tensor): N x 3 x H x W input.
        densities (list[float]): mask density of segments 1, 2, 3.
    Returns:
        dict: seconds of ``forward``, ``evaluation`` (medians), ``forward_and_hooks``
        (one round), ``cost_table`` (once), and ``overhead`` (evaluation / forward - 1).
    """
    masks = [SmoothNoiseMasks(x.shape[0], logit_size(x.shape), d, smoothness, seed=j).to(x.device)
             for j, d in enumerate(densities, start=1)]
    counter = FlopsCounter(model)
    start = time.perf_counter()
    counter.params(x.shape[-2:])  # builds the table of this input size
    table_s = time.perf_counter() - start

    def forward():
        model(x, masks=masks)

    def evaluation():
        _, used = model(x, masks=masks, return_masks=True)
        counter.gflops(x.shape, used)

    with torch.no_grad():
        medians = interleaved_medians({'forward': forward, 'evaluation': evaluation}, warmup,
                                      repeats, x.device)
        start = time.perf_counter()
        forward()
        for i in range(x.shape[0]):  # its pass runs dense, whatever the masks
            anytime_flops(model, x[i:i + 1])
        sync(x.device)
        hooks_s = time.perf_counter() - start
    forward_s, evaluation_s = medians['forward'], medians['evaluation']
    return {'forward': forward_s, 'evaluation': evaluation_s, 'forward_and_hooks': hooks_s,
            'cost_table': table_s, 'overhead': evaluation_s / forward_s - 1}


def _forward(model, x, masks, mode):
    """All exits of ``model`` in ``mode``, and the time at which each was ready."""
    previous, model.execution = model.execution, mode
    try:
        outputs, stamps = [], []
        sync(x.device)
        start = time.perf_counter()
        for out in model.iter_exits(x, masks):
            sync(x.device)
            stamps.append(time.perf_counter() - start)
            outputs.append(out)
    finally:
        model.execution = previous
    return outputs, stamps


def _efficiency(value):
    return '-' if value is None else f'{value:.2f}'


def format_segment_row(row):
    t = row['seconds']
    return (f"segment {row['segment']}  density {row['density']:5.2f}  {row['dtype']:8s}  "
            f"FLOPs {row['flops_ratio']:5.3f}  dense {t['dense']:7.3f}s  "
            f"sparse {t['sparse']:7.3f}s ({row['sparse_time_ratio']:5.3f}, "
            f"eff {_efficiency(row['sparse_efficiency'])})  auto {t['auto']:7.3f}s "
            f"({row['auto_time_ratio']:5.3f}, eff {_efficiency(row['auto_efficiency'])})  "
            f"diff {row['max_rel_diff']:.1e}")


def segment_table(rows):
    """Markdown table of ``benchmark_segments``' rows."""
    lines = ['| segment | density | dtype | FLOPs ratio | dense s | sparse s | sparse time ratio '
             '| sparse efficiency | auto s | auto time ratio | auto efficiency |',
             '|---|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        t = r['seconds']
        lines.append(f"| {r['segment']} | {r['density']:.2f} | {r['dtype']} | "
                     f"{r['flops_ratio']:.3f} | "
                     f"{t['dense']:.3f} | {t['sparse']:.3f} | {r['sparse_time_ratio']:.3f} | "
                     f"{_efficiency(r['sparse_efficiency'])} | {t['auto']:.3f} | "
                     f"{r['auto_time_ratio']:.3f} | {_efficiency(r['auto_efficiency'])} |")
    return '\n'.join(lines)


def end_to_end_table(result):
    """Markdown table of ``benchmark_end_to_end``'s per-exit latencies."""
    lines = ['| run | exit 1 s | exit 2 s | exit 3 s | exit 4 s | speed-up vs dense | '
             'speed-up vs RH (same dtype) |', '|---|---|---|---|---|---|---|']
    for name, lat in result['exit_latency_s'].items():
        lines.append(f"| {name} | " + ' | '.join(f'{v:.3f}' for v in lat) +
                     f" | {result['speedup_vs_dense'][name]:.2f} | "
                     f"{result['speedup_vs_rh'][name]:.2f} |")
    return '\n'.join(lines)


def best_line(result):
    """ADP-C and RH each at its best dtype, and how much faster ADP-C is."""
    best, seconds = result['best'], result['seconds']
    return (f"ADP-C at its best ({best['adpc']}): {seconds[best['adpc']]:.3f}s; RH at its best "
            f"({best['rh']}, channels-last): {seconds[best['rh']]:.3f}s; ADP-C is "
            f"{best['speedup']:.2f}x RH")
