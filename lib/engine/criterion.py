"""The training loss of the anytime network (ADP-C Sec. 3.1, spec section 4).

Every exit is supervised: ``loss = sum_k EE_WEIGHTS[k] * CE_k``, with CE_k the
(class-weighted) cross-entropy of exit k's logits, bilinearly upsampled to the label
size, over pixels whose label is not IGNORE_LABEL. ``LOSS.USE_OHEM`` replaces each CE_k
by its online-hard-example-mining version.

:class:`FullModel` pairs the network with this loss; its state dict is the checkpoint
format of the original release (``model.*`` plus ``loss.criterion.weight``).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from models.resize import upsample_to
from utils.errors import ConfigError


class MultiExitLoss(nn.Module):
    """Weighted sum of the exits' cross-entropy losses.

    The per-pixel cross-entropy lives in ``self.criterion`` (an ``nn.CrossEntropyLoss``
    whose ``weight`` buffer holds the class weights) so that the state dict key is
    ``criterion.weight``, as in the original checkpoints. Without class balancing the
    weights are all ones, which gives the plain mean over valid pixels.

    Args:
        exit_weights (sequence of float): MODEL.EXTRA.EE_WEIGHTS, one weight per exit.
        num_classes (int): DATASET.NUM_CLASSES.
        class_weights (sequence of float or None): per-class weights (LOSS.CLASS_BALANCE);
            None for uniform weights.
        ignore_label (int): TRAIN.IGNORE_LABEL, pixels excluded from the loss.
        ohem (bool): LOSS.USE_OHEM, keep only hard pixels (default False).
        ohem_threshold (float): LOSS.OHEMTHRES; pixels whose true-class probability is
            below it are hard.
        ohem_min_kept (int): LOSS.OHEMKEEP; at least this many of the hardest pixels are
            kept per batch.
    """

    def __init__(self, exit_weights, num_classes, class_weights=None, ignore_label=-1,
                 ohem=False, ohem_threshold=0.9, ohem_min_kept=100000):
        super().__init__()
        if class_weights is None:
            weight = torch.ones(num_classes)
        else:
            weight = torch.as_tensor(class_weights, dtype=torch.float32)
            if weight.shape != (num_classes,):
                raise ValueError(f'class weights have shape {tuple(weight.shape)} but '
                                 f'DATASET.NUM_CLASSES is {num_classes}: set '
                                 'LOSS.CLASS_BALANCE False or give one weight per class')
        self.exit_weights = [float(w) for w in exit_weights]
        self.ignore_label = ignore_label
        self.ohem = ohem
        self.ohem_threshold = ohem_threshold
        self.ohem_min_kept = max(1, int(ohem_min_kept))
        self.criterion = nn.CrossEntropyLoss(weight=weight, ignore_index=ignore_label,
                                             reduction='none' if ohem else 'mean')

    def exit_loss(self, logits, labels):
        """Cross-entropy (or OHEM) of one exit.

        Args:
            logits (Tensor): N x C x h x w.
            labels (Tensor): N x H x W int64 train ids or ``ignore_label``.

        Returns:
            Tensor: scalar loss; 0 (still attached to the graph) for a batch without any
            valid pixel, where the plain mean would be 0/0.
        """
        logits = upsample_to(logits, labels.shape[-2:])  # N x C x H x W
        valid = labels != self.ignore_label
        if not bool(valid.any()):
            return logits.sum() * 0.0
        if not self.ohem:
            return self.criterion(logits, labels)
        return self._ohem(logits, labels, valid)

    def _ohem(self, logits, labels, valid):
        pixel_losses = self.criterion(logits, labels)[valid]  # P valid pixels
        with torch.no_grad():
            # Probability of the true class; ignored pixels are filtered out by `valid`.
            target = labels.masked_fill(~valid, 0).unsqueeze(1)
            true_prob = F.softmax(logits, dim=1).gather(1, target).squeeze(1)[valid]
            # Hard pixels: below OHEMTHRES, or among the OHEMKEEP least confident ones
            # (the threshold is raised to the OHEMKEEP-th smallest probability).
            kth = min(self.ohem_min_kept, true_prob.numel() - 1)
            threshold = max(true_prob.kthvalue(kth + 1).values.item(), self.ohem_threshold)
            hard = true_prob < threshold
            if not bool(hard.any()):
                hard = true_prob <= threshold
        return pixel_losses[hard].mean()

    def forward(self, outputs, labels):
        """Loss of all exits.

        Args:
            outputs (list[Tensor]): logits of each exit, N x C x h x w.
            labels (Tensor): N x H x W.

        Returns:
            tuple: (total weighted loss, list of the per-exit unweighted losses).
        """
        if len(outputs) != len(self.exit_weights):
            raise ValueError(f'the model returned {len(outputs)} outputs but '
                             f'MODEL.EXTRA.EE_WEIGHTS has {len(self.exit_weights)} weights: '
                             'give one weight per exit')
        losses = [self.exit_loss(out, labels) for out in outputs]
        total = sum(w * loss for w, loss in zip(self.exit_weights, losses))
        return total, losses


class FullModel(nn.Module):
    """The network and its loss in one module, as trained (and checkpointed).

    Its state dict is exactly the original checkpoint format: the network's keys with a
    ``model.`` prefix and ``loss.criterion.weight``.

    Args:
        model (nn.Module): the anytime network; ``model(x)`` returns a list of logits.
        loss (MultiExitLoss): the loss.
    """

    def __init__(self, model, loss):
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(self, images, labels):
        """Returns (total loss, per-exit losses, per-exit logits)."""
        outputs = self.model(images)
        total, losses = self.loss(outputs, labels)
        return total, losses, outputs


def build_criterion(cfg, class_weights=None):
    """The loss described by the config.

    Args:
        cfg (CfgNode): reads MODEL.EXTRA.EE_WEIGHTS (default (1, 1, 1, 1)),
            DATASET.NUM_CLASSES, TRAIN.IGNORE_LABEL and LOSS.*.
        class_weights (sequence of float or None): the dataset's class weights, used when
            LOSS.CLASS_BALANCE is true.

    Returns:
        MultiExitLoss
    """
    if cfg.LOSS.CLASS_BALANCE and class_weights is None:
        raise ConfigError(f'LOSS.CLASS_BALANCE is true but DATASET.DATASET '
                          f'{cfg.DATASET.DATASET} has no class weights (Cityscapes alone has): '
                          'set LOSS.CLASS_BALANCE False')
    return MultiExitLoss(
        exit_weights=cfg.MODEL.EXTRA.get('EE_WEIGHTS', (1, 1, 1, 1)),
        num_classes=cfg.DATASET.NUM_CLASSES,
        class_weights=class_weights if cfg.LOSS.CLASS_BALANCE else None,
        ignore_label=cfg.TRAIN.IGNORE_LABEL,
        ohem=cfg.LOSS.USE_OHEM,
        ohem_threshold=cfg.LOSS.OHEMTHRES,
        ohem_min_kept=cfg.LOSS.OHEMKEEP)
