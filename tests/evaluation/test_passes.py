"""Flip, multi-scale and sliding-window inference (evaluation.passes)."""
import os
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from evaluation.metrics import FlopsMeter
from evaluation.passes import EvalModes, crop_windows, multi_pass_inference, scaled_size, \
    window_starts
from models.flops import FlopsCounter

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'models'))
from tiny import mixed_mask_model  # noqa: E402


def plain_forward(model):
    return lambda x: (model(x), None)


U = 2.0 ** -24  # unit roundoff of float32


def upsampled(logits, size):
    return F.interpolate(logits, size=size, mode='bilinear', align_corners=False)


@pytest.fixture(scope='module')
def masked():
    """A tiny CA model (masked, copy aggregation, original heads, which take any input
    size) whose exits are confident about about half the pixels of ``image``."""
    torch.manual_seed(0)
    image = torch.randn(1, 3, 32, 64)
    model = mixed_mask_model('ca', image)
    model.execution = 'dense'  # the sparse engine gives the same logits, slower at this size
    return model, image


def test_window_starts_cover_the_input_with_a_stride_of_two_thirds():
    assert window_starts(10, 12) == [0] and window_starts(12, 12) == [0]
    assert window_starts(20, 12) == [0, 8]  # stride int(12 * 2/3) = 8, last flush with 20
    assert window_starts(30, 12) == [0, 8, 16, 18]
    for length in range(13, 60):
        starts = window_starts(length, 12)
        covered = set().union(*(range(s, s + 12) for s in starts))
        assert covered == set(range(length)) and starts[-1] == length - 12
        assert all(b - a <= 8 for a, b in zip(starts, starts[1:]))
    assert crop_windows((8, 20), (8, 12)) == [(0, 0, 8, 12), (0, 8, 8, 12)]
    assert crop_windows((8, 20), None) == [(0, 0, 8, 20)]


def test_scaled_size_sets_the_long_side_relative_to_the_base_size():
    assert scaled_size((1024, 2048), 0.75, 2048) == (768, 1536)
    assert scaled_size((1024, 2048), 1.0, 2048) == (1024, 2048)
    assert scaled_size((100, 50), 1.0, 300) == (300, 150)  # portrait: the height is long


@pytest.mark.parametrize('modes', [
    EvalModes(),
    EvalModes(scales=(1.0,), base_size=64),
    EvalModes(crop_size=(32, 64)),
    EvalModes(crop_size=(40, 100)),
], ids=['plain', 'scale-1', 'crop-equal', 'crop-larger'])
def test_one_whole_image_pass_is_the_plain_evaluation_exactly(masked, modes):
    model, image = masked
    with torch.no_grad():
        expected = model(image)
        result = multi_pass_inference(plain_forward(model), image, modes)
    assert result.forwards == 1
    for k in range(4):
        assert torch.equal(result.scores(k), upsampled(expected[k], (32, 64)))


class CropMean(nn.Module):
    """Known output: every exit's logits are [mean of the input, 0] over the whole crop,
    at the crop's resolution, so each crop's scores are a constant of its own."""

    def forward(self, x):
        level = x.mean().reshape(1, 1, 1, 1).expand(1, 1, *x.shape[-2:])
        logits = torch.cat([level, torch.zeros_like(level)], dim=1)
        return [logits * (k + 1) for k in range(4)]


def test_overlapping_crops_average_their_probabilities():
    # 8 x 20 input, crops 8 x 12: crop A covers columns 0-11, crop B columns 8-19.
    image = torch.zeros(1, 3, 8, 20)
    image[..., 10:] = 3.0
    result = multi_pass_inference(plain_forward(CropMean()), image,
                                  EvalModes(crop_size=(8, 12), pad_multiple=1))
    assert [p.windows for p in result.passes] == [[(0, 0, 8, 12), (0, 8, 8, 12)]]
    mean_a, mean_b = image[..., :12].double().mean(), image[..., 8:].double().mean()
    for k in range(4):
        p_a = torch.softmax(torch.stack([mean_a, mean_a * 0]) * (k + 1), 0)
        p_b = torch.softmax(torch.stack([mean_b, mean_b * 0]) * (k + 1), 0)
        expected = torch.empty(1, 2, 8, 20, dtype=torch.float64)
        expected[..., :8] = p_a[:, None, None]
        expected[..., 8:12] = ((p_a + p_b) / 2)[:, None, None]
        expected[..., 12:] = p_b[:, None, None]
        # float32: the crop means (sums of whole numbers, exact, then one division) and
        # the logits (k + 1)·mean carry 2u relative, |logit| <= 4 x 3, moving a 2-class
        # softmax by at most a quarter of that; the softmax itself 4u, the average 2u.
        bound = (12 * 2 / 4 + 4 + 2) * U
        assert (result.scores(k).double() - expected).abs().max() <= bound


def test_sliding_window_masked_model_runs_each_crop_with_its_own_masks(masked):
    model, image = masked
    modes = EvalModes(crop_size=(32, 32))  # 32 x 64: crops at columns 0, 21 and 32
    with torch.no_grad():
        result = multi_pass_inference(plain_forward(model), image, modes)
        crops = [model(image[..., left:left + 32]) for left in (0, 21, 32)]
    assert result.passes[0].windows == [(0, 0, 32, 32), (0, 21, 32, 32), (0, 32, 32, 32)]
    for k in range(4):
        probs = [upsampled(c[k], (32, 32)).softmax(1) for c in crops]
        total = torch.zeros(1, 19, 32, 64, dtype=torch.float64)
        count = torch.zeros(1, 1, 32, 64, dtype=torch.float64)
        for left, p in zip((0, 21, 32), probs):
            total[..., left:left + 32] += p.double()
            count[..., left:left + 32] += 1
        # The same crops, resizes and softmaxes; left are the float32 sum of at most 3
        # probabilities (2u each of at most 1) and the division by the count (u).
        assert (result.scores(k).double() - total / count).abs().max() <= 7 * U


class PixelWise(nn.Module):
    """A 1x1 convolution per exit: horizontally equivariant by construction."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.heads = nn.ModuleList(nn.Conv2d(3, 5, 1) for _ in range(4))

    def forward(self, x):
        return [head(F.avg_pool2d(x, 4)) for head in self.heads]


def test_flip_of_an_equivariant_model_changes_nothing():
    torch.manual_seed(2)
    image = torch.randn(1, 3, 32, 64)  # no padding, which only one side of a view gets
    model = PixelWise()
    with torch.no_grad():
        plain = multi_pass_inference(plain_forward(model), image, EvalModes())
        flipped = multi_pass_inference(plain_forward(model), image, EvalModes(flip=True))
    assert [p.flipped for p in flipped.passes] == [False, True]
    for k in range(4):
        # Two passes average probabilities; the one plain pass keeps its logits.
        assert torch.allclose(flipped.scores(k), plain.scores(k).softmax(1), atol=1e-6)


def test_flip_of_a_position_dependent_model_averages_the_mirror_image():
    ramp = torch.arange(8.0).reshape(1, 1, 1, 8)

    def forward(x):  # class 0 grows to the right of the input, whatever it shows
        logits = torch.cat([ramp.expand(1, 1, 2, 8), torch.zeros(1, 1, 2, 8)], dim=1)
        return [logits] * 4, None

    result = multi_pass_inference(forward, torch.zeros(1, 3, 2, 8),
                                  EvalModes(flip=True, pad_multiple=1))
    right, mirrored = torch.softmax(torch.cat([ramp, ramp * 0]), 0), \
        torch.softmax(torch.cat([ramp.flip(-1), ramp * 0]), 0)
    assert torch.allclose(result.scores(0)[0, :, 0], ((right + mirrored) / 2)[:, 0, 0])


class CropPosition(nn.Module):
    """Logits that depend on what a pixel shows and on where it lies within its crop (a
    ramp from the crop's left edge): mirroring each crop and mirroring the whole image
    then differ wherever the windows do not lie symmetrically about the image's centre."""

    def forward(self, x):
        ramp = (torch.arange(x.shape[-1], dtype=x.dtype) / 4).expand(1, 1, *x.shape[-2:])
        content = x[:, :1]
        logits = torch.cat([content + ramp, -content, ramp.flip(-1) - content], dim=1)
        return [logits * (k + 1) for k in range(4)]


def flip_by_hand(model, image, lefts, width, k):
    """HRNet-Segmentation's flip with sliding windows, probabilities averaged: every
    window runs as it is and mirrored, the mirrored crop's output is mirrored back, and
    the probabilities of every run covering a pixel are averaged."""
    total = torch.zeros(1, 3, *image.shape[-2:])
    count = torch.zeros(1, 1, *image.shape[-2:])
    for left in lefts:
        crop = image[..., left:left + width]
        for flip in (False, True):
            p = model(crop.flip(-1) if flip else crop)[k].softmax(1)
            total[..., left:left + width] += p.flip(-1) if flip else p
            count[..., left:left + width] += 1
    return total / count


def flip_of_the_whole_image_by_hand(model, image, lefts, width, k):
    """The other rule: the windows slide over the mirrored image."""
    def slide(view):
        total, count = torch.zeros(1, 3, *view.shape[-2:]), torch.zeros(1, 1, *view.shape[-2:])
        for left in lefts:
            total[..., left:left + width] += model(view[..., left:left + width])[k].softmax(1)
            count[..., left:left + width] += 1
        return total / count
    return (slide(image) + slide(image.flip(-1)).flip(-1)) / 2


def test_flip_with_sliding_windows_mirrors_each_crop_in_place():
    torch.manual_seed(3)
    image = torch.randn(1, 3, 4, 30)
    # Crops 12 wide at columns 0, 8, 16 and 18; their mirror images would start at
    # 18, 10, 2 and 0: not the same windows.
    lefts = window_starts(30, 12)
    assert lefts == [0, 8, 16, 18] and sorted(30 - 12 - a for a in lefts) != lefts
    model = CropPosition()
    result = multi_pass_inference(plain_forward(model), image,
                                  EvalModes(flip=True, crop_size=(4, 12), pad_multiple=1))
    assert [(p.flipped, p.windows) for p in result.passes] == \
        [(False, [(0, a, 4, 12) for a in lefts]), (True, [(0, a, 4, 12) for a in lefts])]
    assert result.forwards == 8
    for k in range(4):
        expected = flip_by_hand(model, image, lefts, 12, k)
        # Probabilities (at most 1) averaged over at most 4 runs, each a few float32
        # roundings (relative 6e-8) away from exact: 1e-6 is far above the error.
        assert torch.allclose(result.scores(k), expected, atol=1e-6)
        # Sliding over the mirrored image gives other scores: the check above tells the
        # two rules apart by far more than its tolerance.
        other = flip_of_the_whole_image_by_hand(model, image, lefts, 12, k)
        assert (other - expected).abs().max() > 1e-2


def test_flip_with_sliding_windows_runs_each_mirrored_crop_with_its_own_masks(masked):
    model, image = masked
    meter = FlopsMeter(FlopsCounter(model))

    def forward(x):
        outputs, masks = model(x, return_masks=True)
        return outputs, meter.measure(x.shape, masks)

    with torch.no_grad():
        result = multi_pass_inference(forward, image, EvalModes(flip=True, crop_size=(32, 32)))
        runs = [(left, flip, model(crop.flip(-1) if flip else crop, return_masks=True))
                for left in (0, 21, 32) for flip in (False, True)
                for crop in [image[..., left:left + 32]]]
    assert result.forwards == 6
    # Each forward costs what its own masks say (crops of 32 x 32 need no padding); the
    # same six float64 figures summed in another order: a few ulps (1e-16) apart.
    costs = [meter.measure((1, 3, 32, 32), masks) for _, _, (_, masks) in runs]
    assert result.cost == pytest.approx([sum(c) for c in zip(*costs)], rel=1e-12)
    for k in range(4):
        total, count = torch.zeros(1, 19, 32, 64), torch.zeros(1, 1, 32, 64)
        for left, flip, (outputs, _) in runs:
            p = upsampled(outputs[k], (32, 32)).softmax(1)
            total[..., left:left + 32] += p.flip(-1) if flip else p
            count[..., left:left + 32] += 1
        assert torch.allclose(result.scores(k), total / count, atol=1e-6)


def test_multi_scale_is_the_mean_of_single_scale_runs(masked):
    model, image = masked
    modes = EvalModes(scales=(1.0, 1.5), base_size=64, flip=True)
    with torch.no_grad():
        result = multi_pass_inference(plain_forward(model), image, modes)
        by_hand = [torch.zeros(1, 19, 32, 64) for _ in range(4)]
        for size in ((32, 64), (48, 96)):
            x = F.interpolate(image, size=size, mode='bilinear', align_corners=False)
            for flip in (False, True):
                # Padded to multiples of 32: 48 x 96 runs as 64 x 96, zeros below.
                padded = F.pad(x.flip(-1) if flip else x, (0, 0, 0, -size[0] % 32))
                outputs = model(padded)  # its own masks and copy aggregation
                for k, logits in enumerate(outputs):
                    p = upsampled(logits, padded.shape[-2:])[..., :size[0], :].softmax(1)
                    p = p.flip(-1) if flip else p
                    by_hand[k] += upsampled(p, (32, 64)) / 4
    assert result.forwards == 4
    for k in range(4):
        assert torch.allclose(result.scores(k), by_hand[k], atol=1e-6)


def test_cost_is_summed_over_every_forward():
    image = torch.zeros(1, 3, 8, 20)
    costs = []

    def forward(x):
        costs.append(x.shape[-1])
        return CropMean()(x), [x.shape[-1] * 1.0, 2.0]

    modes = EvalModes(flip=True, crop_size=(8, 12), pad_multiple=1)
    result = multi_pass_inference(forward, image, modes)
    assert result.forwards == 4 and len(costs) == 4
    assert result.cost == [48.0, 8.0]
    no_cost = multi_pass_inference(plain_forward(CropMean()), image, EvalModes(pad_multiple=1))
    assert no_cost.cost is None


def test_modes_reject_scales_without_a_base_size():
    with pytest.raises(ValueError, match='base size'):
        EvalModes(scales=(1.0,))
    with pytest.raises(ValueError, match='one image'):
        multi_pass_inference(plain_forward(CropMean()), torch.zeros(2, 3, 4, 4), EvalModes())
