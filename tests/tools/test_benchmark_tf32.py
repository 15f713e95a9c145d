"""tools/benchmark.py --device cuda compares float32 with float32: TF32 is turned off."""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', 'tools'))
import benchmark  # noqa: E402  (tools/benchmark.py)


def test_cuda_benchmark_turns_tf32_off():
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
        assert not benchmark.full_float32(torch.device('cpu'))
        assert torch.backends.cudnn.allow_tf32  # the CPU has no TF32: nothing to change
        assert benchmark.full_float32(torch.device('cuda'))
        assert not torch.backends.cudnn.allow_tf32
        assert not torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
