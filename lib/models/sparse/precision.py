"""Which floating-point type the sparse engine computes a segment in.

Without autocast, the type of its inputs. Under ``torch.autocast`` (TEST.AMP,
validation, prediction), the autocast type wherever the device computes it natively:
gathers, GEMMs, convolutions and assembly then move half the bytes, and bfloat16 GEMMs
of the engine's shapes run 5-7x faster than float32 ones on AVX512-BF16 / AMX CPUs.
Where the type would be emulated (a CPU without bfloat16 units), it is slower than
float32, so the engine stays in float32 and says so once.
"""
import logging

import torch

from utils.runtime import reduced_precision_units

logger = logging.getLogger(__name__)

# Reduced-precision types with native units on each device type, when
# ``reduced_precision_units`` finds them: tensor cores compute both on CUDA; the CPU flags
# it reads (amx_bf16, avx512_bf16) are bfloat16 units only.
NATIVE_TYPES = {'cuda': (torch.float16, torch.bfloat16), 'cpu': (torch.bfloat16,)}

_reported = set()  # (device type, dtype) already said to run in float32


def segment_dtype(device, inputs_dtype):
    """The engine's compute type for a segment on ``device`` (torch.device) whose input
    branches are of ``inputs_dtype``; see the module docstring."""
    if not torch.is_autocast_enabled(device.type):
        return inputs_dtype
    dtype = torch.get_autocast_dtype(device.type)
    if dtype in NATIVE_TYPES.get(device.type, ()) and \
            reduced_precision_units(device) is not None:
        return dtype
    key = (device.type, dtype)
    if key not in _reported:
        _reported.add(key)
        name = str(dtype).replace('torch.', '')
        logger.info(f'{name} autocast: the sparse engine computes in float32 on this '
                    f'{device.type}, which has no {name} units ({name} would be slower '
                    f'there); the dense layers outside it still run in {name}')
    return torch.float32
