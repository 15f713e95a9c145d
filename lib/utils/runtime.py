"""Process-wide settings of a run (random seeds, cuDNN flags), and what timing needs of
the device: waiting for its queued work, and its name."""
import platform
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


def sync(device):
    """Wait for the device's queued work, so that a clock read next measures it (CUDA
    kernels run asynchronously; a no-op on the CPU)."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def device_name(device):
    """The GPU's name, or the CPU model as /proc/cpuinfo names it."""
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def apply_cudnn(cfg):
    """Apply CUDNN.BENCHMARK, CUDNN.DETERMINISTIC and CUDNN.ENABLED of the config."""
    torch.backends.cudnn.benchmark = cfg.CUDNN.BENCHMARK
    torch.backends.cudnn.deterministic = cfg.CUDNN.DETERMINISTIC
    torch.backends.cudnn.enabled = cfg.CUDNN.ENABLED


# Mixed precision of training (TRAIN.AMP) and evaluation (TEST.AMP): float16 on CUDA, where
# training adds a gradient scaler (engine.amp); bfloat16, with float32's range, on the CPU.
def amp_dtype(device):
    """The autocast dtype of ``device`` (torch.device): float16 on CUDA, else bfloat16."""
    return torch.float16 if device.type == 'cuda' else torch.bfloat16


def autocast(device, enabled):
    """``torch.autocast`` on ``device`` in :func:`amp_dtype`, a no-op unless ``enabled``.

    Args:
        device (torch.device): where the model runs.
        enabled (bool): TEST.AMP (or TRAIN.AMP).
    """
    return torch.autocast(device.type, dtype=amp_dtype(device), enabled=enabled)
