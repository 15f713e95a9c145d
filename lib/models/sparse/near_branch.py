"""A branch of masked residual blocks run on its near set only.

In a BasicBlock ``relu(bn2(conv2(relu(bn1(conv1(x))))) + x)`` with masked convolutions,
a pixel farther from every active pixel than the RBF fill reaches gets each
convolution's bias b (BatchNorm's shift) and nothing else, so the block maps it to
``relu(x + b)``: a per-channel function of the block's input. Chained, these stay of the
form ``max(floor, x + shift)`` per channel. A branch therefore keeps explicit values only
at its near set (``NearSet``: active pixels and their fill ring), carries ``floor`` and
``shift`` for all other pixels, and writes the full map once at the end instead of
several dense passes per block.

A branch made by a transition convolution starts the same way: the transition's output
is its BatchNorm shift (ReLU'd) beyond the near set, so it is never written in full.
"""
from dataclasses import dataclass

import torch

from ..masked_conv import MaskedConv2d
from .kernels import channels_last, conv_rows, flat_rows, per_channel_, rbf_fill_rows


def _runs_near(block, geometry, policy, size):
    """Can ``block`` run on the near set: a BasicBlock of two masked 3x3, stride-1
    convolutions without downsampling, both sparse at this mask's density?"""
    convs = (getattr(block, 'conv1', None), getattr(block, 'conv2', None))
    if hasattr(block, 'conv3') or getattr(block, 'downsample', True) is not None:
        return False
    if not all(isinstance(c, MaskedConv2d) and c.kernel_size == (3, 3) and c.stride == (1, 1)
               and c.padding == (1, 1) and c.dilation == (1, 1) and c.groups == 1
               for c in convs):
        return False
    density = geometry.mask(size).density
    return all(policy.sparse(c, density) for c in convs)


def runs_near(layers, geometry, policy, size):
    """Does every block of a branch run on the near set?"""
    return len(layers) > 0 and all(_runs_near(b, geometry, policy, size) for b in layers)


def branch_reach(layers, weights):
    """How far the RBF fills of a branch's convolutions reach (the near set's radius)."""
    return max(weights.get(conv, bn).reach for block in layers
               for conv, bn in ((block.conv1, block.bn1), (block.conv2, block.bn2)))


@dataclass
class NearMap:
    """An N x C x H x W map given by ``values`` at the rows of ``near`` and elsewhere by
    ``max(floor, base + shift)`` per channel, ``base`` being a full map or a per-channel
    constant (``shift`` and ``floor`` None: just ``base``)."""
    near: object
    values: torch.Tensor
    base: torch.Tensor
    shape: tuple
    shift: torch.Tensor = None
    floor: torch.Tensor = None

    @classmethod
    def of(cls, x, near):
        """The map ``x`` (channels-last) on ``near``."""
        return cls(near, flat_rows(x).index_select(0, near.rows), x, tuple(x.shape))

    def materialise(self, owned=False):
        """The full channels-last map; ``owned``: it may take ``base``'s memory."""
        c = self.shape[1]
        if self.base.dim() == 1:  # constant beyond the near set
            far = self.base if self.shift is None else \
                torch.maximum(self.floor, self.base + self.shift)
            out = torch.empty(self.shape, dtype=self.values.dtype, device=self.values.device,
                              memory_format=torch.channels_last)
            out.copy_(far.view(1, -1, 1, 1).expand(self.shape))
        else:
            out = self.base if owned else channels_last(self.base.clone())
            if self.shift is not None:
                per_channel_('clamp_min_', per_channel_('add_', out, self.shift), self.floor)
        out.permute(0, 2, 3, 1).view(-1, c).index_copy_(0, self.near.rows, self.values)
        return channels_last(out)


def _masked_conv(folded, rows, taps, near, num_rows):
    """A masked convolution at the first ``num_rows`` near rows, before BatchNorm's shift:
    its output at the active pixels, the RBF fill (or 0) at the others.

    Args:
        rows (Tensor): the input rows ``taps`` index.
    """
    out = rows.new_empty(num_rows, folded.ohwi.shape[0])
    active = out[:near.num_active]
    if near.num_active:
        conv_rows(rows, taps, folded.matrix, folded.inner, out=active)
    skipped = out[near.num_active:]
    if skipped.shape[0]:
        if folded.fill is not None and near.num_active:
            rbf_fill_rows(near.fill, active, folded.fill, compact=True,
                          first=skipped.shape[0], out=skipped)
        else:
            skipped.zero_()
    return out


def _add_shift(rows, folded):
    return rows if folded.outer is None else per_channel_('add_', rows, folded.outer)


def transition_near_map(folded, x, taps, near, out_shape):
    """``relu(bn(conv(x)))`` of a masked transition convolution as a ``NearMap`` on
    ``near`` (whose radius covers the convolution's fill). ``taps``: the convolution's
    reads of ``x`` at the active pixels."""
    values = _masked_conv(folded, flat_rows(x), taps, near, near.rows.numel())
    constant = folded.outer if folded.outer is not None else x.new_zeros(out_shape[1])
    return NearMap(near, _add_shift(values, folded).relu_(), constant.clamp_min(0), out_shape)


def run_near_branch(layers, x, weights):
    """A branch of near-set blocks (see ``runs_near``) on the ``NearMap`` ``x``; returns
    its output as a ``NearMap``."""
    values, shift, floor = x.values, x.shift, x.floor
    near = x.near
    for block in layers:
        first = weights.get(block.conv1, block.bn1)
        second = weights.get(block.conv2, block.bn2)
        hidden = _masked_conv(first, values, near.taps, near, near.num_inner)
        hidden = _add_shift(hidden, first).relu_()
        out = _masked_conv(second, hidden, near.taps, near, near.rows.numel())
        values = _add_shift(out.add_(values), second).relu_()
        bias = second.outer if second.outer is not None else values.new_zeros(x.shape[1])
        shift = bias if shift is None else shift + bias
        floor = torch.zeros_like(bias) if floor is None else (floor + bias).clamp_min(0)
    return NearMap(near, values, x.base, x.shape, shift, floor)
