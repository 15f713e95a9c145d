"""The figures that the docs report from a GPU, measured with the library's own
benchmarks (``models.sparse.benchmark``, ``models.sparse.calibrate``):

- ``forward``: W48 ADP-C at 1024x2048 end to end in 'dense', 'sparse', 'auto' (masks at
  the paper's densities) and RH, the same network without masks (w48_rh.yaml's: the
  check verifies that the two have the same layers), with PyTorch's TF32 defaults as
  tools/benchmark.py (its agreement is checked in full float32);
- ``train_step``: a training step of W48 ADP-C (3 images of 512x1024, the paper's batch
  per GPU) with TRAIN.AMP off and on, and its peak memory;
- ``evaluation``: forward plus FLOPs counting at 1024x2048 with TEST.AMP off and on;
- ``break_even``: the densities below which sparse layers beat dense ones, ready to
  paste into ``policy.BREAK_EVEN``.

Training and evaluation run with the config's cuDNN settings and PyTorch's TF32
defaults, as the tools do. On the CPU these functions run on the tiny network (the test
suite calls them so); tools/gpu_check.py runs them on CUDA only.
"""
import math

import torch

from benchmark import TOLERANCE
from datasets.cityscapes import CITYSCAPES_CLASS_WEIGHTS
from engine.amp import MixedPrecision
from engine.criterion import FullModel, build_criterion
from models.model_anytime import build_model
from models.sparse.benchmark import benchmark_end_to_end, benchmark_evaluation, \
    end_to_end_table, interleaved_medians
from models.sparse.calibrate import DENSITIES, LAYERS, break_even, policy_entry
from utils.runtime import apply_cudnn, autocast, tf32_flags
from .prepare import PAPER_DENSITIES, CheckFailed, labelled_scenes, load_cfg, \
    realistic_model, scenes

TINY_LAYERS = [(3, 16, 16, 16, 32), (1, 64, 32, 16, 32)]  # calibration layers on the CPU


def _same_layers(a, b):
    """Do ``a`` and ``b`` have the same parameters, masked convolutions' own aside?"""
    sa, sb = a.state_dict(), b.state_dict()
    own = ('Lambda', 'square_dis')
    return all(k in sa and sa[k].shape == v.shape for k, v in sb.items()) and \
        all(k in sb or k.rsplit('.', 1)[-1] in own for k in sa)


def check_forward(setup):
    """End-to-end forward time of every mode and of RH."""
    model = realistic_model(load_cfg('w48_adpc', setup), setup)
    with torch.device('meta'):
        rh = build_model(load_cfg('w48_rh', setup))
    if not _same_layers(model, rh):
        raise CheckFailed("w48_rh.yaml's network is not W48 ADP-C's without masks: the RH "
                          'figure would not be its')
    x = scenes(1, setup.speed_shape).to(setup.device)
    result = benchmark_end_to_end(model, x, PAPER_DENSITIES, warmup=1, repeats=3)
    print(end_to_end_table(result))
    figures = {'shape': list(setup.speed_shape), 'tf32': tf32_flags(), **result}
    if not result['max_rel_diff'] <= TOLERANCE:
        raise CheckFailed(f"sparse/auto differ from dense by {result['max_rel_diff']:.1e} of "
                          f'the scale > {TOLERANCE} (tools/benchmark.py)', figures)
    s = result['seconds']
    return (f"{'x'.join(map(str, setup.speed_shape))}: dense {s['dense'] * 1e3:.0f} ms, sparse "
            f"{s['sparse'] * 1e3:.0f}, auto {s['auto'] * 1e3:.0f}, RH {s['RH'] * 1e3:.0f}"), figures


def _reset_peak_memory(device):
    if device.type == 'cuda':
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_memory_gib(device):
    """Peak memory allocated since the last reset, in GiB (None on the CPU)."""
    return torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == 'cuda' else None


def _time_training(cfg, device, x, y, amp):
    """Median step time (2 warm-up, 5 timed), peak memory and last loss of a fresh W48
    ADP-C trained on (x, y) with TRAIN.AMP ``amp``."""
    torch.manual_seed(0)
    full = FullModel(build_model(cfg), build_criterion(cfg, CITYSCAPES_CLASS_WEIGHTS))
    full = full.to(device).train()
    optimizer = torch.optim.SGD(full.parameters(), lr=0.01, momentum=0.9)
    precision = MixedPrecision(device, amp)
    state = {'skipped': 0}

    def step():
        with precision.autocast():
            total = full(x, y)[0]
        optimizer.zero_grad(set_to_none=True)
        state['skipped'] += not precision.backward_step(total, optimizer)
        state['loss'] = total.detach()

    _reset_peak_memory(device)
    seconds = interleaved_medians({'step': step}, 2, 5, device)['step']
    return {'step_s': seconds, 'peak_gib': _peak_memory_gib(device),
            'loss': state['loss'].item(), 'scaler_skipped_steps': state['skipped']}


def check_train_step(setup):
    """Step time and peak memory of W48 ADP-C training with TRAIN.AMP off and on."""
    device = setup.device
    cfg = load_cfg('w48_adpc', setup)
    apply_cudnn(cfg)
    x, y = (t.to(device) for t in labelled_scenes(setup.train_batch, setup.shape, seed=2000))
    figures = {'batch': setup.train_batch, 'shape': list(setup.shape),
               'cudnn_tf32': torch.backends.cudnn.allow_tf32}
    for amp in (False, True):
        figures['amp' if amp else 'float32'] = run = _time_training(cfg, device, x, y, amp)
        if not math.isfinite(run['loss']):
            raise CheckFailed(f"TRAIN.AMP {amp}: the loss is {run['loss']}", figures)
    figures['amp_speedup'] = figures['float32']['step_s'] / figures['amp']['step_s']
    peaks = [figures[k]['peak_gib'] for k in ('float32', 'amp')]
    memory = '' if peaks[0] is None else f', peak {peaks[0]:.1f} -> {peaks[1]:.1f} GiB'
    return (f"step {figures['float32']['step_s'] * 1e3:.0f} -> "
            f"{figures['amp']['step_s'] * 1e3:.0f} ms with TRAIN.AMP "
            f"(x{figures['amp_speedup']:.2f}){memory}"), figures


def check_evaluation(setup):
    """Forward and evaluation (forward + FLOPs of its masks) time, TEST.AMP off and on."""
    cfg = load_cfg('w48_adpc', setup)
    apply_cudnn(cfg)
    model = realistic_model(cfg, setup)
    x = scenes(1, setup.speed_shape).to(setup.device)
    figures = {'shape': list(setup.speed_shape), 'execution': model.execution,
               'cudnn_tf32': torch.backends.cudnn.allow_tf32}
    for amp in (False, True):
        with autocast(setup.device, amp):
            figures['amp' if amp else 'float32'] = benchmark_evaluation(
                model, x, PAPER_DENSITIES, warmup=1, repeats=3)
    figures['amp_speedup'] = figures['float32']['evaluation'] / figures['amp']['evaluation']
    return (f"evaluation {figures['float32']['evaluation'] * 1e3:.0f} -> "
            f"{figures['amp']['evaluation'] * 1e3:.0f} ms per image with TEST.AMP "
            f"(x{figures['amp_speedup']:.2f})"), figures


def check_break_even(setup):
    """Break-even densities of 'auto' on the device, as ``policy.BREAK_EVEN`` takes them."""
    layers = TINY_LAYERS if setup.tiny else LAYERS
    densities = DENSITIES[::4] if setup.tiny else DENSITIES
    measured = [(layer, break_even(*layer, densities=densities, device=setup.device))
                for layer in layers]
    entry = policy_entry(measured, step=densities[1] - densities[0])
    paste = f'BREAK_EVEN[{setup.device.type!r}] = {entry}'
    print(f'for lib/models/sparse/policy.py: {paste}')
    figures = {'break_even': {f'k{k} {ci}->{co} {h}x{w}': best
                              for (k, ci, co, h, w), best in measured},
               'policy_entry': {str(key): value for key, value in entry.items()},
               'paste': paste}
    return paste, figures
