import math

import pytest
import torch

from models.confidence import ConfidenceMasks, confidence_mask, copy_aggregate


def logits_with_top_probability(probs):
    """2-class logits whose softmax top probability is each value of ``probs`` (H x W)."""
    p = torch.tensor(probs, dtype=torch.float32)
    return torch.stack([torch.log(p), torch.log(1 - p)])[None]  # 1 x 2 x H x W


def test_conf_threshold_marks_unconfident_pixels():
    logits = logits_with_top_probability([[0.99, 0.6], [0.8, 0.999]])
    mask = confidence_mask(logits, (2, 2), 'conf_thre', 0.9)
    assert mask.tolist() == [[[[0.0, 1.0], [1.0, 0.0]]]]


def test_conf_threshold_keeps_equality():
    logits = logits_with_top_probability([[0.75]])
    top = torch.softmax(logits, dim=1).max().item()
    assert confidence_mask(logits, (1, 1), 'conf_thre', top).item() == 1.0
    assert confidence_mask(logits, (1, 1), 'conf_thre', top - 1e-6).item() == 0.0


def test_entropy_threshold_uses_natural_log():
    logits = logits_with_top_probability([[0.5, 0.9]])
    entropy_09 = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))  # 0.325
    mask = confidence_mask(logits, (1, 2), 'entropy_thre', entropy_09 + 1e-3)
    assert mask.tolist() == [[[[1.0, 0.0]]]]  # only the 50/50 pixel (ln 2) is uncertain


def test_resizing_is_nearest_neighbour():
    logits = logits_with_top_probability([[0.99, 0.6], [0.6, 0.99]])
    mask = confidence_mask(logits, (4, 4), 'conf_thre', 0.9)
    expected = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [1, 1, 0, 0], [1, 1, 0, 0]]).float()
    assert torch.equal(mask[0, 0], expected)
    assert confidence_mask(logits, (1, 1), 'conf_thre', 0.9).item() == 0.0  # top-left


def test_unknown_criterion_is_named():
    with pytest.raises(ValueError, match='MASK.CRIT'):
        confidence_mask(torch.zeros(1, 2, 1, 1), (1, 1), 'margin', 0.5)


def test_masks_are_cached_per_size_and_carry_no_gradient():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    masks = ConfidenceMasks(logits, 'conf_thre', 0.6)
    assert masks.at((2, 2)) is masks.at([2, 2])
    assert not masks.at((4, 4)).requires_grad
    assert masks.at((4, 4)).shape == (2, 1, 4, 4)


def test_copy_aggregation_keeps_confident_pixels_of_previous_exit():
    previous, current = torch.zeros(1, 2, 1, 2), torch.ones(1, 2, 1, 2)
    mask = torch.tensor([[[[0.0, 1.0]]]])
    out = copy_aggregate(previous, current, mask)
    assert out[0, :, 0, 0].tolist() == [0.0, 0.0] and out[0, :, 0, 1].tolist() == [1.0, 1.0]


def test_copy_aggregation_rejects_different_sizes():
    with pytest.raises(ValueError, match='multiples of 32'):
        copy_aggregate(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 3), torch.ones(1, 1, 4, 4))


def test_uniform_pixels_at_the_threshold_are_computed():
    # Equal logits over 4 classes: every top probability is exactly 0.25 in float32.
    masks = ConfidenceMasks(torch.zeros(1, 4, 3, 3), 'conf_thre', 0.25)
    assert torch.all(masks.at((3, 3)) == 1)
    assert torch.all(ConfidenceMasks(torch.zeros(1, 4, 3, 3), 'conf_thre', 0.2499).at((3, 3)) == 0)


@pytest.mark.parametrize('criterion, threshold', [('conf_thre', 0.6), ('entropy_thre', 1.0)])
def test_masks_of_low_precision_logits_use_float32_probabilities(criterion, threshold):
    """Under autocast an exit's logits are bf16; its mask is still decided on float32
    probabilities (bf16 ones would move pixels near the threshold across it)."""
    torch.manual_seed(0)
    logits = (torch.randn(1, 4, 32, 32) * 2).bfloat16()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        mask = confidence_mask(logits, (32, 32), criterion, threshold)
    expected = confidence_mask(logits.float(), (32, 32), criterion, threshold)
    assert mask.dtype == torch.bfloat16
    assert 0 < expected.mean() < 1 and torch.equal(mask.float(), expected)
