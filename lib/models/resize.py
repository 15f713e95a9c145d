"""The one resize of feature maps and logits: bilinear, corners not aligned, as HRNet
resizes everywhere (fusions, exit heads, the loss, evaluation). ``align_corners=False``
is part of the contract: the original's checkpoints were trained with it."""
import torch.nn.functional as F


def upsample_to(x, size):
    """Bilinearly resize N x C x h x w ``x`` to ``size`` = (H, W) (no-op if equal)."""
    size = tuple(size)
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode='bilinear', align_corners=False)
