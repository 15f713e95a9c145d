"""Segmentation metric (per-exit confusion matrices) and the FLOPs meter of evaluation."""
import numpy as np
import torch

from utils.distributed import all_reduce
from models.resize import upsample_to


class ConfusionMatrix:
    """Pixel counts ``mat[label, prediction]`` over pixels whose label is not ignored.

    The prediction is the argmax of the logits bilinearly upsampled to the label size.
    IoU of class c = tp / max(1, pos + pred - tp) (spec section 4).

    Args:
        num_classes (int): DATASET.NUM_CLASSES.
        ignore_label (int): TRAIN.IGNORE_LABEL.
    """

    def __init__(self, num_classes, ignore_label=-1):
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.mat = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    @torch.no_grad()
    def update(self, logits, labels):
        """Add a batch.

        Args:
            logits (Tensor): N x C x h x w.
            labels (Tensor): N x H x W train ids or ignore_label.
        """
        self.add(upsample_to(logits, labels.shape[-2:]).argmax(dim=1), labels)

    @torch.no_grad()
    def add(self, pred, labels):
        """Add predicted classes (N x H x W) and their labels (N x H x W)."""
        n = self.num_classes
        valid = labels != self.ignore_label
        gt = labels[valid].long()
        if gt.numel() and (gt.min() < 0 or gt.max() >= n):
            raise ValueError(f'labels hold values outside 0..{n - 1} that are not '
                             f'TRAIN.IGNORE_LABEL ({self.ignore_label}): found '
                             f'{sorted(torch.unique(gt).tolist())}; check DATASET.NUM_CLASSES '
                             'and the label mapping')
        counts = torch.bincount(gt * n + pred[valid], minlength=n * n)
        self.mat += counts.reshape(n, n).cpu()

    def reduce_from_all_processes(self):
        """Sum the counts of all processes (every process gets the total; int64 counts
        reduce exactly)."""
        self.mat = all_reduce(self.mat)
        return self

    def iou(self):
        """Per-class IoU, float64 numpy array of length num_classes."""
        mat = self.mat.double().numpy()
        tp = np.diag(mat)
        pos = mat.sum(1)
        pred = mat.sum(0)
        return tp / np.maximum(1.0, pos + pred - tp)

    def mean_iou(self):
        """Mean of :meth:`iou` over all classes."""
        return float(self.iou().mean())

    def pixel_accuracy(self):
        """Correct pixels / valid pixels."""
        mat = self.mat.double().numpy()
        return float(np.diag(mat).sum() / max(1.0, mat.sum()))


def result_line(mean_ious):
    """The ``result.txt`` line: each exit's mIoU x 100 and their mean, tab-separated,
    two decimals (e.g. ``44.34\\t60.13\\t76.82\\t81.31\\t65.65``).

    Args:
        mean_ious (sequence of float): per-exit mIoU in [0, 1].
    """
    values = list(mean_ious) + [float(np.mean(mean_ious))]
    return '\t'.join(f'{v * 100:.2f}' for v in values)


class FlopsMeter:
    """Mask-aware GFLOPs and parameters per exit, averaged over evaluated images.

    Every image counts with its own masks (as the paper reports it, at batch 1), read
    from the masks of the evaluation's own forward by ``models.flops.FlopsCounter``: the
    network runs once per image.

    Args:
        counter (FlopsCounter): ``counter.gflops(input_shape, masks)`` -> N x exits
            GFLOPs, ``counter.params(input_size)`` -> parameters per exit.
    """

    def __init__(self, counter):
        self.counter = counter
        self.gflops_sum = None
        self.count = 0
        self.forwards = 0  # forwards of the measured images (more than one with passes)
        self.params = None

    @torch.no_grad()
    def update(self, input_shape, masks):
        """Count the images of a batch that ran with input shape ``input_shape``
        (N x 3 x H x W) and ``masks`` (``model(x, return_masks=True)``'s second item)."""
        for gflops in self.counter.gflops(input_shape, masks):
            self.add(gflops)
        self._params(input_shape)

    @torch.no_grad()
    def measure(self, input_shape, masks):
        """GFLOPs per exit (list) of one forward of a batch-1 input (a pass of
        multi-pass inference), from its masks; also records the parameters."""
        self._params(input_shape)
        return self.counter.gflops(input_shape, masks).sum(dim=0).tolist()

    def _params(self, input_shape):
        self.params = [int(p) for p in self.counter.params(input_shape[-2:])]

    def add(self, gflops, forwards=1):
        """Count one image that cost ``gflops`` per exit over ``forwards`` forwards (its
        passes and crops)."""
        gflops = torch.as_tensor(gflops, dtype=torch.float64)
        self.gflops_sum = gflops if self.gflops_sum is None else self.gflops_sum + gflops
        self.count += 1
        self.forwards += forwards

    def reduce_from_all_processes(self, num_exits):
        """Combine the measurements of all processes (every process gets the result).

        Args:
            num_exits (int): length of the per-exit lists, for processes that measured
                no image.
        """
        local = torch.zeros(num_exits + 2, dtype=torch.float64)
        if self.count:
            local[:num_exits] = self.gflops_sum
            local[num_exits:] = torch.tensor([self.count, self.forwards])
        local = all_reduce(local)
        # Parameters do not depend on the image; processes without an image report 0.
        params = all_reduce(torch.tensor(self.params or [0] * num_exits), op='max')
        self.gflops_sum = local[:num_exits]
        self.count, self.forwards = (int(v) for v in local[num_exits:].tolist())
        self.params = params.tolist()
        return self

    def gflops(self):
        """Mean GFLOPs of each exit over the measured images."""
        if not self.count:
            raise RuntimeError('no image was measured: the evaluation set is empty')
        return (self.gflops_sum / self.count).tolist()
