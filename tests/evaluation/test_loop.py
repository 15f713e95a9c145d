"""The evaluation loop (evaluation.loop): one confusion matrix per exit, FLOPs from the
masks of the same forward."""
import torch
import torch.nn as nn

from evaluation.loop import evaluate
from evaluation.metrics import FlopsMeter
from utils.distributed import DistContext


class Fixed(nn.Module):
    """Predicts class 0 at exit 1 and the right answer (the label image) at exits 2-4."""

    def __init__(self, labels, classes=3):
        super().__init__()
        self.labels, self.classes = labels, classes
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x, stop_at=4, return_masks=False):
        right = nn.functional.one_hot(self.labels[:x.shape[0]].clamp(max=self.classes - 1),
                                      self.classes).permute(0, 3, 1, 2).float()
        wrong = torch.zeros_like(right)
        wrong[:, 0] = 1
        outputs = [wrong, right, right, right][:stop_at]
        return (outputs, ['masks of this forward'] * 3) if return_masks else outputs


class PerExitCounter:
    """Exit k costs k GFLOPs, given the masks of the forward being counted."""

    def __init__(self):
        self.calls = []

    def gflops(self, input_shape, masks):
        self.calls.append((tuple(input_shape), masks))
        return torch.tensor([[1.0, 2.0, 3.0, 4.0]] * input_shape[0], dtype=torch.float64)

    def params(self, input_size):
        return [1, 2, 3, 4]


def test_evaluate_builds_one_confusion_matrix_per_exit():
    # 32 x 32, the network's stride: nothing to pad.
    labels = torch.tensor([[[0, 1], [2, 255]]]).repeat_interleave(16, 1).repeat_interleave(16, 2)
    model = Fixed(labels)
    loader = [(torch.zeros(1, 3, 32, 32), labels, ['x'])]
    counter = PerExitCounter()
    meter = FlopsMeter(counter)
    matrices = evaluate(model, loader, 3, 255, DistContext(), flops_meter=meter)
    assert counter.calls == [((1, 3, 32, 32), ['masks of this forward'] * 3)]
    assert len(matrices) == 4
    assert matrices[0].mat[:, 0].tolist() == [256] * 3  # everything predicted as 0
    assert torch.equal(matrices[3].mat, 256 * torch.eye(3, dtype=torch.int64))
    assert matrices[3].mean_iou() == 1.0
    assert meter.gflops() == [1.0, 2.0, 3.0, 4.0] and meter.count == 1
