"""Index geometry of sparse execution: which pixels a masked layer computes and reads.

Everything here depends only on a segment's masks and on layer shapes, never on weights,
so one ``SegmentGeometry`` is built per segment call and shared by every layer of that
segment (ADP-C Sec. 3.3: one mask per (segment, size)). Nothing outlives the call.

Feature maps are addressed as flat channels-last rows: pixel (n, i, j) of an N x C x H x W
map is row ``(n * H + i) * W + j`` of its N*H*W x C view.
"""
import functools

import torch
import torch.nn.functional as F

from ..masked_conv import RBF_SIZE

RBF_RADIUS = RBF_SIZE // 2


def _coords(rows, size):
    """(n, i, j) of flat rows of a map of spatial ``size`` (h, w)."""
    h, w = size
    return rows // (h * w), (rows // w) % h, rows % w


def _dilate(keep, radius):
    """N x h x w booleans dilated by a (2 radius + 1)^2 square, one axis at a time
    (shifted ORs: much cheaper than a max pool on maps this small)."""
    for dim in (2, 1):
        out = keep.clone()
        length = keep.shape[dim]
        for d in range(1, min(radius, length - 1) + 1):
            out.narrow(dim, d, length - d).logical_or_(keep.narrow(dim, 0, length - d))
            out.narrow(dim, 0, length - d).logical_or_(keep.narrow(dim, d, length - d))
        keep = out
    return keep


class MaskGeometry:
    """The pixel sets of one mask.

    Args:
        mask (Tensor): N x 1 x h x w mask of 0s and 1s (1 = compute).

    Attributes:
        active (Tensor): flat rows where the mask is 1, ascending (int64).
        density (float): fraction of active pixels over the batch.
    """

    def __init__(self, mask):
        self.mask = mask
        self.batch, _, h, w = mask.shape
        self.size = (h, w)
        self.numel = self.batch * h * w
        keep = mask.reshape(-1) > 0.5
        self.keep = keep
        self.active = keep.nonzero().squeeze(1)
        self.density = self.active.numel() / max(1, self.numel)
        self._rings = {}
        self._position = None
        self._skipped = None

    @property
    def skipped(self):
        """Flat rows where the mask is 0, ascending (int64)."""
        if self._skipped is None:
            self._skipped = (~self.keep).nonzero().squeeze(1)
        return self._skipped

    @property
    def position(self):
        """Index of each pixel in ``active`` (-1 where skipped): N*h*w int64."""
        if self._position is None:
            self._position = torch.full((self.numel,), -1, dtype=torch.int64,
                                        device=self.active.device)
            self._position[self.active] = torch.arange(self.active.numel(),
                                                       device=self.active.device)
        return self._position

    def padded_position(self, pad):
        """``position`` as an N x (h+2pad) x (w+2pad) map, -1 in the padding."""
        h, w = self.size
        out = torch.full((self.batch, h + 2 * pad, w + 2 * pad), -1, dtype=torch.int64,
                         device=self.active.device)
        out[:, pad:pad + h, pad:pad + w] = self.position.view(self.batch, h, w)
        return out

    def ring_mask(self, radius):
        """N*h*w booleans: skipped pixels within Chebyshev distance ``radius`` of an active
        pixel."""
        if radius not in self._rings:
            near = _dilate(self.keep.view(self.batch, *self.size), radius)
            self._rings[radius] = near.reshape(-1) & ~self.keep
        return self._rings[radius]

    def ring(self, radius):
        """Flat rows of ``ring_mask``: where an RBF fill is non-zero (radius 3), or where a
        3x3 convolution reads (radius 1)."""
        return self.ring_mask(radius).nonzero().squeeze(1)


class FillPattern:
    """Sparsity pattern of the RBF fill ``R(y*m)`` restricted to some skipped pixels.

    Row r of the fill is ``sum_o k[o] * z[rows[r] + o]`` over the offsets o within
    ``radius`` (Chebyshev) whose pixel is active (``z`` is zero elsewhere). The pattern is
    stored as CSR, its columns either all pixels or the active pixels only; a layer only
    supplies its 7x7 kernel ``k`` (which depends on its own Lambda), zero beyond
    ``radius``.

    Args:
        geom (MaskGeometry): the mask.
        rows (Tensor): flat rows (skipped pixels) where the fill is needed.
        radius (int): the fill's reach, at most 3.
    """

    def __init__(self, geom, rows, radius=RBF_RADIUS):
        h, w = geom.size
        self.rows = rows
        self.numel = geom.numel
        r = radius
        wp = w + 2 * r  # in a map padded by r, neighbours are fixed offsets, no bounds
        n, i, j = _coords(rows, geom.size)
        d = torch.arange(-r, r + 1, device=rows.device)
        offsets = (d[:, None] * wp + d[None, :]).reshape(-1)  # row-major window order
        padded = (n * (h + 2 * r) + i + r) * wp + j + r
        position = geom.padded_position(r).view(-1)[padded[:, None] + offsets]  # rows x taps
        valid = position >= 0  # active neighbours
        counts = valid.sum(1)
        self.crow = torch.zeros(rows.numel() + 1, dtype=torch.int64, device=rows.device)
        self.crow[1:] = counts.cumsum(0)
        self.col_active = position[valid]  # row-major, so each row's columns ascend
        self.col = geom.active[self.col_active]  # ascending too: active is sorted
        self.num_active = geom.active.numel()
        kernel_index = ((d[:, None] + RBF_RADIUS) * RBF_SIZE + d[None, :] + RBF_RADIUS)
        self.offset = kernel_index.reshape(1, -1).expand_as(valid)[valid]

    def matrix(self, kernel, compact=False, first=None):
        """The fill for a 7x7 ``kernel`` as a CSR matrix: rows x active pixels when
        ``compact``, rows x all N*h*w pixels otherwise; only the ``first`` rows if given."""
        rows = self.rows.numel() if first is None else first
        crow = self.crow[:rows + 1]
        nnz = int(crow[-1]) if first is not None else self.offset.numel()
        values = kernel.reshape(-1).index_select(0, self.offset[:nnz])
        col = (self.col_active if compact else self.col)[:nnz]
        columns = self.num_active if compact else self.numel
        return torch.sparse_csr_tensor(crow, col, values, size=(rows, columns),
                                       check_invariants=False)


class ConvTaps:
    """Input rows read by a convolution at its active output pixels (im2col indices).

    Args:
        geom (MaskGeometry): mask at the convolution's output size.
        in_size (tuple): (H, W) of the input.
        kernel, stride, padding (int): square convolution geometry.

    Attributes:
        index (Tensor): n_active * k*k input rows, offsets (row-major) fastest.
        outside (Tensor): positions in ``index`` that fall in the zero padding (they point
            at row 0 and must be zeroed after gathering).
    """

    def __init__(self, geom, in_size, kernel, stride, padding):
        h_in, w_in = in_size
        n, i, j = _coords(geom.active, geom.size)
        d = torch.arange(kernel, device=n.device)
        ii = (i * stride - padding)[:, None] + d.repeat_interleave(kernel)
        jj = (j * stride - padding)[:, None] + d.repeat(kernel)
        inside = (ii >= 0) & (ii < h_in) & (jj >= 0) & (jj < w_in)
        flat = (n[:, None] * h_in + ii.clamp(0, h_in - 1)) * w_in + jj.clamp(0, w_in - 1)
        self.area = kernel * kernel
        self.index = flat.reshape(-1)
        outside = (~inside).reshape(-1).nonzero().squeeze(1)
        self.outside = outside if outside.numel() else None
        self._blocks = {}

    def blocks(self, step):
        """The output pixels in blocks of ``step``: (start, stop, index, outside) with the
        block's input rows and its padding taps (relative to the block, or None)."""
        if step not in self._blocks:
            area, n = self.area, self.index.numel() // self.area
            starts = list(range(0, n, step))
            edges = [0] * (len(starts) + 1)
            if self.outside is not None:
                edges = torch.searchsorted(self.outside, torch.tensor(
                    starts + [n], device=self.index.device) * area).tolist()
            self._blocks[step] = [
                (start, min(n, start + step), self.index[start * area:(start + step) * area],
                 None if edges[b] == edges[b + 1] else
                 self.outside[edges[b]:edges[b + 1]] - start * area)
                for b, start in enumerate(starts)]
        return self._blocks[step]


class NearSet:
    """The pixels where a chain of masked residual blocks is not a per-channel function
    of its input: the active pixels, then the skipped pixels within ``radius`` of one
    (the reach of the RBF fill, at least 1), those next to an active pixel first.

    Beyond it every masked convolution gives its bias, so a block's output there is
    ``relu(x + bias)`` of its input x; a branch keeps explicit values only here.

    Args:
        geom (MaskGeometry): the blocks' mask.
        radius (int): reach of the RBF fill (0 without fill, see ``fill_kernel``).

    Attributes:
        rows (Tensor): flat rows, in the order above.
        num_active, num_inner (int): how many of ``rows`` are active, and active or
            next to an active pixel (what a 3x3 convolution at the active pixels reads).
        taps (ConvTaps): a 3x3, stride-1 convolution's reads at the active pixels, as
            positions in ``rows``.
        fill (FillPattern): RBF fill at the skipped ``rows``, in order.
    """

    def __init__(self, geom, radius):
        ring1 = geom.ring_mask(1)
        farther = geom.ring_mask(max(radius, 1)) & ~ring1
        self.rows = torch.cat([geom.active, ring1.nonzero().squeeze(1),
                               farther.nonzero().squeeze(1)])
        self.num_active = geom.active.numel()
        self.num_inner = self.num_active + int(ring1.sum())
        position = torch.zeros(geom.numel, dtype=torch.int64, device=self.rows.device)
        position[self.rows] = torch.arange(self.rows.numel(), device=self.rows.device)
        taps = ConvTaps(geom, geom.size, 3, 1, 1)
        taps.index = position[taps.index]  # padding taps point somewhere, then are zeroed
        self.taps = taps
        self.fill = FillPattern(geom, self.rows[self.num_active:], radius)


def _bilinear_1d(in_len, out_len, device):
    """out_len x in_len matrix of PyTorch's bilinear resize (align_corners False)."""
    scale = in_len / out_len
    src = ((torch.arange(out_len, device=device, dtype=torch.float64) + 0.5) * scale - 0.5)
    src = src.clamp(min=0)
    i0 = src.floor().long().clamp(max=in_len - 1)
    i1 = (i0 + 1).clamp(max=in_len - 1)
    lam = (src - i0).clamp(0, 1)
    m = torch.zeros(out_len, in_len, dtype=torch.float64, device=device)
    rows = torch.arange(out_len, device=device)
    m.index_put_((rows, i0), 1 - lam, accumulate=True)
    m.index_put_((rows, i1), lam, accumulate=True)
    return m


def _pool_1d(in_len, device):
    """floor(in_len/2) x in_len matrix of a 2-wide, stride-2 average."""
    out_len = in_len // 2
    m = torch.zeros(out_len, in_len, dtype=torch.float64, device=device)
    rows = torch.arange(out_len, device=device)
    m[rows, 2 * rows] = 0.5
    m[rows, 2 * rows + 1] = 0.5
    return m


def resample_matrices(in_size, ops, device):
    """Per-axis linear maps of a chain of resampling ops applied to an (H, W) map.

    Args:
        in_size (tuple): (H, W) of the source.
        ops (list): ('resize', (h, w)) for a bilinear resize (align_corners False) or
            ('pool2',) for a 2x2 average pool with stride 2, in order of application.
    Returns:
        (Tensor, Tensor): h_out x H and w_out x W float64 matrices.
    """
    mh = torch.eye(in_size[0], dtype=torch.float64, device=device)
    mw = torch.eye(in_size[1], dtype=torch.float64, device=device)
    for op in ops:
        if op[0] == 'resize':
            h, w = op[1]
            if h != mh.shape[0]:
                mh = _bilinear_1d(mh.shape[0], h, device) @ mh
            if w != mw.shape[0]:
                mw = _bilinear_1d(mw.shape[0], w, device) @ mw
        elif op[0] == 'pool2':
            mh = _pool_1d(mh.shape[0], device) @ mh
            mw = _pool_1d(mw.shape[0], device) @ mw
        else:
            raise ValueError(f'unknown resampling op {op!r}')
    return mh, mw


def _taps_1d(m, dtype):
    """Non-zero columns of each row of a 1-D map (ascending, padded with zero weights)
    and their weights in ``dtype``."""
    width = max(1, int((m != 0).sum(1).max().item()))
    index = m.abs().topk(width, dim=1).indices.sort(dim=1).values
    return index, m.gather(1, index).to(dtype)


@functools.lru_cache(maxsize=64)
def _pixel_taps(in_size, ops, device, dtype):
    """Resampling of one H x W image by ``ops`` (see ``resample_matrices``), per output
    pixel in row-major order: its source pixels (flat, ascending) and their weights.
    Depends on shapes only, so it is built once per process and shape."""
    mh, mw = resample_matrices(in_size, ops, device)
    (ih, wh), (iw, ww) = _taps_1d(mh, dtype), _taps_1d(mw, dtype)
    pixels = mh.shape[0] * mw.shape[0]
    col = (ih[:, None, :, None] * in_size[1] + iw[None, :, None, :]).reshape(pixels, -1)
    val = (wh[:, None, :, None] * ww[None, :, None, :]).reshape(pixels, -1)
    return (mh.shape[0], mw.shape[0]), col, val


def resample_matrix(rows, out_size, batch, in_size, ops, dtype):
    """CSR matrix that maps a source map (N*H*W rows) to ``rows`` of the resampled map.

    Args:
        rows (Tensor): flat rows of the output map (spatial ``out_size``).
        out_size (tuple): (h, w) after ``ops``.
        batch (int): N.
        in_size (tuple): (H, W) of the source.
        ops (list): see ``resample_matrices``.
        dtype (torch.dtype): of the values.
    """
    size, col, val = _pixel_taps(tuple(in_size), tuple(tuple(op) for op in ops),
                                 rows.device, dtype)
    if size != tuple(out_size):
        raise ValueError(f'resampling {in_size} by {ops} gives {size}, '
                         f'expected {tuple(out_size)}')
    pixels = size[0] * size[1]
    col, val = col.index_select(0, rows % pixels), val.index_select(0, rows % pixels)
    if batch > 1:  # images follow each other in the flat source rows
        col = col + (rows // pixels * (in_size[0] * in_size[1]))[:, None]
    crow = torch.arange(0, col.numel() + 1, col.shape[1], device=rows.device)
    return torch.sparse_csr_tensor(crow, col.reshape(-1), val.reshape(-1),
                                   size=(rows.numel(), batch * in_size[0] * in_size[1]),
                                   check_invariants=False)


class SegmentGeometry:
    """Lazily built, per-call cache of the geometry of one segment's masks.

    Args:
        masks: the segment's mask provider (``ConfidenceMasks`` or anything with
            ``at(size)`` returning N x 1 x h x w masks).
    """

    def __init__(self, masks):
        self.masks = masks
        self._geoms = {}
        self._fills = {}
        self._taps = {}
        self._near = {}
        self._reach_rows = {}
        self._upsampling = {}

    def mask(self, size):
        size = tuple(int(s) for s in size)
        if size not in self._geoms:
            self._geoms[size] = MaskGeometry(self.masks.at(size))
        return self._geoms[size]

    def fill(self, size, ring, reach):
        """The fill of reach ``reach`` at the skipped pixels within ``ring`` of an active
        one."""
        key = (tuple(size), ring, reach)
        if key not in self._fills:
            geom = self.mask(size)
            self._fills[key] = FillPattern(geom, geom.ring(ring), reach)
        return self._fills[key]

    def taps(self, out_size, in_size, kernel, stride, padding):
        key = (tuple(out_size), tuple(in_size), kernel, stride, padding)
        if key not in self._taps:
            self._taps[key] = ConvTaps(self.mask(out_size), in_size, kernel, stride, padding)
        return self._taps[key]

    def reach_rows(self, size, reach):
        """The active pixels, then the skipped ones within ``reach`` of them."""
        key = (tuple(size), reach)
        if key not in self._reach_rows:
            geom = self.mask(size)
            self._reach_rows[key] = torch.cat([geom.active, geom.ring(reach)]) if reach \
                else geom.active
        return self._reach_rows[key]

    def upsampling(self, size, reach, size_to, dtype):
        """Bilinear upsampling (align_corners False) of a map that is constant but at
        ``reach_rows(size, reach)``: the rows of the ``size_to`` map that read those
        pixels, and the CSR matrix giving them from the ``size`` map."""
        key = (tuple(size), reach, tuple(size_to), dtype)
        if key not in self._upsampling:
            geom = self.mask(size)
            source = torch.zeros(geom.numel, device=geom.active.device)
            source[self.reach_rows(size, reach)] = 1
            touched = F.interpolate(source.view(geom.batch, 1, *geom.size), size=size_to,
                                    mode='bilinear', align_corners=False)
            rows = touched.reshape(-1).nonzero().squeeze(1)
            self._upsampling[key] = rows, resample_matrix(
                rows, size_to, geom.batch, size, [('resize', tuple(size_to))], dtype)
        return self._upsampling[key]

    def near(self, size, radius):
        key = (tuple(size), radius)
        if key not in self._near:
            self._near[key] = NearSet(self.mask(size), radius)
        return self._near[key]
