"""Numerical kernels of sparse execution on flat channels-last feature rows.

- ``fold_batch_norm``: a convolution followed by an inference BatchNorm is one
  convolution with a bias, so BN costs nothing at the computed pixels.
- ``conv_rows``: a convolution at selected output pixels is an im2col gather of their
  input neighbourhoods (n x k*k*C) and a GEMM, done in cache-sized blocks of pixels.
- ``rows_matmul``: the GEMM of pointwise (1x1) convolutions on rows.
- ``rbf_fill_rows``: the RBF fill of ADP-C Sec. 3.3 at selected skipped pixels, as a
  sparse (CSR) product with the computed outputs.

All of them compute in the type of their inputs (the engine's type, ``precision``), but
the CSR products, which sum in float32 at least (``sum_dtype``).
"""
import threading

import torch
import torch.nn.functional as F

from ..masked_conv import rbf_kernel


def flat_rows(x):
    """N x C x H x W channels-last map -> its N*H*W x C row view (no copy)."""
    n, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(n * h * w, c)


def from_rows(rows, batch, size):
    """N*H*W x C rows -> N x C x H x W channels-last map (no copy)."""
    h, w = size
    return rows.view(batch, h, w, rows.shape[1]).permute(0, 3, 1, 2)


def channels_last(x):
    return x.contiguous(memory_format=torch.channels_last)


# Channels a per-channel operand must span so that PyTorch's CPU kernels stay vectorised:
# with a broadcast operand shorter than two bfloat16 vectors (32 lanes each), they take a
# scalar path (48 channels: a bias added 5x slower than with 96).
WIDE_ROWS = 64


def per_channel_(op, x, values):
    """``x.op(values)`` in place, ``values`` (C) applied per channel; returns ``x``.

    Args:
        op (str): an in-place elementwise Tensor method, e.g. 'add_' or 'clamp_min_'.
        x (Tensor): an N x C x H x W channels-last map, or n x C contiguous rows. Rows
            are viewed k at a time (n/k x k*C, ``values`` repeated k times) until they
            span WIDE_ROWS channels.
    """
    c = x.shape[1]
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        rows = x.permute(0, 2, 3, 1).view(-1, c)
    elif x.dim() == 2 and x.is_contiguous():
        rows = x
    else:
        getattr(x, op)(values.view(1, -1, *[1] * (x.dim() - 2)))
        return x
    n, k = rows.shape[0], 1
    while k * c < WIDE_ROWS and n % (2 * k) == 0:
        k *= 2
    getattr(rows.view(n // k, k * c), op)(values.repeat(k) if k > 1 else values)
    return x


def fold_batch_norm(conv, bn):
    """``bn(conv(x))`` as one convolution with an inner and an outer bias.

    The masked convolution fills skipped pixels from ``y*m`` where y includes the
    convolution's own bias, and BatchNorm acts after the fill. With BN's scale a and
    shift c: at computed pixels ``a*y + c``, at skipped ones ``R(a*y*m) + c``. So the
    folded weight a*W and inner bias a*b make z = a*y (filled like y), and the outer bias
    c is added everywhere after the fill.

    Args:
        conv (nn.Conv2d): the convolution (bias optional).
        bn (nn.BatchNorm2d | nn.SyncBatchNorm | None): the BatchNorm that follows it
            (in eval mode), or None.
    Returns:
        (Tensor, Tensor | None, Tensor | None): C_out x C_in x k x k weight, inner bias
        (before the fill), outer bias (after it).
    """
    weight, bias = conv.weight, conv.bias
    if bn is None:
        return weight, bias, None
    if bn.running_var is None:
        raise ValueError('sparse execution needs BatchNorm running statistics '
                         '(track_running_stats=True)')
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    inner = None if bias is None else bias * scale
    return weight * scale.view(-1, 1, 1, 1), inner, shift


# Bytes of one block of rows (an im2col block, or a block of pixels through a chain of
# 1x1 convolutions): small enough to stay in cache from one operation to the next. One
# such buffer replaces a whole n x k*k*C matrix, whose fresh pages alone (page faults)
# cost about as much as its GEMM at W48 sizes.
ROW_BLOCK_BYTES = 2 << 20

# CPU memory for the im2col blocks of ``conv_rows``, kept per thread (one per concurrent
# inference) and reused by every convolution: a fresh block per convolution page-faults
# on all its pages (about 15 MB of faults in W48's segment 2 at 10% density). Every
# block is written before it is read, so nothing carries from one call to the next.
# (CUDA's caching allocator reuses memory by itself.)
_cpu_blocks = threading.local()


def _block(rows, channels, like):
    """A rows x channels matrix of ``like``'s dtype and device, contents undefined."""
    numel = rows * channels
    if like.device.type != 'cpu':
        return like.new_empty(rows, channels)
    memory = getattr(_cpu_blocks, 'memory', None)
    if memory is None or memory.numel() < numel or memory.dtype != like.dtype:
        memory = like.new_empty(max(numel, ROW_BLOCK_BYTES // like.element_size()))
        _cpu_blocks.memory = memory
    return memory[:numel].view(rows, channels)


def conv_rows(x_rows, taps, matrix, bias=None, out=None):
    """A convolution at its active output pixels: ``im2col(x) @ matrix^T (+ bias)``.

    Args:
        x_rows (Tensor): the input as rows (N*H*W x C, or any rows ``taps`` index).
        taps (ConvTaps): the input rows each output pixel reads.
        matrix (Tensor): C_out x (k*k*C) folded weight.
        bias (Tensor | None): C_out.
        out (Tensor | None): n_active x C_out destination.
    Returns:
        Tensor: n_active x C_out.
    """
    area, channels = taps.area, x_rows.shape[1]
    n = taps.index.numel() // area
    if out is None:
        out = x_rows.new_empty(n, matrix.shape[0])
    step = max(1, n) if x_rows.device.type != 'cpu' else \
        max(64, ROW_BLOCK_BYTES // (area * channels * x_rows.element_size()))
    block = _block(min(n, step) * area, channels, x_rows)
    for start, stop, index, outside in taps.blocks(step):
        cols = torch.index_select(x_rows, 0, index, out=block[:index.numel()])
        if outside is not None:  # zero padding of the convolution
            cols.index_fill_(0, outside, 0)
        cols = cols.view(stop - start, area * channels)
        if bias is None:
            torch.mm(cols, matrix.t(), out=out[start:stop])
        else:
            torch.addmm(bias, cols, matrix.t(), out=out[start:stop])
    return out


def rows_matmul(rows, matrix, bias=None):
    """``rows @ matrix^T (+ bias)``: n x K rows, C_out x K weight matrix -> n x C_out.

    On CPU, for narrow outputs (up to 96 channels), the product runs as a 1x1
    convolution over an n x 1 channels-last "image": oneDNN beats the BLAS GEMM there
    (measured on W48 shapes); for wider outputs BLAS is as fast and needs no reorder.
    """
    n, k = rows.shape
    c_out = matrix.shape[0]
    if n < 256 or c_out > 96 or rows.device.type != 'cpu':
        return torch.addmm(bias, rows, matrix.t()) if bias is not None else rows @ matrix.t()
    image = rows.view(1, n, 1, k).permute(0, 3, 1, 2)  # 1 x K x n x 1, channels-last
    out = F.conv2d(image, matrix.view(c_out, k, 1, 1), bias)  # 1 x C_out x n x 1
    return out.permute(0, 2, 3, 1).reshape(n, c_out)


# Fill weights below this fraction of the largest one are dropped: they change a fill by
# less than float32 rounding of its terms (2^-24 is float32's unit roundoff).
NEGLIGIBLE_FILL_WEIGHT = 2.0 ** -24


def fill_kernel(conv):
    """The RBF fill kernel of a masked convolution and its reach: (7x7 kernel with
    negligible weights zeroed, largest Chebyshev distance of a weight kept), or
    (None, 0) when the layer has no fill.

    The fill's reach follows Lambda: at the initial Lambda = 3 the weights beyond the 3x3
    neighbourhood are below 1e-11 of the largest, so a skipped pixel farther than 1 pixel
    from every computed one is filled with exactly what the dense fill gives to float
    precision, 0; smaller Lambdas reach up to the 7x7 window's edge.
    """
    if not getattr(conv, 'rbf', False):
        return None, 0
    kernel = rbf_kernel(conv.Lambda, conv.square_dis)
    if kernel.max() <= 0:
        return None, 0
    kept = kernel >= kernel.max() * NEGLIGIBLE_FILL_WEIGHT
    kernel = torch.where(kept, kernel, torch.zeros_like(kernel))
    centre = kernel.shape[-1] // 2
    dy, dx = kept.nonzero(as_tuple=True)
    reach = int(torch.maximum((dy - centre).abs(), (dx - centre).abs()).max())
    return kernel, reach


def sum_dtype(dtype):
    """The type CSR products (fills, resampling) of ``dtype`` values compute in: float32
    for bfloat16 and float16, whose CSR products have no CPU kernel, and whose 8 or 11
    bits would also lose most of a fill's small far terms; float64 stays float64."""
    return torch.promote_types(dtype, torch.float32)


def rbf_fill_rows(pattern, z_rows, kernel, compact, first=None, out=None):
    """RBF fill ``R(z*m)`` at ``pattern.rows`` (the ``first`` of them if given): n_rows x C.

    Args:
        pattern (FillPattern): which skipped pixels, and their active neighbours.
        z_rows (Tensor): the layer output before the outer bias, either at the active
            pixels only (n_active x C, ``compact``) or at all pixels (N*h*w x C).
        kernel (Tensor): the layer's 7x7 fill kernel (``fill_kernel``).
        compact (bool): which of the two ``z_rows`` is.
        out (Tensor | None): contiguous n_rows x C destination.
    """
    matrix = pattern.matrix(kernel.to(sum_dtype(z_rows.dtype)), compact, first)
    return csr_mm(matrix, z_rows, out)


def resample_rows(matrix, x_rows):
    """Rows of a resampled map: a CSR resampling ``matrix`` times the source rows."""
    return csr_mm(matrix, x_rows)


def csr_mm(matrix, dense, out=None):
    """``matrix @ dense`` for a CSR ``matrix``, in ``dense``'s type, into ``out``
    (contiguous) if given. It computes in ``matrix``'s type (``sum_dtype``): a ``dense``
    of a narrower type is widened first.

    On CPU a product of ``matrix``'s type goes straight into its destination:
    ``torch.sparse.mm`` allocates and copies its result separately, which made the fills
    of a W48 segment about 20% slower.
    """
    if dense.dtype != matrix.dtype:
        product = csr_mm(matrix, dense.to(matrix.dtype))
        return product.to(dense.dtype) if out is None else out.copy_(product)
    if dense.device.type != 'cpu':
        product = torch.sparse.mm(matrix, dense)
        return product if out is None else out.copy_(product)
    if out is None:
        out = dense.new_empty(matrix.shape[0], dense.shape[1])
    return torch.addmm(out, matrix, dense, beta=0, out=out)
