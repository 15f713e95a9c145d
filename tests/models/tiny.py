"""Tiny anytime networks of every variant, for tests that must run in seconds."""
import argparse
import os

from config import config, update_config
from models import get_seg_model

EXPERIMENTS = os.path.join(os.path.dirname(__file__), '..', '..', 'experiments', 'cityscapes')

TINY_STAGES = [
    'MODEL.EXTRA.STAGE1.NUM_BLOCKS', [1], 'MODEL.EXTRA.STAGE1.NUM_CHANNELS', [8],
    'MODEL.EXTRA.STAGE2.NUM_BLOCKS', [1, 1], 'MODEL.EXTRA.STAGE2.NUM_CHANNELS', [4, 8],
    'MODEL.EXTRA.STAGE3.NUM_MODULES', 1,
    'MODEL.EXTRA.STAGE3.NUM_BLOCKS', [1, 1, 1], 'MODEL.EXTRA.STAGE3.NUM_CHANNELS', [4, 8, 12],
    'MODEL.EXTRA.STAGE4.NUM_MODULES', 2,
    'MODEL.EXTRA.STAGE4.NUM_BLOCKS', [1, 1, 1, 1],
    'MODEL.EXTRA.STAGE4.NUM_CHANNELS', [4, 8, 12, 16],
]

VARIANTS = {
    'ee': [],
    'rh': ['EXIT.TYPE', 'flex', 'EXIT.INTER_CHANNEL', 8],
    'ca': ['MASK.USE', True, 'MASK.CONF_THRE', 0.998],
    'adpc': ['EXIT.TYPE', 'flex', 'EXIT.INTER_CHANNEL', 8, 'MASK.USE', True,
             'MASK.CONF_THRE', 0.998],
}


def tiny_cfg(variant='adpc', *opts):
    """The W48 experiment shrunk to a few channels, with ``variant``'s overrides."""
    cfg = config.clone()
    args = argparse.Namespace(cfg=os.path.join(EXPERIMENTS, 'w48.yaml'),
                              opts=[str(o) for o in TINY_STAGES + VARIANTS[variant] + list(opts)])
    args.opts += ['MODEL.PRETRAINED', '']
    return update_config(cfg, args)


def tiny_model(variant='adpc', *opts):
    return get_seg_model(tiny_cfg(variant, *opts))


def spread_weights(model, seed=0):
    """Re-initialise convolutions with He-normal weights so that exits give confident
    and unconfident pixels (the std-0.001 init leaves every pixel unconfident)."""
    import torch
    import torch.nn as nn
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
    return model


def median_confidence(model, x):
    """Threshold that masks about half of exit 1's pixels for input ``x``.

    It lies midway in the widest gap between the confidences of the middle fifth of the
    pixels, not on a pixel's confidence: rounding differences between a batch and a
    single image (thread count, batch size) then cannot flip a pixel's mask."""
    import torch
    with torch.no_grad():
        logits = model(x, stop_at=1)[0]
    confidence = torch.softmax(logits, dim=1).amax(dim=1).flatten().sort().values
    n = len(confidence)
    middle = confidence[int(0.4 * n):int(0.6 * n) + 1]
    gaps = middle[1:] - middle[:-1]
    i = int(gaps.argmax())
    return ((middle[i] + middle[i + 1]) / 2).item()


def mixed_mask_model(variant='adpc', x=None, seed=0, *opts):
    """A tiny model whose masks are about half ones and half zeros on ``x``."""
    model = spread_weights(tiny_model(variant, *opts), seed).eval()
    if x is not None:
        model.mask_threshold = median_confidence(model, x)
    return model
