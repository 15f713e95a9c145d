"""Mixed precision of training (TRAIN.AMP), as mmsegmentation's ``--amp``: the forward
pass under ``torch.autocast`` (``utils.runtime.autocast``, shared with TEST.AMP), in
float16 on CUDA and bfloat16 on the CPU. float16 gradients can overflow, so CUDA
training also goes through a gradient scaler; bfloat16 has float32's range and needs none.
"""
import torch

from utils.runtime import amp_dtype, autocast


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

    def autocast(self):
        """The context of a training forward pass (loss included)."""
        return autocast(self.device, self.enabled)

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

    def state_dict(self):
        """The scaler's state (plain numbers, loadable with ``weights_only=True``), or
        None without a scaler."""
        return None if self.scaler is None else self.scaler.state_dict()

    def load_state_dict(self, state):
        """Restore the scaler from :meth:`state_dict`; ``state`` None keeps a fresh one."""
        if self.scaler is not None and state is not None:
            self.scaler.load_state_dict(state)
