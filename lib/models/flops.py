"""The paper's FLOPs and parameter accounting, per exit and mask-aware.

- A convolution that runs costs ``weight.numel() * H_out * W_out`` multiply-adds; no
  other layer counts. GFLOPs = multiply-adds / 1024^3.
- A masked convolution with mask density p costs ``that * p`` plus, for the RBF fill,
  ``(1 - p) * p * C_out * 49 * H_out * W_out``.
- Parameters: all parameters of the convolutions (``Lambda`` included) and BatchNorms
  (any kind: ``BatchNorm2d``, ``SyncBatchNorm``) that ran, trainable or frozen.
- Exit k's figure is everything run to produce output k (cumulative).

Two ways to the same figures:

- :func:`anytime_flops` runs the network with hooks (dense path) and reads each masked
  convolution's density from the masks of that run: the reference, used by
  ``tools/get_flops.py``.
- :class:`FlopsCounter` turns the masks of a forward that already ran (the evaluation's
  own, on any execution path: ``model(x, return_masks=True)``) into per-image figures,
  with a cost table built once per input size: no second forward per image.
"""
import copy
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from .masked_conv import RBF_SIZE, MaskedConv2d

GIGA = 1024 ** 3


def _mask_density(conv, output_size):
    mask = conv.current_mask(output_size)
    if mask is None or mask.is_meta:  # no masks, or shapes only: the dense upper bound
        return 1.0
    return mask.mean().item()


def masked_multiply_adds(dense, p, out_channels, rbf, size):
    """Multiply-adds of a masked convolution of ``dense`` unmasked multiply-adds at mask
    density ``p`` (float), with its RBF fill when ``rbf``, for an output of ``size`` (h, w)."""
    h, w = size
    cost = int(dense * p)
    if rbf:
        cost += int((1 - p) * p * out_channels * RBF_SIZE * RBF_SIZE * h * w)
    return cost


def conv_multiply_adds(conv, output):
    """Multiply-adds of one image through ``conv`` (mask-aware for MaskedConv2d)."""
    h, w = output.shape[-2:]
    dense = conv.weight.numel() * h * w
    if not isinstance(conv, MaskedConv2d):
        return dense
    return masked_multiply_adds(dense, _mask_density(conv, (h, w)), conv.out_channels,
                                conv.rbf, (h, w))


def _own_parameters(module):
    # Frozen ones too: the evaluation at the end of a TRAIN.EE_ONLY run sees a frozen
    # backbone, whose parameters are still the model's.
    return sum(p.numel() for p in module.parameters(recurse=False))


def _run_counting(model, x, on_conv):
    """Run ``model`` on ``x`` (eval mode, dense path, no gradients) with hooks; call
    ``on_conv(part, conv, output)`` for every convolution that runs and return the
    parameters of each part's modules that ran (convolutions and BatchNorms)."""
    parts = model.parts()
    part_of = {m: k for k, part in enumerate(parts) for top in part for m in top.modules()}
    params = [0] * len(parts)
    counted = set()

    def hook(module, inputs, output):
        k = part_of[module]
        if isinstance(module, nn.Conv2d):
            on_conv(k, module, output)
        if module not in counted:
            counted.add(module)
            params[k] += _own_parameters(module)

    handles = [m.register_forward_hook(hook) for m in part_of
               if isinstance(m, (nn.Conv2d, _BatchNorm))]
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
    return params


def _cumulative(values):
    out, total = [], 0
    for v in values:
        total += v
        out.append(total)
    return out


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
    multiply_adds = [0] * len(model.parts())

    def add(k, conv, output):
        multiply_adds[k] += conv_multiply_adds(conv, output)

    params = _run_counting(model, x, add)
    return {'gflops': [f / GIGA for f in _cumulative(multiply_adds)],
            'params': _cumulative(params)}


@dataclass(frozen=True)
class ConvCost:
    """What one convolution of the network costs per image, before masking.

    Attributes:
        part (int): 0-based part of the network (``model.parts()``) it belongs to; a
            masked convolution of part k >= 1 follows the masks of exit k.
        dense (int): multiply-adds without a mask.
        size (tuple[int, int]): output (h, w), the resolution of its mask.
        out_channels (int): output channels (for the RBF fill's cost).
        masked (bool): a MaskedConv2d.
        rbf (bool): it fills skipped pixels by RBF interpolation.
    """
    part: int
    dense: int
    size: tuple
    out_channels: int
    masked: bool
    rbf: bool


def cost_table(model, input_size):
    """The :class:`ConvCost` of every convolution that runs for an input of
    ``input_size``, and the parameters of each part, from one dense pass with hooks on a
    blank input (``model`` is left as it was). One forward: on the ``meta`` device,
    where every operator runs in Python, it would take longer for small inputs.

    Args:
        model (AnytimeHRNet): the network.
        input_size (tuple[int, int]): (H, W) of the input.
    Returns:
        tuple[list[ConvCost], list[int]]: the convolutions in order, and the parameters
        of each part (not cumulative).
    """
    convs = []

    def record(k, conv, output):
        size = tuple(output.shape[-2:])
        masked = isinstance(conv, MaskedConv2d)
        convs.append(ConvCost(k, conv.weight.numel() * size[0] * size[1], size,
                              conv.out_channels, masked, masked and conv.rbf))

    blank = torch.zeros(1, 3, *input_size, device=next(model.parameters()).device)
    params = _run_counting(model, blank, record)
    return convs, params


class FlopsCounter:
    """Per-image mask-aware GFLOPs of a forward that already ran, from its own masks.

    The figures are exactly those of :func:`anytime_flops` on each image alone, without
    running the network again: the cost of every convolution is tabulated once per input
    size (:func:`cost_table`), and a masked convolution's cost then only needs its mask
    density per image.

        counter = FlopsCounter(model)
        outputs, masks = model(x, return_masks=True)
        gflops = counter.gflops(x.shape, masks)   # N x 4, cumulative per exit

    Args:
        model (AnytimeHRNet): the network whose forwards are counted.
    """

    def __init__(self, model):
        self.model = model
        self._tables = {}

    def _table(self, input_size):
        input_size = tuple(int(s) for s in input_size)
        if input_size not in self._tables:
            self._tables[input_size] = cost_table(self.model, input_size)
        return self._tables[input_size]

    def params(self, input_size):
        """Cumulative parameters of each exit for an input of ``input_size`` (H, W)."""
        return _cumulative(self._table(input_size)[1])

    def gflops(self, input_shape, masks):
        """Cumulative GFLOPs of each exit for each image of a batch.

        Args:
            input_shape (torch.Size): N x 3 x H x W, the input that ran.
            masks (list): what ``model(x, return_masks=True)`` returned: per segment
                after exits 1-3, a mask provider (``at(size)`` -> N x 1 x h x w) or None
                (unmasked: dense cost).
        Returns:
            Tensor: N x num_exits float64.
        """
        batch = input_shape[0]
        convs, params = self._table(input_shape[-2:])
        densities = {}  # (part, size) -> per-image densities

        def density(k, size):
            if (k, size) not in densities:
                mask = masks[k - 1].at(size)
                densities[k, size] = [1.0] * mask.shape[0] if mask.is_meta else [
                    mask[i:i + 1].mean().item() for i in range(mask.shape[0])]
            return densities[k, size]

        multiply_adds = [[0] * len(params) for _ in range(batch)]
        for conv in convs:
            if not conv.masked or masks[conv.part - 1] is None:
                for row in multiply_adds:
                    row[conv.part] += conv.dense
                continue
            for row, p in zip(multiply_adds, density(conv.part, conv.size)):
                row[conv.part] += masked_multiply_adds(conv.dense, p, conv.out_channels,
                                                       conv.rbf, conv.size)
        return torch.tensor([_cumulative(row) for row in multiply_adds],
                            dtype=torch.float64) / GIGA


def with_mean(figures):
    """``figures`` plus ``gflops_mean``, the mean over the exits (the paper's last column)."""
    return dict(figures, gflops_mean=sum(figures['gflops']) / len(figures['gflops']))


def flops_table(figures):
    """Per-exit table of cumulative GFLOPs (four decimals, so that tiny models do not
    show 0.0) and parameters, with the GFLOPs mean."""
    figures = with_mean(figures)
    rows = ['exit      GFLOPs     params']
    for k, (g, p) in enumerate(zip(figures['gflops'], figures['params']), start=1):
        rows.append(f'{k:>4} {g:>11.4f} {p:>10,}')
    rows.append(f"mean {figures['gflops_mean']:>11.4f}")
    return '\n'.join(rows)
