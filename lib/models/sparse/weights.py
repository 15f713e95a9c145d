"""Inference weights of masked convolutions with their BatchNorm folded in, cached.

Folding and re-laying out the weights of a W48 segment reads and writes hundreds of
megabytes, a noticeable cost when few pixels are computed, so the folded weights are
kept between calls and rebuilt as soon as any tensor they derive from changes (another
tensor, another device, or an in-place update such as an optimiser step or
``load_state_dict``, which bump the tensor's version counter). They are derived data
only: they never enter a state dict, and outputs do not depend on the cache. Writes
through ``.data`` bypass version counters; ``AnytimeHRNet.train()`` / ``eval()`` clear the
cache, so call ``model.eval()`` after editing weights that way.

They are kept per compute type (``precision``): folded in the parameters' type, then
cast, so that a bfloat16 weight is the folded float32 weight rounded once.
"""
import weakref
from dataclasses import dataclass

import torch

from .kernels import fill_kernel, fold_batch_norm, sum_dtype


@dataclass
class FoldedConv:
    """``bn(conv(x))`` as one convolution (see ``fold_batch_norm``).

    Attributes (in the compute type, but ``fill``, in ``kernels.sum_dtype``'s):
        ohwi (Tensor): C_out x k x k x C_in folded weight, contiguous: ``weight`` is its
            OIHW (channels-last) view for dense convolution, ``matrix`` its C_out x
            (k*k*C_in) view for the GEMM on gathered rows.
        inner (Tensor | None): bias added before the RBF fill.
        outer (Tensor | None): bias added after it (BatchNorm's shift).
        fill (Tensor | None): 7x7 RBF fill kernel of a masked convolution, None without.
        reach (int): how far the fill reaches (see ``fill_kernel``).
    """
    ohwi: torch.Tensor
    inner: torch.Tensor = None
    outer: torch.Tensor = None
    fill: torch.Tensor = None
    reach: int = 0

    @property
    def weight(self):
        return self.ohwi.permute(0, 3, 1, 2)

    @property
    def matrix(self):
        return self.ohwi.view(self.ohwi.shape[0], -1)


def _fold(conv, bn, dtype):
    """``FoldedConv`` of ``conv`` and ``bn``, folded in their own type, cast to ``dtype``."""
    def cast(t):
        return None if t is None else t.to(dtype)

    with torch.no_grad():
        weight, inner, outer = fold_batch_norm(conv, bn)
        fill, reach = fill_kernel(conv)
        return FoldedConv(cast(weight).permute(0, 2, 3, 1).contiguous(), cast(inner),
                          cast(outer), None if fill is None else fill.to(sum_dtype(dtype)),
                          reach)


def _signature(tensors):
    return tuple(None if t is None else (t.data_ptr(), t._version, t.device, t.dtype, t.shape)
                 for t in tensors)


class FoldedWeights:
    """Folded weights per convolution, valid while its (and its BN's) tensors are."""

    def __init__(self):
        self._entries = weakref.WeakKeyDictionary()

    def get(self, conv, bn, dtype=None):
        """The ``FoldedConv`` of ``conv`` followed by ``bn`` (or None), in ``dtype``
        (None: the convolution weight's)."""
        tensors = [conv.weight, conv.bias, getattr(conv, 'Lambda', None)]
        if bn is not None:
            tensors += [bn.weight, bn.bias, bn.running_mean, bn.running_var]
        signature = _signature(tensors)
        entry = self._entries.get(conv)
        if entry is None or entry[0] != signature or entry[1] is not bn:
            entry = (signature, bn, {})  # compute type -> FoldedConv
            self._entries[conv] = entry
        dtype = dtype or conv.weight.dtype
        if dtype not in entry[2]:
            entry[2][dtype] = _fold(conv, bn, dtype)
        return entry[2][dtype]

    def for_call(self, dtype=None):
        """A view for one segment call in ``dtype`` that checks each convolution's entry
        once."""
        return CallWeights(self, dtype)

    def clear(self):
        self._entries = weakref.WeakKeyDictionary()

    # A copy or a pickled model starts with an empty cache (weak references do neither).
    def __deepcopy__(self, memo):
        return FoldedWeights()

    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        self._entries = weakref.WeakKeyDictionary()


class CallWeights:
    """``FoldedWeights`` in one type during one call, when no weight can change: a
    convolution read by several steps is validated (its tensors' signature computed)
    only the first time."""

    def __init__(self, cache, dtype):
        self._cache, self._dtype = cache, dtype
        self._seen = {}

    def get(self, conv, bn):
        folded = self._seen.get(conv)
        if folded is None:
            folded = self._seen[conv] = self._cache.get(conv, bn, self._dtype)
        return folded
