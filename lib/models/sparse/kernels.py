"""Numerical kernels of sparse execution on flat channels-last feature rows.

- ``fold_batch_norm``: a convolution followed by an inference BatchNorm is one
  convolution with a bias, so BN costs nothing at the computed pixels.
- ``gather_rows`` + ``rows_matmul``: a convolution at selected output pixels is an
  im2col gather of their input neighbourhoods (one matrix, n x k*k*C) and one GEMM.
- ``rbf_fill_rows``: the RBF fill of ADP-C Sec. 3.3 at selected skipped pixels, as a
  sparse (CSR) product with the computed outputs.
"""
import warnings

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


def fold_batch_norm(conv, bn):
    """``bn(conv(x))`` as one convolution with an inner and an outer bias.

    The masked convolution fills skipped pixels from ``y*m`` where y includes the
    convolution's own bias, and BatchNorm acts after the fill. With BN's scale a and
    shift c: at computed pixels ``a*y + c``, at skipped ones ``R(a*y*m) + c``. So the
    folded weight a*W and inner bias a*b make z = a*y (filled like y), and the outer bias
    c is added everywhere after the fill.

    Args:
        conv (nn.Conv2d): the convolution (bias optional).
        bn (nn.BatchNorm2d | None): the BatchNorm that follows it, or None.
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


def gemm_weight(weight):
    """C_out x C_in x k x k -> C_out x (k*k*C_in) x 1 x 1, matching ``gather_rows``'s
    column order (kernel offsets row-major, channels fastest)."""
    c_out = weight.shape[0]
    return weight.permute(0, 2, 3, 1).reshape(c_out, -1, 1, 1).contiguous()


def gather_rows(x_rows, taps):
    """im2col at the active pixels: n_active x (k*k*C) matrix of input neighbourhoods."""
    cols = x_rows.index_select(0, taps.index)  # n_active*k*k x C
    if taps.outside is not None:
        cols.index_fill_(0, taps.outside, 0)  # zero padding of the convolution
    return cols.view(-1, taps.area * x_rows.shape[1])


def rows_matmul(rows, weight, bias=None):
    """``rows @ weight^T (+ bias)`` for n x K rows and a C_out x K x 1 x 1 weight.

    On CPU the product runs as a 1x1 convolution over an n x 1 channels-last "image":
    oneDNN's convolution is faster than the BLAS GEMM for these tall, narrow shapes.
    """
    n, k = rows.shape
    if n == 0 or rows.device.type != 'cpu':
        out = rows @ weight.view(weight.shape[0], k).t()
        return out if bias is None else out + bias
    image = rows.view(1, n, 1, k).permute(0, 3, 1, 2)  # 1 x K x n x 1, channels-last
    out = F.conv2d(image, weight, bias)  # 1 x C_out x n x 1
    return out.permute(0, 2, 3, 1).reshape(n, weight.shape[0])


def rbf_fill_rows(pattern, z_rows, Lambda, square_dis):
    """RBF fill ``R(z)`` at ``pattern.rows`` (n_rows x C), ``z`` being zero where skipped.

    Args:
        pattern (FillPattern): which skipped pixels, and their active neighbours.
        z_rows (Tensor): N*h*w x C layer output (before bias), zero at skipped pixels.
        Lambda (Tensor), square_dis (Tensor): the masked convolution's RBF parameters.
    """
    kernel = rbf_kernel(Lambda, square_dis).to(z_rows.dtype)
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='.*[Ss]parse CSR tensor support.*')
        return torch.sparse.mm(pattern.matrix(kernel), z_rows)


def resample_rows(matrix, x_rows):
    """Rows of a resampled map: a CSR resampling ``matrix`` times the source rows."""
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='.*[Ss]parse CSR tensor support.*')
        return torch.sparse.mm(matrix, x_rows)
