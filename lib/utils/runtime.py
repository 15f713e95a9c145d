"""Process-wide settings of a run (random seeds, cuDNN, TF32 and determinism flags), and
what timing needs of the device: waiting for its queued work, its name, its TF32 flags."""
import functools
import os
import platform
import random
from contextlib import contextmanager

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


# cuBLAS's workspace setting that makes its results repeatable under
# torch.use_deterministic_algorithms (CUDA >= 10.2; see PyTorch's notes on reproducibility).
CUBLAS_DETERMINISTIC_WORKSPACE = ':4096:8'


def apply_cudnn(cfg):
    """Apply the CUDNN section of the config: the arithmetic and kernels a tool runs with.

    - CUDNN.ENABLED: use cuDNN at all.
    - CUDNN.ALLOW_TF32: cuDNN convolutions may use TF32 (Ampere and newer GPUs: float32
      range, 10-bit mantissa), PyTorch's default; matrix products (cuBLAS) stay float32,
      PyTorch's default too. Nothing changes on the CPU. :func:`tf32_flags` records it.
    - CUDNN.DETERMINISTIC: deterministic cuDNN kernels, no cuDNN autotuning (it may pick
      other kernels in another process), ``torch.use_deterministic_algorithms(True,
      warn_only=True)`` and, unless set already, ``CUBLAS_WORKSPACE_CONFIG=:4096:8``.
      Operations without a deterministic CUDA kernel then warn and stay as they are.
    - CUDNN.BENCHMARK: let cuDNN time and pick the fastest kernels (off when
      DETERMINISTIC is on).
    """
    deterministic = cfg.CUDNN.DETERMINISTIC
    torch.backends.cudnn.enabled = cfg.CUDNN.ENABLED
    torch.backends.cudnn.benchmark = cfg.CUDNN.BENCHMARK and not deterministic
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.allow_tf32 = cfg.CUDNN.ALLOW_TF32
    torch.backends.cuda.matmul.allow_tf32 = False
    if deterministic:  # read when cuBLAS first runs, so before any model is built
        os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', CUBLAS_DETERMINISTIC_WORKSPACE)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


def tf32_flags():
    """Whether CUDA float32 arithmetic may use TF32 now, recorded beside every time
    measured (the CPU has no TF32: there the flags change nothing).

    Returns:
        dict: ``cudnn`` (convolutions) and ``matmul`` (matrix products), bools.
    """
    return {'cudnn': torch.backends.cudnn.allow_tf32,
            'matmul': torch.backends.cuda.matmul.allow_tf32}


@contextmanager
def full_float32():
    """Within the block, CUDA convolutions and matrix products compute in full float32
    (no TF32); the flags are restored after it."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


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


# CPU flags of units that compute bfloat16 natively (Intel AMX, AVX512-BF16 on Intel and
# AMD). Without them PyTorch emulates bfloat16 through float32: correct, but slower than
# float32 itself.
CPU_BF16_FLAGS = ('amx_bf16', 'avx512_bf16')


@functools.lru_cache(maxsize=None)  # read once per process: the engine asks per segment
def cpu_bf16_units(cpuinfo='/proc/cpuinfo'):
    """The CPU's bfloat16 units as /proc/cpuinfo's flags name them (e.g. ``['amx_bf16',
    'avx512_bf16']``); empty where it has none or the file cannot be read."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith('flags'):
                    flags = set(line.split(':', 1)[1].split())
                    return tuple(flag for flag in CPU_BF16_FLAGS if flag in flags)
    except OSError:
        pass
    return ()


def reduced_precision_units(device):
    """What computes :func:`amp_dtype` natively on ``device``, in words, or None where it
    would be emulated (and so slower than float32): the GPU's name on CUDA, the CPU's
    bfloat16 flags on the CPU."""
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    units = cpu_bf16_units()
    return ', '.join(units) if units else None
