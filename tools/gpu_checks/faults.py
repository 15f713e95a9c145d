"""Faults that tests inject (``tools/gpu_check.py --inject-fault NAME``, a hidden
option) to show that the checks catch them; nothing else uses them.

- ``sparse-gather-shift``: every convolution of the sparse engine gathers its input
  one pixel row off (the row before the right one), as an off-by-one index would;
- ``sparse-no-fill``: the sparse engine leaves the RBF fill of skipped pixels at zero;
- ``fp16-overflow``: the float16 check's model gets its stem convolution's weights
  multiplied by 2^16, so that activations leave float16's range (largest value 65504),
  as those of W48 with unnormalised BatchNorm statistics do.

The two engine faults change the sparse engine only, in the check's own process: the
dense reference stays right.
"""
import functools

import torch

from models.sparse import engine, near_branch

FAULTS = ('sparse-gather-shift', 'sparse-no-fill', 'fp16-overflow')


def _shifted_gather(conv_rows):
    @functools.wraps(conv_rows)
    def shifted(x_rows, taps, matrix, bias=None, out=None):
        return conv_rows(x_rows.roll(1, dims=0), taps, matrix, bias, out)
    return shifted


def _no_fill(rbf_fill_rows):
    @functools.wraps(rbf_fill_rows)
    def zeros(pattern, z_rows, kernel, compact, first=None, out=None):
        filled = rbf_fill_rows(pattern, z_rows, kernel, compact, first, out)
        return filled.zero_()
    return zeros


def install(name):
    """Inject fault ``name`` (one of :data:`FAULTS`, or None for none) into this process's
    sparse engine; ``fp16-overflow`` acts through :func:`overflowing` instead."""
    if name is None or name == 'fp16-overflow':
        return
    if name not in FAULTS:
        raise ValueError(f'unknown fault {name!r}; known: {", ".join(FAULTS)}')
    for module in (engine, near_branch):
        if name == 'sparse-gather-shift':
            module.conv_rows = _shifted_gather(module.conv_rows)
        else:
            module.rbf_fill_rows = _no_fill(module.rbf_fill_rows)


def overflowing(model):
    """``model`` with its stem convolution's weights multiplied by 2^16 (in place)."""
    with torch.no_grad():
        model.conv1.weight.mul_(2.0 ** 16)
    return model
