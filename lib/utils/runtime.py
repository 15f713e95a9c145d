"""Process-wide settings of a run: random seeds and cuDNN flags."""
import random

import numpy as np
import torch


def seed_everything(seed):
    """Seed Python, NumPy and torch. DataLoader workers derive their own seeds from the
    torch generator, so a loader created after this call is reproducible too.

    Args:
        seed (int): the seed.
    """
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def apply_cudnn(cfg):
    """Apply CUDNN.BENCHMARK, CUDNN.DETERMINISTIC and CUDNN.ENABLED of the config."""
    torch.backends.cudnn.benchmark = cfg.CUDNN.BENCHMARK
    torch.backends.cudnn.deterministic = cfg.CUDNN.DETERMINISTIC
    torch.backends.cudnn.enabled = cfg.CUDNN.ENABLED
