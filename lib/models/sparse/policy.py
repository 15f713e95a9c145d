"""Which layers run sparse: the ``MASK.EXECUTION`` modes.

- 'dense': the reference semantics, every masked convolution computes all pixels then
  masks (no sparse engine at all).
- 'sparse': every masked convolution computes only its active pixels.
- 'auto': per layer, sparse when the mask density is below the break-even density of
  that layer's kind on the current device, dense (channels-last, BN folded) above it.

The break-even densities are measured where the model runs (``tools/calibrate.py``,
cached per device, dtype, threads and torch version) or shipped; ``models.sparse.tables``
says which apply. On a device with neither (CUDA until it is calibrated) 'auto' means
'dense': the engine's dense layers would still pay for its layout conversions, host
synchronisations and sparse products, unmeasured.
"""
# BREAK_EVEN: the shipped tables, under the name that calibration's output refers to.
from .tables import SHIPPED as BREAK_EVEN, break_even_table  # noqa: F401

EXECUTION_MODES = ('dense', 'sparse', 'auto')


def has_break_even(device):
    """Are there break-even densities for ``device`` (torch.device) in the dtype the
    engine computes in now (measured on this machine, or shipped)?"""
    return break_even_table(device) is not None


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
        """The policy of ``mode`` with the break-even densities of ``device`` (torch.device)
        in the dtype the engine computes in now (see ``models.sparse.tables``)."""
        return cls(mode, break_even_table(device) if mode == 'auto' else None)

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
