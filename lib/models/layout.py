"""The memory layout inference runs in: channels-last (N x H x W x C in memory).

oneDNN (CPU) and cuDNN (GPU) run convolutions fastest on channels-last tensors, above
all in reduced precision (bfloat16 / float16), and the sparse engine works on
channels-last maps anyway. Training keeps PyTorch's default layout (NCHW); every tool
that runs a model for inference sets it up with :func:`to_inference` (once), or, for a
model that trains between evaluations, runs under :func:`inference`. The model converts
its input at the start of the forward when its weights are channels-last
(:func:`is_channels_last`), so callers pass images as they come.

The values do not depend on the layout beyond float32 rounding (another summation order).
"""
from contextlib import contextmanager

import torch


def is_channels_last(model):
    """Whether ``model``'s first 4-D weight (a convolution's) is stored channels-last."""
    for p in model.parameters():
        if p.dim() == 4:
            return p.is_contiguous(memory_format=torch.channels_last)
    return False


def to_inference(model, device=None):
    """``model`` in eval mode with its weights channels-last, on ``device`` if given
    (converted in place; returned for chaining)."""
    return model.to(device=device, memory_format=torch.channels_last).eval()


@contextmanager
def inference(model):
    """Within the block, ``model`` is in eval mode and channels-last (:func:`to_inference`);
    after it, back in its former mode and layout, e.g. a model validated during training."""
    was_training, was_channels_last = model.training, is_channels_last(model)
    to_inference(model)
    try:
        yield model
    finally:
        if not was_channels_last:
            model.to(memory_format=torch.contiguous_format)
        model.train(was_training)
