"""Sparse inference of one segment of the anytime network (ADP-C Sec. 3.3, made fast).

A segment (``transition_j``, ``stage_{j+1}``, exit j+1) runs with the masks of exit j.
Every masked convolution computes its output only where its mask is 1 (gather + GEMM,
BatchNorm folded in) and its RBF fill only at the skipped pixels that a later layer
reads; the result equals the dense masked convolution ``y*m + R(y*m)*(1-m)`` there.

Which pixels a layer's output must be right at (``need``):
- 'full': everywhere (read by residuals, fuse layers, pooling, the next segment);
- 'ring1': active pixels and skipped pixels next to one (read only by a 3x3, stride-1
  convolution with the same mask, as inside a BasicBlock);
- 'active': active pixels only (read only by a 1x1 convolution with the same mask, as in
  the exit heads, or the exit's logits under copy aggregation, which keeps exit j's
  logits wherever the mask is 0).

Feature maps are N x C x H x W channels-last tensors, so that a map's pixels are the rows
of an N*H*W x C matrix. Elementwise work is kept off the skipped pixels where their
values are known per channel: branches of residual blocks run on their near set
(``near_branch``), the fusion adds sparse terms (``fuse``), and the exit heads never
materialise their large concatenated input, but sample it at the active pixels.
"""
import warnings

import torch
import torch.nn.functional as F

from ..masked_conv import MaskedConv2d
from .fuse import SparseTerm, fuse
from .geometry import SegmentGeometry
from .kernels import ROW_BLOCK_BYTES, channels_last, conv_rows, flat_rows, per_channel_, \
    rbf_fill_rows, rows_matmul
from .maps import ActiveRows, FullMap, LazyMap
from .near_branch import NearMap, branch_reach, run_near_branch, runs_near, \
    transition_near_map
from .plan import conv_geometry, conv_steps, leaves, need_after, need_before, output_size
from .precision import segment_dtype
from .weights import FoldedWeights


class SegmentEngine:
    """Runs the modules of one segment with its masks, sparse where the policy says so.

    Args:
        masks: the segment's mask provider (``ConfidenceMasks``: ``at(size)``).
        policy (ExecutionPolicy): per-layer sparse/dense choice.
        weights (FoldedWeights | None): folded weights, kept between calls by the model.
        dtype (torch.dtype | None): the compute type (``precision``) of the maps it is
            given; None: the weights'.

    One engine serves one call: its geometry is dropped with it.
    """

    def __init__(self, masks, policy, weights=None, dtype=None):
        self.geometry = SegmentGeometry(masks)
        self.policy = policy
        self.weights = (weights if weights is not None else FoldedWeights()).for_call(dtype)

    def _fill_rows(self, folded, geom, need):
        """The skipped pixels whose RBF fill a reader needs (None: none)."""
        if folded.fill is None or need == 'active' or not 0 < geom.density < 1:
            return None
        ring = folded.reach if need == 'full' else 1
        pattern = self.geometry.fill(geom.size, ring, folded.reach)
        return pattern if pattern.rows.numel() else None

    def _assemble(self, conv, geom, z_active, folded, relu, residual, need, like,
                  reuse=False):
        """Full output map of a sparsely computed layer from its active rows.

        Skipped pixels hold ``outer (+ residual)``, ReLU'd: right wherever the fill is 0.
        Active rows, and the skipped rows whose fill a reader needs, are then written over
        it: one dense pass instead of one per elementwise step. A reader of the active
        pixels (and their ring) only gets zeros elsewhere, the cheapest finite values.

        Args:
            z_active (Tensor | None): n_active x C_out, inner bias included.
            folded (FoldedConv): the layer's biases.
            like (Tensor): any tensor of the right device and dtype.
            reuse (bool): ``residual`` is read by nothing else, so the output may take
                its memory (no new buffer, no page faults).
        """
        n, (h, w), c = geom.batch, geom.size, conv.out_channels
        outer = folded.outer
        pattern = self._fill_rows(folded, geom, need) if z_active is not None else None
        parts = []  # (rows, values) to write over the skipped-pixel value
        if pattern is not None:
            parts.append((pattern.rows, rbf_fill_rows(pattern, z_active, folded.fill,
                                                      compact=True)))
        if z_active is not None:
            parts.append((geom.active, z_active))
        if residual is not None:  # residual blocks read every pixel: need is 'full'
            residual_rows = flat_rows(residual)
            # Read the residual at the written rows before its memory may be reused.
            parts = [(rows, values.add_(residual_rows.index_select(0, rows)))
                     for rows, values in parts]
            if reuse:
                out = residual
            else:
                out = channels_last(residual.clone())
            if outer is not None:
                per_channel_('add_', out, outer)
        # Zeros where no reader looks (or where the value is 0), else the skipped value.
        zero_base = outer is None or need == 'active' or (need == 'ring1' and
                                                          pattern is not None)
        if residual is None:
            out = torch.empty((n, c, h, w), dtype=like.dtype, device=like.device,
                              memory_format=torch.channels_last)
            out.zero_() if zero_base else out.copy_(outer.view(1, -1, 1, 1).expand(n, c, h, w))
        if relu and (residual is not None or not zero_base):
            out.relu_()
        out_rows = out.permute(0, 2, 3, 1).view(-1, c)  # a view: writes reach out
        for rows, values in parts:
            if folded.outer is not None:
                values = per_channel_('add_', values, folded.outer)
            out_rows.index_copy_(0, rows, values.relu_() if relu else values)
        return out

    def conv(self, conv, bn, x, relu=False, residual=None, need='full', reuse=False):
        """``relu(bn(conv(x)) + residual)`` for a (masked) convolution, right at the
        pixels ``need`` names. ``x``: N x C x H x W channels-last. ``reuse``: the residual
        is read by nothing else and its memory may hold the output."""
        k, s, p = conv_geometry(conv)
        n, _, h, w = x.shape
        out_size = output_size(h, w, k, s, p)
        folded = self.weights.get(conv, bn)
        if not isinstance(conv, MaskedConv2d):
            return self._plain(x, folded, s, p, relu, residual)
        geom = self.geometry.mask(out_size)
        if not self.policy.sparse(conv, geom.density):
            return self._dense(conv, geom, x, folded, s, p, relu, residual, need)
        z_active = None
        if geom.active.numel():
            taps = self.geometry.taps(out_size, (h, w), k, s, p)
            z_active = conv_rows(flat_rows(x), taps, folded.matrix, folded.inner)
        return self._assemble(conv, geom, z_active, folded, relu, residual, need, x, reuse)

    def _dense(self, conv, geom, x, folded, stride, padding, relu, residual, need):
        """The engine's dense layer: channels-last convolution with BN folded in, the fill
        computed only at the skipped pixels where it is non-zero and read."""
        z = channels_last(F.conv2d(x, folded.weight, folded.inner, stride, padding))
        z_rows = z.permute(0, 2, 3, 1).view(-1, z.shape[1])  # a view: writes reach z
        if need != 'active' and geom.density < 1:
            if z.element_size() < 4:  # no broadcast of a narrow type (see WIDE_ROWS)
                z_rows.index_fill_(0, geom.skipped, 0)
            else:
                z.mul_(geom.mask)
        pattern = self._fill_rows(folded, geom, need)
        if pattern is not None:
            fill = rbf_fill_rows(pattern, z_rows, folded.fill, compact=False)
            z_rows.index_copy_(0, pattern.rows, fill)  # z is 0 at skipped pixels
        if folded.outer is not None:
            per_channel_('add_', z, folded.outer)
        if residual is not None:
            z.add_(residual)
        return z.relu_() if relu else z

    @staticmethod
    def _plain(x, folded, stride, padding, relu, residual):
        y = channels_last(F.conv2d(x, folded.weight, folded.inner, stride, padding))
        if folded.outer is not None:
            per_channel_('add_', y, folded.outer)
        if residual is not None:
            y.add_(residual)
        return y.relu_() if relu else y

    def sequential(self, module, x):
        """A Sequential of conv/BN/ReLU steps (downsample, transition, fuse layers)."""
        return self._steps(conv_steps(list(leaves(module))), x)

    def _steps(self, steps, x):
        for i, step in enumerate(steps):
            if isinstance(step, tuple):
                conv, bn, relu = step
                x = self.conv(conv, bn, x, relu=relu, need=need_after(steps, i + 1, 'full'))
            else:
                x = channels_last(step(x))
        return x

    def sparse_term(self, conv, bn, x):
        """``bn(conv(x))`` of a masked convolution as a ``SparseTerm`` (BN's shift but at
        the active pixels and their fill's reach), or None when it runs dense."""
        k, s, p = conv_geometry(conv)
        h, w = x.shape[-2:]
        out_size = output_size(h, w, k, s, p)
        geom = self.geometry.mask(out_size)
        if not isinstance(conv, MaskedConv2d) or not self.policy.sparse(conv, geom.density):
            return None
        folded = self.weights.get(conv, bn)
        constant = folded.outer if folded.outer is not None else x.new_zeros(conv.out_channels)
        if not geom.active.numel():
            return SparseTerm(constant, x.new_zeros(0, conv.out_channels), out_size, 0)
        taps = self.geometry.taps(out_size, (h, w), k, s, p)
        z_active = conv_rows(flat_rows(x), taps, folded.matrix, folded.inner)
        pattern = self._fill_rows(folded, geom, 'full')
        if pattern is None:
            return SparseTerm(constant, z_active, out_size, 0)
        fill = rbf_fill_rows(pattern, z_active, folded.fill, compact=True)
        return SparseTerm(constant, torch.cat([z_active, fill]), out_size, folded.reach)

    def fuse_term(self, module, x):
        """Fuse layer ``module`` on ``x``: a ``SparseTerm`` when its last step is a BN'd
        convolution without ReLU that runs sparse, else the computed map."""
        *first, last = conv_steps(list(leaves(module)))
        x = self._steps(first, x)
        if isinstance(last, tuple) and not last[2]:
            term = self.sparse_term(last[0], last[1], x)
            if term is not None:
                return term
        return self._steps([last], x)

    # -- HRNet structure ----------------------------------------------------------------

    def block(self, block, x, owned=False):
        """BasicBlock or Bottleneck: a chain of conv steps with a residual connection.
        ``owned``: nothing outside reads ``x``, so the output may reuse its memory."""
        if block.downsample is None:
            residual = x
        else:
            residual, owned = self.sequential(block.downsample, x), True
        convs = [(block.conv1, block.bn1), (block.conv2, block.bn2)]
        if hasattr(block, 'conv3'):
            convs.append((block.conv3, block.bn3))
        for i, (conv, bn) in enumerate(convs):
            last = i == len(convs) - 1
            need = 'full' if last else need_before(convs[i + 1][0])
            x = self.conv(conv, bn, x, relu=True, residual=residual if last else None,
                          need=need, reuse=last and owned)
        return x

    def branch(self, layers, x, owned=False):
        """A branch of blocks on ``x`` (a map, or a ``NearMap`` from the transition)."""
        size = tuple(x.shape[-2:])
        if runs_near(layers, self.geometry, self.policy, size):
            if not isinstance(x, NearMap):
                x = NearMap.of(x, self.geometry.near(size, branch_reach(layers, self.weights)))
            return run_near_branch(layers, x, self.weights).materialise(owned)
        if isinstance(x, NearMap):
            x, owned = x.materialise(), True
        for k, block in enumerate(layers):
            x = self.block(block, x, owned=owned or k > 0)  # later inputs are ours
        return x

    def transition(self, transition, branches, module):
        """``apply_transition``: new branches read the last old branch. A branch that
        ``module`` (the next) runs on its near set gets a ``NearMap`` when its transition
        is one masked conv + BN + ReLU that runs sparse."""
        out = []
        for i, layer in enumerate(transition):
            x = branches[min(i, len(branches) - 1)]
            if layer is None:
                out.append(x)
                continue
            steps = conv_steps(list(leaves(layer)))
            near_map = self._near_transition(steps[0], x, module.branches[i]) \
                if len(steps) == 1 and isinstance(steps[0], tuple) and steps[0][2] else None
            out.append(near_map if near_map is not None else self._steps(steps, x))
        return out

    def _near_transition(self, step, x, layers):
        """A transition step's output as a ``NearMap`` for the blocks ``layers``, or None
        when either runs otherwise."""
        conv, bn, _ = step
        if not isinstance(conv, MaskedConv2d):
            return None
        k, s, p = conv_geometry(conv)
        n, _, h, w = x.shape
        size = output_size(h, w, k, s, p)
        geom = self.geometry.mask(size)
        if not self.policy.sparse(conv, geom.density) or \
                not runs_near(layers, self.geometry, self.policy, size):
            return None
        folded = self.weights.get(conv, bn)
        near = self.geometry.near(size, max(folded.reach, branch_reach(layers, self.weights)))
        taps = self.geometry.taps(size, (h, w), k, s, p)
        return transition_near_map(folded, x, taps, near, (n, conv.out_channels) + size)

    def hr_module(self, module, xs, owned=None):
        """``HighResolutionModule.forward``: branches, then the all-to-all fusion.
        ``owned[i]``: nothing outside reads ``xs[i]`` (its memory may be reused)."""
        owned = owned or [False] * len(xs)
        outputs = [self.branch(layers, x, own) for layers, x, own in
                   zip(module.branches, xs, owned)]
        if module.fuse_layers is None:
            return outputs
        # A branch output is ours when it is a new map or its input was ours already.
        return fuse(self, module, outputs,
                    [own or y is not x for y, x, own in zip(outputs, xs, owned)])

    def head(self, head, branches, need_out):
        """An exit head on the concatenated branches; returns N x classes x h x w logits,
        right at the pixels ``need_out`` names ('active' or 'full').

        The head's map is a ``LazyMap`` until a layer must compute it, then a ``FullMap``,
        or ``ActiveRows`` after sparse 1x1 convolutions read only at the active pixels.
        """
        current = LazyMap(branches)  # exit_input: branches upsampled to branch 0's size
        steps = conv_steps(list(leaves(head)))
        i = 0
        while i < len(steps):
            step = steps[i]
            if not isinstance(step, tuple):
                current = self._head_module(step, current)
                i += 1
                continue
            chain_end = i
            while chain_end < len(steps) and self._sparse_pointwise(steps[chain_end],
                                                                     current.size):
                chain_end += 1
            if chain_end > i:
                current = self._head_chain(steps[i:chain_end], current,
                                           need_after(steps, chain_end, need_out))
                i = chain_end
            else:
                conv, bn, relu = step
                current = FullMap(self.conv(conv, bn, current.materialise(), relu=relu,
                                            need=need_after(steps, i + 1, need_out)))
                i += 1
        return current.materialise().contiguous()

    @staticmethod
    def _head_module(module, current):
        """A head step other than a convolution: pooling and upsampling are recorded on a
        lazy map, anything else runs on the computed map."""
        if not isinstance(current, ActiveRows):
            lazy = current if isinstance(current, LazyMap) else LazyMap([current.x])
            if lazy.record(module):
                return lazy
        return FullMap(channels_last(module(current.materialise())))

    def _sparse_pointwise(self, step, size):
        """Is ``step`` a masked 1x1 convolution that runs sparse at ``size``'s mask?"""
        return isinstance(step, tuple) and isinstance(step[0], MaskedConv2d) and \
            conv_geometry(step[0]) == (1, 1, 0) and \
            self.policy.sparse(step[0], self.geometry.mask(size).density)

    def _head_chain(self, chain, current, need):
        """Sparse 1x1 convolutions ``chain`` on the head's map ``current``: ``ActiveRows``
        when ``need`` is 'active', else a ``FullMap`` right where ``need`` says."""
        geom = self.geometry.mask(current.size)
        z_active = self._pointwise_chain(chain, geom.active.numel(),
                                         lambda start, stop: current.at_active(geom, start, stop))
        conv, bn, relu = chain[-1]
        folded = self.weights.get(conv, bn)
        if need != 'active':
            return FullMap(self._assemble(conv, geom, z_active, folded, relu, None, need,
                                          z_active))
        if folded.outer is not None:
            per_channel_('add_', z_active, folded.outer)
        return ActiveRows(z_active.relu_() if relu else z_active, geom)

    def _pointwise_chain(self, chain, num_active, rows_at):
        """Consecutive 1x1 convolutions (conv, bn, relu) at the active pixels, each read
        only there by the next: the last one's output before its outer bias,
        num_active x C_out. ``rows_at(start, stop)``: the chain's input at those active
        pixels.

        It runs in blocks of pixels, so that wide intermediate rows (720 channels in
        W48's last exit) stay in cache and are never allocated for all pixels at once.
        """
        folded = [self.weights.get(conv, bn) for conv, bn, _ in chain]
        out = folded[-1].matrix.new_empty(num_active, folded[-1].matrix.shape[0])
        widest = max([chain[0][0].in_channels] + [f.matrix.shape[0] for f in folded])
        step = max(1, num_active) if out.device.type != 'cpu' else \
            max(64, ROW_BLOCK_BYTES // (widest * out.element_size()))
        for start in range(0, num_active, step):
            stop = min(num_active, start + step)
            rows = rows_at(start, stop)
            for f, (_, _, relu) in zip(folded[:-1], chain[:-1]):
                rows = rows_matmul(rows, f.matrix, f.inner)
                if f.outer is not None:
                    rows.add_(f.outer)
                if relu:
                    rows.relu_()
            out[start:stop] = rows_matmul(rows, folded[-1].matrix, folded[-1].inner)
        return out

def run_segment(transition, stage, head, branches, masks, policy, need_out='active',
                weights=None, dtype=None):
    """Segment j of the anytime network with the sparse engine (inference only).

    Args:
        transition (nn.ModuleList): ``transition_j``.
        stage (nn.Sequential): ``stage_{j+1}`` (HighResolutionModules).
        head (nn.Sequential): exit j+1's head.
        branches (list[Tensor]): the segment's input branches.
        masks: exit j's mask provider (``at(size)``).
        policy (ExecutionPolicy): which layers run sparse.
        need_out (str): 'active' when copy aggregation discards the exit's skipped
            pixels, 'full' otherwise.
        weights (FoldedWeights | None): cache of folded weights kept by the model.
        dtype (torch.dtype | None): the type to compute in; None: ``precision.segment_dtype``
            (the autocast type where the device has units for it, else float32 under
            autocast; the inputs' type without).
    Returns:
        (list[Tensor], Tensor): output branches (channels-last) and the exit's logits, in
        the compute type, equal to the dense segment's wherever ``need_out`` says.

    Autocast is off inside: every map and folded weight is already of the compute type,
    and the few steps that sum in float32 (``kernels.sum_dtype``) widen on their own.
    """
    device = branches[0].device
    dtype = dtype or segment_dtype(device, branches[0].dtype)
    engine = SegmentEngine(masks, policy, weights, dtype)
    with torch.no_grad(), torch.autocast(device.type, enabled=False), \
            warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='.*[Ss]parse CSR tensor support.*')
        inputs = [channels_last(b.to(dtype)) for b in branches]
        branches = engine.transition(transition, inputs, stage[0])
        owned = [layer is not None for layer in transition]  # others are the caller's
        for module in stage:
            branches = engine.hr_module(module, branches, owned)
            owned = None if module.fuse_layers is None else [True] * len(branches)
        out = engine.head(head, branches, need_out)
    return branches, out
