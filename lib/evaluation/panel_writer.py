"""``--show-dir``: the panel of every image an evaluation runs, drawn from the outputs
that the evaluation scored, in every evaluation mode.

- Single-pass evaluation hands over each batch's logits. A segment's masks are a
  function of the previous exit's logits, so they are recomputed from them exactly as the
  forward computed them, and each image's GFLOPs are counted from those masks.
- Multi-pass evaluation (flip, multi-scale, sliding windows; ``evaluation.passes``) hands
  over each image's combined scores and its passes. The panel shows the predictions,
  confidences and errors of the combined scores; the GFLOPs that the evaluation counted
  for the image, summed over all its forwards; per exit, the share of pixels its segment
  computed over all those forwards; and the masks of one pass, the unflipped one nearest
  the image's own size (the crops of a sliding-window pass put together). A caption under
  the panel's title says so.
"""
import math
import os

import torch
import torch.nn.functional as F

from datasets.spec import CITYSCAPES
from models.flops import FlopsCounter
from .panels import ExitViews, views_from_outputs, write_panel


class PanelWriter:
    """Writes the panel of every image an evaluation runs, as ``<out_dir>/<name>.png``
    (``evaluation.loop.evaluate``'s ``on_batch``).

    Args:
        model (AnytimeHRNet): the evaluated model.
        out_dir (str): where the panels go.
        ignore_label (int): TRAIN.IGNORE_LABEL.
        spec (DatasetSpec): the class names and palette of the pictures.

    Attributes:
        written (list[tuple[str, PanelLayout]]): each PNG written, with its layout.
    """

    def __init__(self, model, out_dir, ignore_label=255, spec=CITYSCAPES):
        self.model = model
        self.counter = FlopsCounter(model)
        self.out_dir = out_dir
        self.ignore_label = ignore_label
        self.spec = spec
        self.written = []

    @property
    def count(self):
        """The number of panels written."""
        return len(self.written)

    def __call__(self, images, labels, names, outputs, passes=None):
        """Draw the panels of a batch.

        Args:
            images (Tensor): N x 3 x H x W normalised inputs as they ran (padded); with
                ``passes``, the one image (1 x 3 x H x W, unpadded).
            labels (Tensor): N x H x W ground truth.
            names (list[str]): the images' names.
            outputs (list[Tensor]): each exit's N x C x h x w logits; with ``passes``, its
                1 x C x H x W combined scores, as the evaluation scored them.
            passes (MultiPassResult or None): the passes of the one image.
        """
        if passes is None:
            views = views_from_outputs(self.model, outputs, self.counter, images.shape)
            captions = [[]] * len(names)
        else:
            views = [passes_views(self.model, outputs, passes)]
            captions = [passes_caption(passes, self.model.use_masks)]
        for i, name in enumerate(names):
            path = os.path.join(self.out_dir, f'{name}.png')
            layout = write_panel(self.model, images[i], path, labels[i], self.ignore_label,
                                 name, views[i], captions[i], self.spec)
            self.written.append((path, layout))


def mask_pass(result):
    """The pass whose masks the panel of a multi-pass ``result`` shows: the unflipped one
    nearest the image's own size (the first of equally near ones)."""
    unflipped = [p for p in result.passes if not p.flipped]
    return min(unflipped, key=lambda p: abs(math.log(p.size[1] / result.size[1])))


def passes_views(model, scores, result):
    """ExitViews of an image evaluated through several passes (see the module's
    docstring).

    Args:
        model (AnytimeHRNet): the evaluated model.
        scores (list[Tensor]): each exit's 1 x C x H x W combined scores.
        result (MultiPassResult): the passes (``result.cost``: the per-exit GFLOPs that
            the evaluation counted, or None).
    """
    shown = mask_pass(result)
    computed, pixels, masks = None, 0, None
    for p in result.passes:
        for window, padded, logits in zip(p.windows, p.padded, p.logits):
            crop = _forward_masks(model, logits)
            area = padded[0] * padded[1]  # what ran, padding included, as FLOPs count it
            pixels += area
            work = [m.float().mean().item() * area for m in crop]
            computed = work if computed is None else [a + b for a, b in zip(computed, work)]
            if p is shown:
                masks = _paste(masks, crop, window, padded, p.size)
    return ExitViews([s[0] for s in scores], masks, result.cost,
                     probabilities=result.probabilities,
                     computed=[c / pixels for c in computed])


def _forward_masks(model, logits):
    """Each segment's mask (h' x w', 1 = computed) in one forward whose exits gave
    ``logits`` (each 1 x C x h' x w'), as the forward computed it; empty when unmasked."""
    providers = [model.segment_masks(lg) for lg in logits[:-1]]
    return [m.at(lg.shape[-2:])[0, 0] for m, lg in zip(providers, logits) if m is not None]


def _paste(masks, crop_masks, window, padded, size):
    """Add the masks of one crop (at 1/4 of its ``padded`` size) into the masks of its
    unflipped pass (``size`` h x w, None: none yet): a pixel counts as computed when any
    crop over it computed it."""
    top, left, h, w = window
    if masks is None:
        masks = [torch.zeros(size, dtype=torch.bool) for _ in crop_masks]
    for whole, m in zip(masks, crop_masks):
        m = F.interpolate(m[None, None].float(), size=padded, mode='nearest')[0, 0, :h, :w]
        whole[top:top + h, left:left + w] |= m.bool().cpu()
    return masks


def _plural(n, word, plural=None):
    return f'{n} {word if n == 1 else plural or word + "s"}'


def passes_caption(result, masked):
    """The caption of the panel of a multi-pass ``result``: how its passes ran and were
    combined, and which pass its masks (when ``masked``) are of; none for a single
    forward of the image at its own size, whose panel needs no explaining."""
    shown = mask_pass(result)
    if result.forwards == 1 and shown.size == result.size:
        return []
    sizes = ', '.join(dict.fromkeys(f'{w}x{h}' for h, w in (p.size for p in result.passes)))
    flipped = ', unflipped and flipped' if any(p.flipped for p in result.passes) else ''
    crops = ' (sliding-window crops)' if result.forwards > len(result.passes) else ''
    forwards = _plural(result.forwards, 'forward')
    combined = 'the passes combined' if len(result.passes) > 1 else \
        'the crops combined' if result.forwards > 1 else 'the pass resized to the image'
    lines = [f'Evaluated through {_plural(len(result.passes), "pass", "passes")} ({sizes}'
             f'{flipped}), {forwards}{crops}.',
             f'Predictions, confidences and errors: {combined}; GFLOPs and % computed: '
             + (f'all {forwards}.' if result.forwards > 1 else 'its one forward.')]
    if masked:
        (h, w), width = shown.size, result.size[1]
        where = 'full-scale' if shown.size == result.size else \
            f'{w}x{h} ({w / width:.3g}x the image)'
        line = f'Masks of the unflipped {where} pass'
        if len(shown.windows) > 1:
            line += (f', its {len(shown.windows)} crops put together (bright where any '
                     f'crop computed)')
        lines.append(line + '.')
    return lines
