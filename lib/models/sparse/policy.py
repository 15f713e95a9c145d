"""Which layers run sparse: the ``MASK.EXECUTION`` modes.

- 'dense': the reference semantics, every masked convolution computes all pixels then
  masks (no sparse engine at all).
- 'sparse': every masked convolution computes only its active pixels.
- 'auto': per layer, sparse when the mask density is below the break-even density of
  that layer's kind on the current device, dense (channels-last, BN folded) above it.

The break-even densities below are for CPUs; on other devices, where nothing was
measured, 'auto' uses the engine's dense path for every layer (channels-last, BN folded,
RBF fill only where it is non-zero), which does less work than 'dense'.
"""

EXECUTION_MODES = ('dense', 'sparse', 'auto')

# Density below which a sparse layer beats the engine's dense layer, by kernel size.
CPU_BREAK_EVEN = {1: 0.55, 3: 0.55}


class ExecutionPolicy:
    """Per-layer choice between sparse and dense execution.

    Args:
        mode (str): 'sparse' or 'auto' ('dense' never reaches the engine).
        break_even (dict[int, float] | None): kernel size -> density below which 'auto'
            runs a layer sparse; None: dense everywhere in 'auto'.
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
        return cls(mode, CPU_BREAK_EVEN if device.type == 'cpu' else None)

    def sparse(self, conv, density):
        """Run ``conv`` sparse at mask ``density``?"""
        if self.mode == 'sparse':
            return True
        return density < self.break_even.get(conv.kernel_size[0], 0.0)


def check_execution(mode):
    if mode not in EXECUTION_MODES:
        raise ValueError(f'MASK.EXECUTION must be one of {EXECUTION_MODES}, got {mode!r}')
    return mode
