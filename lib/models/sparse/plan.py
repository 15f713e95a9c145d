"""Planning a segment's sparse run: its layers grouped into (conv, BatchNorm, ReLU) steps,
their geometry, and where each layer's output must be right (``need``: 'full', 'ring1'
or 'active', see ``engine``), worked out backwards from each layer's readers."""
import torch.nn as nn

from ..masked_conv import MaskedConv2d


def leaves(module):
    """The leaf modules of nested Sequentials, in execution order."""
    if isinstance(module, nn.Sequential):
        for child in module:
            yield from leaves(child)
    else:
        yield module


def conv_geometry(conv):
    k, s, p = conv.kernel_size, conv.stride, conv.padding
    if isinstance(p, str) or k[0] != k[1] or s[0] != s[1] or p[0] != p[1] \
            or conv.dilation != (1, 1) or conv.groups != 1:
        raise NotImplementedError(f'sparse execution supports square, undilated, ungrouped '
                                  f'convolutions; got {conv}')
    return k[0], s[0], p[0]


def output_size(h, w, kernel, stride, padding):
    """(h, w) of a square convolution's output."""
    return ((h + 2 * padding - kernel) // stride + 1, (w + 2 * padding - kernel) // stride + 1)


def need_before(conv):
    """What a layer whose only reader is ``conv`` (same mask) must compute."""
    if not isinstance(conv, MaskedConv2d):
        return 'full'
    k, s, p = conv_geometry(conv)
    if s == 1 and k == 1 and p == 0:
        return 'active'
    if s == 1 and k == 3 and p == 1:
        return 'ring1'
    return 'full'


def need_after(steps, k, need_last):
    """What step k-1 must compute, given the steps that follow it; ``need_last`` after
    the last step."""
    if k == len(steps):
        return need_last
    return need_before(steps[k][0]) if isinstance(steps[k], tuple) else 'full'


def conv_steps(leaves):
    """Group leaves into (conv, bn, relu) steps; other leaves stand alone. Any BatchNorm
    is folded (``_BatchNorm``: also the ``SyncBatchNorm`` of multi-GPU training, which
    in eval mode computes what ``BatchNorm2d`` does)."""
    steps, i = [], 0
    while i < len(leaves):
        m = leaves[i]
        if isinstance(m, nn.Conv2d):
            bn = leaves[i + 1] if i + 1 < len(leaves) and isinstance(
                leaves[i + 1], nn.modules.batchnorm._BatchNorm) else None
            i += 1 + (bn is not None)
            relu = i < len(leaves) and isinstance(leaves[i], nn.ReLU)
            i += relu
            steps.append((m, bn, relu))
        else:
            steps.append(m)
            i += 1
    return steps
