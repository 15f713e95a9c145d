import math

import pytest
import torch
import torch.nn as nn

from models.confidence import ConfidenceMasks
from models.masked_conv import MaskedConv2d, MaskSlot, rbf_kernel, squared_distances

U = 2.0 ** -24  # unit roundoff of float32


class FixedMasks:
    """Stands in for ConfidenceMasks: the same mask whatever the size asked for."""

    def __init__(self, mask):
        self.mask = mask

    def at(self, size):
        assert tuple(size) == tuple(self.mask.shape[-2:])
        return self.mask


def masked_and_plain(in_channels=3, out_channels=4, **kwargs):
    torch.manual_seed(0)
    plain = nn.Conv2d(in_channels, out_channels, 3, padding=1, **kwargs)
    masked = MaskedConv2d(in_channels, out_channels, 3, padding=1, slot=MaskSlot(), **kwargs)
    masked.load_state_dict(plain.state_dict(), strict=False)
    return masked, plain


def hand_rbf(y, mask, Lambda):
    """The RBF fill written out pixel by pixel, in float64: skipped pixels get the
    Gaussian-weighted sum of their computed neighbours in a 7x7 window, weights
    normalised over the window."""
    y = y.double()
    weights = {}
    for di in range(-3, 4):
        for dj in range(-3, 4):
            d2 = di * di + dj * dj
            weights[di, dj] = 0.0 if d2 == 0 else math.exp(-Lambda ** 2 * d2)
    total = sum(weights.values()) + math.exp(-Lambda ** 2 * 100000.0) + 1e-5
    n, c, h, w = y.shape
    out = y.clone()
    for b in range(n):
        for i in range(h):
            for j in range(w):
                if mask[b, 0, i, j] == 1:
                    continue
                acc = torch.zeros(c, dtype=y.dtype)
                for (di, dj), wt in weights.items():
                    ii, jj = i + di, j + dj
                    if 0 <= ii < h and 0 <= jj < w and mask[b, 0, ii, jj] == 1:
                        acc += wt / total * y[b, :, ii, jj]
                out[b, :, i, j] = acc
    return out


def test_square_dis_is_squared_distance_with_large_centre():
    grid = squared_distances()
    assert grid.shape == (7, 7)
    assert grid[0, 0] == 18 and grid[3, 0] == 9 and grid[2, 3] == 1
    assert grid[3, 3] == 100000.0


def test_state_dict_has_lambda_and_square_dis():
    conv = MaskedConv2d(3, 4, 1, bias=True)
    assert set(conv.state_dict()) == {'weight', 'bias', 'Lambda', 'square_dis'}
    assert conv.Lambda.item() == 3.0 and conv.Lambda.requires_grad
    assert 'square_dis' not in dict(conv.named_parameters())


def test_all_ones_mask_equals_plain_convolution():
    masked, plain = masked_and_plain(bias=False)
    x = torch.randn(2, 3, 9, 11)
    masked.slot.masks = FixedMasks(torch.ones(2, 1, 9, 11))
    assert torch.equal(masked(x), plain(x))


def test_empty_slot_is_a_plain_convolution():
    masked, plain = masked_and_plain(bias=True)
    x = torch.randn(1, 3, 5, 6)
    assert torch.equal(masked(x), plain(x))


def test_all_zeros_mask_gives_zeros():
    masked, _ = masked_and_plain()
    x = torch.randn(1, 3, 6, 7)
    masked.slot.masks = FixedMasks(torch.zeros(1, 1, 6, 7))
    assert torch.count_nonzero(masked(x)) == 0


@pytest.mark.numerics
@pytest.mark.parametrize('Lambda', [3.0, 0.5])
def test_mixed_mask_matches_hand_computed_rbf_fill(Lambda):
    masked, plain = masked_and_plain()
    with torch.no_grad():
        masked.Lambda.fill_(Lambda)
    torch.manual_seed(1)
    x = torch.randn(2, 3, 8, 9)
    mask = (torch.rand(2, 1, 8, 9) < 0.4).float()
    masked.slot.masks = FixedMasks(mask)
    y = plain(x).detach()  # the convolution itself: the same in both
    expected = hand_rbf(y, mask, Lambda)
    # float32 rounding of the fill, worst case: each of the 48 kernel weights is
    # exp(-Lambda^2 d^2) (the exponent off by d^2 Lambda^2 u, d^2 <= 18, and the exp by
    # u) over a 49-term sum (49u) and one division (u); the fill sums 48 products
    # (48u + 1 of the product) of values |y| with weights summing to at most 1.
    bound = (18 * Lambda ** 2 + 1 + 49 + 1 + 49) * U * y.abs().max().item()
    assert (masked(x).double() - expected).abs().max() <= bound


def test_mask_follows_output_size_of_strided_conv():
    conv = MaskedConv2d(2, 2, 3, stride=2, padding=1, slot=MaskSlot())
    logits = torch.randn(1, 5, 8, 8)
    conv.slot.masks = ConfidenceMasks(logits, 'conf_thre', 0.5)
    out = conv(torch.randn(1, 2, 8, 8))
    assert out.shape[-2:] == (4, 4)
    assert conv.current_mask((4, 4)).shape == (1, 1, 4, 4)


def test_lambda_learns_through_the_fill():
    masked, _ = masked_and_plain()
    mask = torch.ones(1, 1, 6, 6)
    mask[..., ::2, :] = 0
    masked.slot.masks = FixedMasks(mask)
    masked(torch.randn(1, 3, 6, 6)).pow(2).sum().backward()
    assert masked.Lambda.grad is not None and masked.Lambda.grad.abs() > 0
    assert masked.weight.grad.abs().sum() > 0


@pytest.mark.numerics
def test_rbf_kernel_sums_to_its_mass_over_mass_plus_epsilon():
    # At the initial Lambda 3 the window's mass is about 4 exp(-9) = 4.94e-4 (the four
    # nearest neighbours), so the 1e-5 of the normaliser leaves the kernel summing to
    # 4.94e-4 / (4.94e-4 + 1e-5) = 0.980, not 1: fills are pulled slightly towards 0.
    mass = sum(math.exp(-9 * (di * di + dj * dj))
               for di in range(-3, 4) for dj in range(-3, 4) if di or dj)
    assert mass / (mass + 1e-5) == pytest.approx(0.980, abs=1e-3)
    # float32: each weight within (d^2·Lambda^2 + 1)·u (d^2 <= 18), the 49-term sum and
    # the division add 50u, relative.
    got = rbf_kernel(torch.tensor(3.0), squared_distances()).sum().item()
    assert got == pytest.approx(mass / (mass + 1e-5), rel=(18 * 9 + 1 + 50) * U)
    # A sharp kernel (Lambda 6: mass 4 exp(-36) ~ 1e-15) fills with almost nothing.
    assert rbf_kernel(torch.tensor(6.0), squared_distances()).sum().item() < 1e-8
