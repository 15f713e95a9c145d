"""Which layers run sparse: the ``MASK.EXECUTION`` modes.

- 'dense': the reference semantics, every masked convolution computes all pixels then
  masks (no sparse engine at all).
- 'sparse': every masked convolution computes only its active pixels.
- 'auto': per layer, sparse when the mask density is below the break-even density of
  that layer's kind on the current device, dense (channels-last, BN folded) above it.

The break-even densities below were measured with ``models.sparse.calibrate`` on a 2-core
CPU (torch 2.13, 2 threads); wide layers pay off up to higher densities than narrow ones,
whose GEMMs are less efficient. On a device type without an entry (CUDA until it is
calibrated) 'auto' means 'dense': the engine's dense layers would still pay for its
layout conversions, host synchronisations and sparse products, unmeasured.
"""

EXECUTION_MODES = ('dense', 'sparse', 'auto')

# Per device type: (kernel size, up to this many output channels) -> density below which
# a sparse layer beats the engine's dense layer; the first matching entry applies.
# Each lies halfway between the last measured density where sparse was faster and the
# first where it was not. A device type measured with ``models.sparse.calibrate`` gets
# its own entry here.
BREAK_EVEN = {
    'cpu': {(3, 64): 0.55, (3, 128): 0.65, (3, 256): 0.75, (3, None): 0.85,
            (1, 256): 0.75, (1, None): 0.65},
}


def has_break_even(device_type):
    """Were break-even densities measured for ``device_type`` ('cpu', 'cuda', ...)?"""
    return device_type in BREAK_EVEN


class ExecutionPolicy:
    """Per-layer choice between sparse and dense execution.

    Args:
        mode (str): 'sparse' or 'auto' ('dense' never reaches the engine).
        break_even (dict | None): (kernel size, max output channels or None for any) ->
            density below which 'auto' runs a layer sparse, first match applies; None:
            dense everywhere in 'auto'.
    """

    def __init__(self, mode, break_even=None):
        if mode not in ('sparse', 'auto'):
            raise ValueError(f"the sparse engine runs MASK.EXECUTION 'sparse' or 'auto', "
                             f"got {mode!r}")
        self.mode = mode
        self.break_even = dict(break_even or {})

    @classmethod
    def for_device(cls, mode, device):
        """The policy of ``mode`` with the break-even densities measured for ``device``."""
        return cls(mode, BREAK_EVEN.get(device.type))

    def sparse(self, conv, density):
        """Run ``conv`` sparse at mask ``density``?"""
        if self.mode == 'sparse':
            return True
        for (kernel, channels), threshold in self.break_even.items():
            if kernel == conv.kernel_size[0] and (channels is None or
                                                  conv.out_channels <= channels):
                return density < threshold
        return False


def check_execution(mode):
    if mode not in EXECUTION_MODES:
        raise ValueError(f'MASK.EXECUTION must be one of {EXECUTION_MODES}, got {mode!r}')
    return mode
