import numpy as np
import pytest
import torch

from evaluation.metrics import ConfusionMatrix, FlopsMeter, result_line


def one_hot_logits(pred, classes):
    """Logits whose argmax is ``pred`` (N x H x W)."""
    return torch.nn.functional.one_hot(pred, classes).permute(0, 3, 1, 2).float()


def test_iou_on_hand_made_matrix():
    cm = ConfusionMatrix(3)
    # rows: label, columns: prediction
    cm.mat = torch.tensor([[5, 1, 0],
                           [2, 3, 0],
                           [0, 0, 0]])
    # class 0: tp 5, pos 6, pred 7 -> 5/8; class 1: tp 3, pos 5, pred 4 -> 3/6;
    # class 2: never present nor predicted -> 0 / max(1, 0) = 0.
    assert np.allclose(cm.iou(), [5 / 8, 3 / 6, 0.0])
    assert cm.mean_iou() == pytest.approx((5 / 8 + 0.5 + 0) / 3)
    assert cm.pixel_accuracy() == pytest.approx(8 / 11)


def test_perfect_prediction_gives_iou_one_for_present_classes():
    cm = ConfusionMatrix(2)
    cm.mat = torch.tensor([[4, 0], [0, 7]])
    assert np.allclose(cm.iou(), [1.0, 1.0])


def test_update_counts_non_ignored_pixels_only():
    labels = torch.tensor([[[0, 1], [255, 2]]])
    pred = torch.tensor([[[0, 2], [1, 2]]])
    cm = ConfusionMatrix(3, ignore_label=255)
    cm.update(one_hot_logits(pred, 3), labels)
    expected = torch.zeros(3, 3, dtype=torch.int64)
    expected[0, 0] = expected[1, 2] = expected[2, 2] = 1
    assert torch.equal(cm.mat, expected)


def test_update_upsamples_logits_bilinearly_to_the_label_size():
    logits = torch.zeros(1, 2, 1, 2)
    logits[0, 0, 0, 0] = 1.0  # left pixel prefers class 0
    logits[0, 1, 0, 1] = 1.0  # right pixel prefers class 1
    labels = torch.tensor([[[0, 0, 1, 1]] * 2])  # 2 x 4 labels
    cm = ConfusionMatrix(2)
    cm.update(logits, labels)
    # Upsampled x4 horizontally: columns 0-1 predict class 0, columns 2-3 class 1.
    assert torch.equal(cm.mat, torch.tensor([[4, 0], [0, 4]]))


def test_labels_outside_the_classes_are_an_error_naming_the_keys():
    cm = ConfusionMatrix(3, ignore_label=255)
    with pytest.raises(ValueError, match='NUM_CLASSES'):
        cm.update(torch.zeros(1, 3, 1, 1), torch.tensor([[[7]]]))


def test_reduce_is_identity_in_a_single_process():
    cm = ConfusionMatrix(2)
    cm.mat = torch.tensor([[1, 2], [3, 4]])
    assert torch.equal(cm.reduce_from_all_processes().mat, torch.tensor([[1, 2], [3, 4]]))


def test_result_line_format():
    assert result_line([0.4434, 0.6013, 0.7682, 0.8131]) == '44.34\t60.13\t76.82\t81.31\t65.65'


class FakeCounter:
    """GFLOPs of each image = its first mask value (mask providers are tensors here)."""

    def gflops(self, input_shape, masks):
        return torch.stack([masks[0][:, 0, 0, 0].double()] * 4, dim=1)

    def params(self, input_size):
        return [1, 2, 3, 4]


def test_flops_meter_averages_over_images_from_the_forwards_masks():
    meter = FlopsMeter(FakeCounter())
    meter.update((2, 3, 4, 4), [torch.tensor([1.0, 3.0]).view(2, 1, 1, 1)])
    meter.update((1, 3, 4, 4), [torch.tensor([5.0]).view(1, 1, 1, 1)])
    meter.reduce_from_all_processes(4)
    assert meter.count == 3
    assert meter.gflops() == pytest.approx([3.0] * 4)
    assert meter.params == [1, 2, 3, 4]
