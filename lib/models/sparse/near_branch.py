"""A branch of masked residual blocks run on its near set only.

In a BasicBlock ``relu(bn2(conv2(relu(bn1(conv1(x))))) + x)`` with masked convolutions,
a pixel farther from every active pixel than the RBF fill reaches gets each
convolution's bias b (BatchNorm's shift) and nothing else, so the block maps it to
``relu(x + b)``: a per-channel function of the block's input. Chained, these stay of the
form ``max(floor, x + shift)`` per channel. A branch therefore keeps explicit values only
at its near set (``NearSet``: active pixels and their fill ring), carries ``floor`` and
``shift`` for all other pixels, and writes the full map once at the end instead of
several dense passes per block.
"""
import torch

from ..masked_conv import MaskedConv2d
from .kernels import channels_last, flat_rows, gather_rows, rbf_fill_rows, rows_matmul


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


def _masked_conv(conv, folded, rows, near, num_rows):
    """A masked 3x3 convolution at the first ``num_rows`` near rows, before BatchNorm's
    shift: its output at the active pixels, the RBF fill (or 0) at the others.

    Args:
        rows (Tensor): the input at (at least) the first ``near.num_inner`` near rows.
    """
    out = rows.new_empty(num_rows, folded.ohwi.shape[0])
    active = out[:near.num_active]
    if near.num_active:
        active.copy_(rows_matmul(gather_rows(rows, near.taps), folded.matrix, folded.inner))
    skipped = out[near.num_active:]
    if skipped.shape[0]:
        if folded.fill is not None and near.num_active:
            skipped.copy_(rbf_fill_rows(near.fill, active, folded.fill, compact=True,
                                        first=skipped.shape[0]))
        else:
            skipped.zero_()
    return out


def _add_shift(rows, folded):
    return rows if folded.outer is None else rows.add_(folded.outer)


def run_near_branch(layers, x, geometry, weights, owned=False):
    """The output of a branch of near-set blocks (see ``runs_near``) on input ``x``.

    Args:
        layers (nn.Sequential): the branch's BasicBlocks.
        x (Tensor): N x C x H x W channels-last input.
        geometry (SegmentGeometry): the segment's masks.
        weights (FoldedWeights): folded convolution weights.
        owned (bool): nothing else reads ``x``, so the output may take its memory.
    """
    size = tuple(x.shape[-2:])
    reach = max(weights.get(conv, bn).reach for block in layers
                for conv, bn in ((block.conv1, block.bn1), (block.conv2, block.bn2)))
    near = geometry.near(size, reach)
    values = flat_rows(x).index_select(0, near.rows)
    shift = floor = None  # elsewhere the branch gives max(floor, x + shift)
    for block in layers:
        first = weights.get(block.conv1, block.bn1)
        second = weights.get(block.conv2, block.bn2)
        hidden = _masked_conv(block.conv1, first, values, near, near.num_inner)
        hidden = _add_shift(hidden, first).relu_()
        out = _masked_conv(block.conv2, second, hidden, near, near.rows.numel())
        values = _add_shift(out.add_(values), second).relu_()
        bias = second.outer if second.outer is not None else x.new_zeros(x.shape[1])
        shift = bias if shift is None else shift + bias
        floor = x.new_zeros(x.shape[1]) if floor is None else (floor + bias).clamp_min(0)
    out = x if owned else torch.empty_like(x, memory_format=torch.channels_last)
    torch.add(x, shift.view(1, -1, 1, 1), out=out).clamp_min_(floor.view(1, -1, 1, 1))
    out.permute(0, 2, 3, 1).view(-1, out.shape[1]).index_copy_(0, near.rows, values)
    return channels_last(out)
