"""Segmentation models, looked up by MODEL.NAME: HRNet, its exits, masked convolutions
and confidence masks, the anytime network, FLOPs accounting and the sparse engine.

Layer: beside ``datasets``, below ``evaluation``. May import utils and config; knows
nothing of datasets.
"""
from . import model_anytime

MODELS = {'model_anytime': model_anytime.get_seg_model}


def get_seg_model(cfg, pretrained=True):
    """Build the model named by MODEL.NAME, with the weights of MODEL.PRETRAINED unless
    ``pretrained`` is False (a checkpoint will replace every weight)."""
    try:
        builder = MODELS[cfg.MODEL.NAME]
    except KeyError:
        raise ValueError(f'MODEL.NAME {cfg.MODEL.NAME!r} is not one of {sorted(MODELS)}') from None
    return builder(cfg, pretrained)
