"""The masked convolution of confidence adaptivity and its RBF fill (ADP-C Sec. 3.3).

Given a mask m at its output size (1 = compute, 0 = skip), a masked convolution returns
``y*m + R(y*m)*(1-m)``: computed pixels keep the convolution output y, skipped pixels get
a Gaussian-weighted average of their computed neighbours. R is a depthwise 7x7
convolution with the normalised kernel ``exp(-Lambda^2 * square_dis)``, Lambda being a
learned scalar per convolution.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

RBF_SIZE = 7
# Weight of the centre cell: a skipped pixel has nothing to contribute to its own fill.
CENTRE_DISTANCE = 100000.0


def squared_distances(size=RBF_SIZE):
    """size x size grid of squared distances to the centre, centre set to CENTRE_DISTANCE."""
    offsets = torch.arange(size, dtype=torch.float32) - size // 2
    grid = offsets[:, None] ** 2 + offsets[None, :] ** 2
    grid[size // 2, size // 2] = CENTRE_DISTANCE
    return grid


def rbf_kernel(Lambda, square_dis):
    """Normalised Gaussian kernel exp(-Lambda^2 d^2) / (sum + 1e-5)."""
    kernel = torch.exp(-(Lambda ** 2) * square_dis)
    return kernel / (kernel.sum() + 1e-5)


def rbf_fill(y, mask, Lambda, square_dis):
    """``y*m + R(y*m)*(1-m)`` for an N x C x H x W output ``y`` and N x 1 x H x W ``mask``."""
    kept = y * mask
    channels = y.shape[1]
    kernel = rbf_kernel(Lambda, square_dis).expand(channels, 1, *square_dis.shape)
    filled = F.conv2d(kept, kernel, padding=square_dis.shape[-1] // 2, groups=channels)
    return kept + filled * (1 - mask)


class MaskSlot:
    """Where the anytime model puts the masks of one network segment during a forward.

    Every masked convolution of a segment shares the segment's slot; the model fills it
    with a ``ConfidenceMasks`` right before running the segment and empties it after, so
    no mask outlives the call that computed it.
    """

    def __init__(self):
        self.masks = None


class MaskedConv2d(nn.Conv2d):
    """A convolution that computes only where its segment's confidence mask is 1.

    Args:
        *args, **kwargs: as ``nn.Conv2d``.
        slot (MaskSlot): the segment's mask slot; an empty slot means "compute everything"
            (the mask is all ones), which makes the layer a plain convolution.
        rbf (bool): fill skipped pixels by RBF interpolation (MASK.INTERPOLATION 'rbf');
            with False they are 0.

    State: ``Lambda`` (learned, initial 3.0) and ``square_dis`` (7x7, fixed), both in
    the state dict as the checkpoint format requires.
    """

    def __init__(self, *args, slot=None, rbf=True, **kwargs):
        super().__init__(*args, **kwargs)
        self.slot = slot if slot is not None else MaskSlot()
        self.rbf = rbf
        self.Lambda = nn.Parameter(torch.tensor(3.0))
        self.register_buffer('square_dis', squared_distances())

    def current_mask(self, output_size):
        """The mask at ``output_size`` (h, w), or None when the slot is empty."""
        masks = self.slot.masks
        return None if masks is None else masks.at(output_size)

    def forward(self, x):
        y = super().forward(x)
        mask = self.current_mask(y.shape[-2:])
        if mask is None:
            return y
        if not self.rbf:
            return y * mask
        return rbf_fill(y, mask, self.Lambda, self.square_dis)

    def extra_repr(self):
        return super().extra_repr() + f', rbf={self.rbf}'
