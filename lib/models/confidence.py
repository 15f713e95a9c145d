"""Confidence masks from an exit's logits, and the copy aggregation of exits (ADP-C Sec. 3.3).

A mask is 1 where a pixel still has to be computed (the exit is not confident there)
and 0 where the network may skip it.
"""
import torch
import torch.nn.functional as F

CRITERIA = ('conf_thre', 'entropy_thre')


def confidence_mask(logits, size, criterion='conf_thre', threshold=0.0):
    """Mask of the pixels to compute, at resolution ``size``.

    The logits are resized to ``size`` with nearest-neighbour interpolation, then
    softmaxed over classes; a pixel is computed when its top probability is <=
    ``threshold`` ('conf_thre') or its entropy (natural log) is >= ``threshold``
    ('entropy_thre'). No gradient flows through a mask.

    Args:
        logits (Tensor): N x K x H x W exit logits.
        size (tuple[int, int]): (h, w) of the mask.
        criterion (str): MASK.CRIT.
        threshold (float): MASK.CONF_THRE or MASK.ENTROPY_THRE.
    Returns:
        Tensor: N x 1 x h x w mask of 0s and 1s, of ``logits``' dtype.
    """
    with torch.no_grad():
        # In float32 even under autocast: bf16/fp16 probabilities (8/11-bit mantissas)
        # would move pixels near the threshold to the other side.
        probs = F.softmax(F.interpolate(logits.float(), size=tuple(size), mode='nearest'),
                          dim=1)
        if criterion == 'conf_thre':
            keep = probs.amax(dim=1, keepdim=True) <= threshold
        elif criterion == 'entropy_thre':
            # entr(p) = -p log p with entr(0) = 0, so saturated softmaxes stay finite.
            keep = torch.special.entr(probs).sum(dim=1, keepdim=True) >= threshold
        else:
            raise ValueError(f'MASK.CRIT must be one of {CRITERIA}, got {criterion!r}')
        return keep.to(logits.dtype)


class ConfidenceMasks:
    """The masks of one segment of the network, all derived from one exit's logits.

    Every masked convolution between exit j and exit j+1 asks for the mask at its
    output size; masks are computed once per size and shared.
    """

    def __init__(self, logits, criterion='conf_thre', threshold=0.0):
        self.logits = logits.detach()
        self.criterion = criterion
        self.threshold = threshold
        self._by_size = {}

    def at(self, size):
        size = tuple(int(s) for s in size)
        if size not in self._by_size:
            self._by_size[size] = confidence_mask(self.logits, size, self.criterion,
                                                  self.threshold)
        return self._by_size[size]


def copy_aggregate(previous, current, mask):
    """Keep ``previous`` logits where ``mask`` is 0 (confident), ``current`` where it is 1."""
    if previous.shape != current.shape:
        raise ValueError(
            f'copy aggregation needs exits of equal size, got {tuple(previous.shape)} and '
            f'{tuple(current.shape)}; with flex heads the input height and width must be '
            f'multiples of 32')
    return previous * (1 - mask) + current * mask
