"""The all-to-all fusion of a HighResolutionModule with sparse terms.

Branch i's fused output is ``relu(x_i + sum_j T_j)``, where T_j is branch j brought to
branch i's resolution: a 1x1 convolution + BN then a bilinear upsampling (j > i), or
stride-2 3x3 convolutions + BN (j < i). When the last convolution of T_j is masked and
runs sparse, T_j equals BN's shift (a per-channel constant) everywhere but at the active
pixels and the reach of their fill, and bilinear upsampling keeps it so but at the pixels
reading those. So the fusion adds all constants in one dense pass, adds each term's few
rows in place and applies the ReLU, instead of a full map, an upsampling and a sum per
term.
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .kernels import per_channel_, resample_rows, sum_dtype


@dataclass
class SparseTerm:
    """An N x C x h x w map equal to ``constant`` (per channel) but at the active pixels
    of its mask and the skipped ones within ``reach`` of them
    (``SegmentGeometry.reach_rows``), where it is ``constant + values``."""
    constant: torch.Tensor
    values: torch.Tensor
    size: tuple
    reach: int


def _term_rows(geometry, term, size, batch):
    """Rows and values of the non-constant part of ``term`` at ``size``: upsampled
    bilinearly when ``term`` is smaller."""
    rows = geometry.reach_rows(term.size, term.reach)
    if term.size == size:
        return rows, term.values
    targets, matrix = geometry.upsampling(term.size, term.reach, size,
                                          sum_dtype(term.values.dtype))
    # The source is small (a lower resolution): zeros and the term's rows.
    source = term.values.new_zeros(batch * term.size[0] * term.size[1], term.values.shape[1])
    source.index_copy_(0, rows, term.values)
    return targets, resample_rows(matrix, source)


def fuse(engine, module, xs, owned):
    """``HighResolutionModule``'s fusion of the branch outputs ``xs`` (channels-last).
    ``owned[i]``: nothing outside reads ``xs[i]``, so its memory may hold output i."""
    # Every term first: then no branch output is read any more and each can be updated
    # in place (no new full maps).
    terms = [[None if j == i else engine.fuse_term(row[j], xs[j])
              for j in range(module.num_branches)] for i, row in enumerate(module.fuse_layers)]
    fused = []
    for i, row_terms in enumerate(terms):
        size, batch = tuple(xs[i].shape[-2:]), xs[i].shape[0]
        constant, maps, sparse = None, [], []
        for j, term in enumerate(row_terms):
            if j == i:
                continue
            if not isinstance(term, SparseTerm):
                maps.append(term if j < i else F.interpolate(term, size=size, mode='bilinear',
                                                             align_corners=False))
                continue
            constant = term.constant if constant is None else constant + term.constant
            sparse.append(_term_rows(engine.geometry, term, size, batch))
        y = xs[i] if owned[i] else xs[i].clone(memory_format=torch.channels_last)
        if constant is not None:
            per_channel_('add_', y, constant)
        for term in maps:
            y.add_(term)
        y_rows = y.permute(0, 2, 3, 1).view(-1, y.shape[1])  # a view: writes reach y
        for rows, values in sparse:
            y_rows.index_add_(0, rows, values)
        fused.append(y.relu_())
    return fused
