"""Mixed precision of training (TRAIN.AMP), as mmsegmentation's ``--amp``: the forward
pass under ``torch.autocast`` (``utils.runtime.autocast``, shared with TEST.AMP), in
float16 on CUDA and bfloat16 on the CPU. float16 gradients can overflow, so CUDA
training also goes through a gradient scaler; bfloat16 has float32's range and needs none.

What a run under AMP skips, and when it gives up:

- a step whose gradients overflow is skipped by the scaler, which halves its scale (the
  scale doubles again after 2000 good steps): routine, counted per epoch;
- a step whose loss is not finite is skipped without a backward pass (see
  ``engine.epoch``); :data:`MAX_NON_FINITE_RUN` of them in a row stop the run;
- an epoch of which no step was applied, or a scale below :data:`MIN_LOSS_SCALE`, stops
  the run with :class:`MixedPrecisionError`: the scaler can no longer help.
"""
import torch

from utils.errors import UserError
from utils.runtime import amp_dtype, autocast

# The loss scale below which float16 training has stopped training. The scale only
# falls by halving after a step whose gradients overflowed; from its initial 2**16 it
# takes 30 more overflowing steps than growth steps to fall below 2**-14, so this is
# never a transient. At scale s a gradient g is held in float16 as g * s. At s = 2**-14,
# fp16's smallest normal number (6.1e-5), every |g| < 1 becomes subnormal (precision
# lost) and every |g| < 2**-10 flushes to zero (the smallest subnormal is 2**-24), while
# the weight gradients of a segmentation network are mostly far below 1: the steps
# would update almost nothing. And a gradient that still overflows there exceeds
# 65504 * 2**14 ~ 1e9 unscaled: the model diverged or the data is broken.
MIN_LOSS_SCALE = 2.0 ** -14

# Steps in a row whose loss is not finite before training under AMP stops. A float16
# overflow of the forward is transient (the next batch differs); a run of them is not.
MAX_NON_FINITE_RUN = 10

AMP_ADVICE = 'lower TRAIN.LR, check the data, or train without TRAIN.AMP'


class MixedPrecisionError(UserError):
    """Training under TRAIN.AMP cannot go on: no step of an epoch was applied, or the
    gradient scaler's scale fell below MIN_LOSS_SCALE."""


class MixedPrecision:
    """How one training run computes its steps: plain float32, or TRAIN.AMP.

    Args:
        device (torch.device): where the model trains.
        enabled (bool): TRAIN.AMP.
        scaler (bool or None): use a ``torch.amp.GradScaler``; None: where the dtype is
            float16 (CUDA).
    """

    def __init__(self, device, enabled=False, scaler=None):
        self.device = device
        self.enabled = enabled
        use_scaler = amp_dtype(device) == torch.float16 if scaler is None else scaler
        self.scaler = torch.amp.GradScaler(device.type) if enabled and use_scaler else None
        # Where the current run of non-finite losses began, and its length; a run may
        # span epochs, so it lives here, with the training run, not in one epoch.
        self.non_finite_start, self.non_finite_run = None, 0

    def autocast(self):
        """The context of a training forward pass (loss included)."""
        return autocast(self.device, self.enabled)

    @property
    def scale(self):
        """The gradient scaler's current loss scale, or None without a scaler."""
        return None if self.scaler is None else self.scaler.get_scale()

    def backward_step(self, loss, optimizer):
        """Backward pass of ``loss`` and optimiser step.

        Returns:
            bool: False when the gradient scaler skipped the step because a gradient was
            infinite or NaN at its current scale (it then lowers the scale). That is
            routine with float16 and no error; a non-finite loss is checked before.
        """
        if self.scaler is None:
            loss.backward()
            optimizer.step()
            return True
        self.scaler.scale(loss).backward()
        scale = self.scaler.get_scale()
        self.scaler.step(optimizer)
        self.scaler.update()
        return self.scaler.get_scale() >= scale  # the scale only drops after a skip

    def check_scale(self, epoch, i_iter, skipped):
        """Raise MixedPrecisionError when the scale fell below MIN_LOSS_SCALE.

        Args:
            epoch (int): 0-based epoch, for the message.
            i_iter (int): iteration of the epoch.
            skipped (int): steps the scaler skipped so far in the epoch.
        """
        if self.scaler is not None and self.scale < MIN_LOSS_SCALE:
            raise MixedPrecisionError(
                f'epoch {epoch + 1}, iteration {i_iter}: the gradient scaler skipped '
                f'{skipped} step(s) of the epoch for infinite or NaN float16 gradients and '
                f'its loss scale fell to {self.scale:g} (< {MIN_LOSS_SCALE:g}), where '
                f'gradients vanish: {AMP_ADVICE}')

    def state_dict(self):
        """The scaler's state (plain numbers, loadable with ``weights_only=True``), or
        None without a scaler."""
        return None if self.scaler is None else self.scaler.state_dict()

    def load_state_dict(self, state):
        """Restore the scaler from :meth:`state_dict`; ``state`` None keeps a fresh one."""
        if self.scaler is not None and state is not None:
            self.scaler.load_state_dict(state)


class BufferSnapshot:
    """A copy of a module's buffers (BatchNorm running statistics) taken before each
    forward, to put back when the step is skipped: a forward whose activations
    overflowed would otherwise leave infinite running statistics behind.

    Args:
        module (nn.Module): the (possibly wrapped) training module.
    """

    def __init__(self, module):
        self.buffers = list(module.buffers())
        self.saved = [b.detach().clone() for b in self.buffers]

    def take(self):
        if self.buffers:
            torch._foreach_copy_(self.saved, self.buffers)

    def restore(self):
        if self.buffers:
            with torch.no_grad():
                torch._foreach_copy_(self.buffers, self.saved)
