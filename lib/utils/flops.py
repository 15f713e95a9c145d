"""The paper's FLOPs and parameter accounting, per exit and mask-aware.

- A convolution that runs costs ``weight.numel() * H_out * W_out`` multiply-adds; no
  other layer counts. GFLOPs = multiply-adds / 1024^3.
- A masked convolution with mask density p costs ``that * p`` plus, for the RBF fill,
  ``(1 - p) * p * C_out * 49 * H_out * W_out``.
- Parameters: trainable parameters of the convolutions (``Lambda`` included) and
  BatchNorms that ran.
- Exit k's figure is everything run to produce output k (cumulative).
"""
import copy

import torch
import torch.nn as nn

from models.masked_conv import RBF_SIZE, MaskedConv2d

GIGA = 1024 ** 3


def _mask_density(conv, output_size):
    mask = conv.current_mask(output_size)
    if mask is None or mask.is_meta:  # no masks, or shapes only: the dense upper bound
        return 1.0
    return mask.mean().item()


def conv_multiply_adds(conv, output):
    """Multiply-adds of one image through ``conv`` (mask-aware for MaskedConv2d)."""
    h, w = output.shape[-2:]
    dense = conv.weight.numel() * h * w
    if not isinstance(conv, MaskedConv2d):
        return dense
    p = _mask_density(conv, (h, w))
    cost = int(dense * p)
    if conv.rbf:
        cost += int((1 - p) * p * conv.out_channels * RBF_SIZE * RBF_SIZE * h * w)
    return cost


def _trainable(module):
    return sum(p.numel() for p in module.parameters(recurse=False) if p.requires_grad)


def anytime_flops(model, x):
    """Cumulative GFLOPs and parameters of each exit of ``model`` for the input ``x``.

    Masked convolutions count with the masks that ``x`` itself produces (for a batch,
    the figures are per image, averaged over the batch). A ``meta`` input counts shapes
    only: masked convolutions then count as dense, the upper bound.

    Args:
        model (AnytimeHRNet): the network (any device; it is not modified).
        x (Tensor): N x 3 x H x W input, preprocessed as in evaluation.
    Returns:
        dict: ``{"gflops": [4 floats], "params": [4 ints]}``.
    """
    if x.is_meta and not next(model.parameters()).is_meta:
        model = copy.deepcopy(model).to('meta')
    parts = model.parts()
    part_of = {m: k for k, part in enumerate(parts) for top in part for m in top.modules()}
    multiply_adds = [0] * len(parts)
    params = [0] * len(parts)
    counted = set()

    def hook(module, inputs, output):
        k = part_of[module]
        if isinstance(module, nn.Conv2d):
            multiply_adds[k] += conv_multiply_adds(module, output)
        if module not in counted:
            counted.add(module)
            params[k] += _trainable(module)

    handles = [m.register_forward_hook(hook) for m in part_of
               if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
    was_training = model.training
    # The hooks count the modules that run; sparse execution bypasses them, and the
    # accounting is the same whatever the execution, so count on the dense path.
    execution = getattr(model, 'execution', None)
    model.eval()
    try:
        if execution is not None:
            model.execution = 'dense'
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        if execution is not None:
            model.execution = execution
        for h in handles:
            h.remove()
    cumulative_flops, cumulative_params, f, p = [], [], 0, 0
    for cost, count in zip(multiply_adds, params):
        f, p = f + cost, p + count
        cumulative_flops.append(f / GIGA)
        cumulative_params.append(p)
    return {'gflops': cumulative_flops, 'params': cumulative_params}


def with_mean(figures):
    """``figures`` plus ``gflops_mean``, the mean over the exits (the paper's last column)."""
    return dict(figures, gflops_mean=sum(figures['gflops']) / len(figures['gflops']))


def flops_table(figures):
    """Per-exit table of cumulative GFLOPs and parameters, with the GFLOPs mean."""
    figures = with_mean(figures)
    rows = ['exit   GFLOPs     params']
    for k, (g, p) in enumerate(zip(figures['gflops'], figures['params']), start=1):
        rows.append(f'{k:>4} {g:>8.1f} {p:>10,}')
    rows.append(f"mean {figures['gflops_mean']:>8.1f}")
    return '\n'.join(rows)
