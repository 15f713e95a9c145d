"""Every resize that decides a result, against a hand computation of the original's rule:
bilinear with half-pixel centres (align_corners=False) for features, logits and images;
nearest neighbour (the top-left source pixel of each cell) for confidence masks.

A resize with align_corners=True, or another mode, gives other values at almost every
pixel; through an argmax it changes only the pixels near a class boundary, which an
mIoU floor may miss."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from evaluation.loop import evaluate
from models.confidence import confidence_mask
from models.resize import upsample_to
from utils.distributed import DistContext
from rounding import bilinear_error_bound
from tiny import tiny_model

U64 = 2.0 ** -53  # unit roundoff of float64


# Float32 results held to bounds that other summation orders must also meet.
pytestmark = pytest.mark.numerics


def source_coordinates(out_size, in_size):
    """Half-pixel centres: output pixel i reads source coordinate (i + 0.5) * in / out
    - 0.5, clamped at 0; returns the two source pixels and the weight of the second."""
    src = np.maximum((np.arange(out_size) + 0.5) * in_size / out_size - 0.5, 0.0)
    low = np.floor(src).astype(int)
    return low, np.minimum(low + 1, in_size - 1), src - low


def bilinear(x, size):
    """Hand bilinear resize (half-pixel centres) of N x C x H x W float64 ``x``."""
    x = np.asarray(x, dtype=np.float64)
    y0, y1, wy = source_coordinates(size[0], x.shape[2])
    x0, x1, wx = source_coordinates(size[1], x.shape[3])
    rows = x[:, :, y0] * (1 - wy)[:, None] + x[:, :, y1] * wy[:, None]
    return torch.from_numpy(rows[..., x0] * (1 - wx) + rows[..., x1] * wx)


def nearest(x, size):
    """Hand nearest resize: output pixel i takes source pixel floor(i * in / out)."""
    rows = np.floor(np.arange(size[0]) * x.shape[2] / size[0]).astype(int)
    cols = np.floor(np.arange(size[1]) * x.shape[3] / size[1]).astype(int)
    return x[:, :, rows][..., cols]


SIZES = [((3, 5), (7, 12)),     # upsampling by an uneven factor
         ((4, 4), (16, 16)),    # x4, logits to labels
         ((8, 6), (3, 4))]      # downsizing, an image for a scale below 1


@pytest.mark.parametrize('sizes', SIZES)
def test_bilinear_resize_uses_half_pixel_centres(sizes):
    # models.resize.upsample_to is the one resize of HRNet's fusions, the loss, the
    # metrics and the evaluation passes.
    x = torch.randn(2, 3, *sizes[0], generator=torch.Generator().manual_seed(0),
                    dtype=torch.float64)
    got = upsample_to(x, sizes[1])
    assert got.shape == (2, 3, *sizes[1])
    assert (got - bilinear(x, sizes[1])).abs().max() <= bilinear_error_bound(x, U64)


def test_flex_head_upsamplings_use_half_pixel_centres():
    ups = [m for m in tiny_model('rh').modules() if isinstance(m, nn.Upsample)]
    assert ups, 'flex heads upsample'
    x = torch.randn(1, 2, 3, 5, generator=torch.Generator().manual_seed(1),
                    dtype=torch.float64)
    for up in ups:
        assert (up(x) - bilinear(x, (6, 10))).abs().max() <= bilinear_error_bound(x, U64)


@pytest.mark.parametrize('size', [(4, 4), (2, 8), (3, 5), (16, 32)])
def test_confidence_masks_take_the_nearest_top_left_pixel(size):
    # Masks are needed at the sizes of every branch (1/4 to 1/32): each mask pixel takes
    # the confidence of logits pixel floor(i * in / out).
    logits = torch.randn(2, 5, 8, 16, generator=torch.Generator().manual_seed(2)) * 3
    confidence = torch.softmax(nearest(logits, size), dim=1).amax(dim=1, keepdim=True)
    # A threshold in the widest gap between the middle confidences: float32 rounding of
    # the softmax (a few u) cannot move a pixel across it.
    values = confidence.flatten().sort().values
    middle = values[len(values) // 4: 3 * len(values) // 4 + 1]
    i = int((middle[1:] - middle[:-1]).argmax())
    threshold = ((middle[i] + middle[i + 1]) / 2).item()
    mask = confidence_mask(logits, size, 'conf_thre', threshold)
    assert torch.equal(mask, (confidence <= threshold).float())
    assert 0 < mask.mean() < 1


class FixedLogits(nn.Module):
    """Stand-in network: the same logits at every one of its four exits."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, x):
        return [self.logits] * 4


class Predictions:
    """Stand-in submission writer that keeps the full-size predictions of exit 4."""
    exits = (4,)

    def __init__(self):
        self.kept = {}

    def add(self, k, name, prediction):
        self.kept[name] = prediction


def test_evaluation_predicts_on_logits_upsampled_with_half_pixel_centres():
    num_classes, ignore = 3, 255
    logits = torch.randn(1, num_classes, 8, 8, generator=torch.Generator().manual_seed(3))
    scores = bilinear(logits, (32, 32))
    top2 = scores.topk(2, dim=1).values
    # Labels: the hand prediction, ignored where float32 rounding of the resize (twice
    # the bound: both logits move) could reorder the two best classes.
    labels = scores.argmax(dim=1)
    labels[top2[:, 0] - top2[:, 1] <= 2 * bilinear_error_bound(logits)] = ignore
    other = torch.nn.functional.interpolate(logits.double(), size=(32, 32), mode='bilinear',
                                            align_corners=True).argmax(dim=1)
    assert (other != labels)[labels != ignore].any(), 'the test tells the two rules apart'

    writer = Predictions()
    loader = [(torch.zeros(1, 3, 32, 32), labels, ['x'])]
    matrices = evaluate(FixedLogits(logits), loader, num_classes, ignore, DistContext(),
                        writer=writer)
    for matrix in matrices:  # every valid pixel counted as correct
        assert torch.equal(matrix.mat, torch.diag(torch.bincount(
            labels[labels != ignore], minlength=num_classes)))
    valid = (labels != ignore)[0].numpy()
    assert (writer.kept['x'][valid] == labels[0].numpy()[valid]).all()
