"""Pictures of an anytime network at work: one PNG panel per image.

A panel holds titled tiles, four per row:

- the input and, when there is one, the ground truth;
- each exit's prediction in the Cityscapes palette (pixels the ground truth ignores black),
  titled with the share of pixels its segment computed and the GFLOPs up to it;
- for a masked model, each segment's mask: the pixels it computed, bright over a dimmed
  input;
- the confidence (top softmax probability) of exits 1-3, which the masks threshold;
- with a ground truth, each exit's errors (red) and the pixels it fixed since the previous
  exit (green).

Under the panel's title, an optional caption says what the tiles show when that needs
saying (e.g. of an image evaluated through several passes, see
``evaluation.panel_writer``), and a legend lists the classes the ground truth and the
predictions show, each with its colour (and black for ignored pixels, when there are any).

Small images are enlarged (nearest neighbour) and large ones reduced, so that a tile is
TILE_MIN_WIDTH to TILE_MAX_WIDTH pixels wide and the titles stay readable at 100% zoom.
"""
import math
import os
import textwrap
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from datasets.images import cityscapes_label, read_image
from datasets.labels import colorize
from datasets.loaders import pad_to_multiple
from datasets.spec import CITYSCAPES
from datasets.transforms import IMAGENET_MEAN, IMAGENET_STD
from models.flops import anytime_flops
from models.model_anytime import NUM_EXITS
from models.resize import upsample_to
from utils.logger import progress
from .figure import FONT_PT, LEGEND_ENTRY_PX, MARGIN_PX, PanelLayout, draw_legend, \
    legend_entries, legend_height, new_figure, save_figure

COLUMNS = 4
TILE_MIN_WIDTH, TILE_MAX_WIDTH = 384, 768
TITLE_PX = 40  # height of the title strip above a tile: two lines
CAPTION_LINE_PX = 20  # a line of the caption under the panel's title
CHAR_PX = 10  # width of a character at FONT_PT, DPI, at most (for wrapping text)


@dataclass
class ExitViews:
    """What a panel shows of one image, from one forward of the model.

    Attributes:
        logits (list[Tensor]): C x h x w logits of each exit (1/4 resolution), or the
            scores an evaluation combined from several passes (any resolution).
        masks (list[Tensor]): h x w mask of each segment (1 = computed), from the
            forward's own confidence masks; empty for an unmasked model.
        gflops (list[float] or None): mask-aware GFLOPs up to each exit.
        probabilities (bool): ``logits`` are class probabilities (passes combined), so
            the confidence is their maximum, not that of their softmax.
        computed (list[float] or None): share of the pixels each segment computed, when
            more ran than ``masks`` show (several passes); None: each mask's mean.
    """
    logits: list
    masks: list = field(default_factory=list)
    gflops: list = None
    probabilities: bool = False
    computed: list = None


@torch.no_grad()
def exit_views(model, image):
    """Run ``model`` on one image and keep every exit's logits, every segment's mask and
    each exit's mask-aware GFLOPs.

    Args:
        model (AnytimeHRNet): in eval mode.
        image (Tensor): 1 x 3 x H x W normalised input.
    """
    state = model.first_exit(image)
    logits, masks = [state.logits[0]], []
    while state.exit < NUM_EXITS:
        seg_masks = model.segment_masks(state.logits)
        if seg_masks is not None:
            masks.append(seg_masks.at(state.logits.shape[-2:])[0, 0])
        state = model.next_exit(state, seg_masks)
        logits.append(state.logits[0])
    # One image: a counting forward costs less than FlopsCounter's per-size cost table.
    return ExitViews(logits, masks, anytime_flops(model, image)['gflops'])


def views_from_outputs(model, outputs, counter=None, input_shape=None):
    """ExitViews of every image of a batch from the model's outputs, with no second
    forward: the masks of segment j are a function of exit j's (aggregated) logits,
    recomputed here exactly as the forward computed them.

    Args:
        model (AnytimeHRNet): the model that produced ``outputs``.
        outputs (list[Tensor]): N x C x h x w logits of each exit.
        counter (FlopsCounter or None): also count each image's GFLOPs from the masks.
        input_shape (torch.Size): N x 3 x H x W input of the forward (with ``counter``).

    Returns:
        list[ExitViews]: one per image.
    """
    masks = [model.segment_masks(out) for out in outputs[:-1]]
    gflops = counter.gflops(input_shape, masks) if counter is not None else None
    return [ExitViews([out[i] for out in outputs],
                      [m.at(out.shape[-2:])[i, 0] for m, out in zip(masks, outputs)
                       if m is not None],
                      None if gflops is None else gflops[i].tolist())
            for i in range(outputs[0].shape[0])]


def denormalize(image):
    """3 x H x W ImageNet-normalised RGB tensor -> H x W x 3 uint8 RGB array."""
    rgb = image.detach().cpu().float().numpy().transpose(1, 2, 0)
    rgb = rgb * np.asarray(IMAGENET_STD) + np.asarray(IMAGENET_MEAN)
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)


def tile_scale(width):
    """Factor that brings a tile ``width`` pixels wide into the readable range: a whole
    number >= 1 for small images (pixels stay square blocks), < 1 for large ones."""
    if width < TILE_MIN_WIDTH:
        return math.ceil(TILE_MIN_WIDTH / width)
    if width > TILE_MAX_WIDTH:
        return TILE_MAX_WIDTH / width
    return 1


def _resize(array, size_hw, smooth=False):
    h, w = size_hw
    if array.shape[:2] == (h, w):
        return array
    shrink = w < array.shape[1]
    mode = cv2.INTER_AREA if smooth and shrink else cv2.INTER_NEAREST
    return cv2.resize(array, (w, h), interpolation=mode)


def _overlay(rgb, mask, color, strength=0.75, dim=0.35):
    """``rgb`` dimmed, with the pixels of ``mask`` (bool) shown in full, tinted by
    ``color``."""
    out = rgb.astype(np.float32) * dim
    tinted = rgb.astype(np.float32) * (1 - strength) + np.asarray(color, np.float32) * strength
    out[mask] = tinted[mask]
    return out.astype(np.uint8)


def _confidence_rgb(confidence):
    """Viridis colours of a map of values in [0, 1]."""
    from matplotlib import colormaps
    return (colormaps['viridis'](np.clip(confidence, 0, 1))[..., :3] * 255).astype(np.uint8)


def panel_tiles(rgb, views, label=None, ignore_label=255, spec=CITYSCAPES):
    """The titled tiles of one image's panel, in rows, and the legend of their classes.

    Args:
        rgb (np.ndarray): H x W x 3 uint8 input.
        views (ExitViews): from :func:`exit_views` or :func:`views_from_outputs`.
        label (np.ndarray or None): H x W ground-truth train ids.
        ignore_label (int): TRAIN.IGNORE_LABEL.
        spec (DatasetSpec): the class names and palette of the pictures.

    Returns:
        tuple: rows of (title, H x W x 3 uint8) tiles, and the legend (see
        :func:`legend_entries`) of the ground truth and the predictions.
    """
    h, w = rgb.shape[:2]
    ignored = None if label is None else label == ignore_label
    full = [upsample_to(lg[None].float().cpu(), (h, w))[0] for lg in views.logits]
    preds = [lg.argmax(0).numpy() for lg in full]
    rows = [[(f'input {w}x{h}', rgb)]]
    if label is not None:
        rows[0].append(('ground truth (ignored: black)',
                        colorize(label, ignored, spec.palette)))

    computed = views.computed if views.computed is not None else \
        [m.float().mean().item() for m in views.masks]
    exits = []
    for k, pred in enumerate(preds, start=1):
        parts = [f'exit {k}']
        if computed and k > 1:
            parts.append(f'{computed[k - 2] * 100:.1f}% computed')
        if views.gflops is not None:
            parts.append(f'{views.gflops[k - 1]:.3g} GF')
        if label is not None:
            valid = ~ignored
            acc = (pred[valid] == label[valid]).mean() * 100 if valid.any() else float('nan')
            parts.append(f'acc {acc:.1f}%')
        exits.append((' · '.join(parts), colorize(pred, ignored, spec.palette)))
    rows.append(exits)

    if views.masks:
        rows.append([(f'segment {j} mask · {m.float().mean().item() * 100:.1f}% computed '
                      '(bright)',
                      _overlay(rgb, _resize(m.cpu().numpy().astype(np.uint8), (h, w)) > 0,
                               (255, 255, 255), strength=0.0, dim=0.25))
                     for j, m in enumerate(views.masks, start=1)])

    conf = []
    for k, lg in enumerate(views.logits[:NUM_EXITS - 1], start=1):
        scores = lg.float().cpu()
        c = (scores if views.probabilities else torch.softmax(scores, dim=0)).amax(0).numpy()
        title = f'exit {k} confidence · mean {c.mean():.2f} · 0 violet, 1 yellow'
        conf.append((title, _resize(_confidence_rgb(c), (h, w))))
    rows.append(conf)

    if label is not None:
        errors, previous_wrong = [], None
        valid = ~ignored
        for k, pred in enumerate(preds, start=1):
            wrong = (pred != label) & valid
            tile = _overlay(rgb, wrong, (255, 0, 0))
            title = f'exit {k} errors · {wrong.sum() / max(valid.sum(), 1) * 100:.1f}% wrong (red)'
            if previous_wrong is not None:
                fixed = previous_wrong & ~wrong
                tile[fixed] = (0, 200, 0)
                title += f' · {fixed.sum() / max(valid.sum(), 1) * 100:.1f}% fixed (green)'
            tile[ignored] = 0
            errors.append((title, tile))
            previous_wrong = wrong
        rows.append(errors)
    legend = legend_entries(preds + ([] if label is None else [label]), ignored,
                            spec.classes, spec.palette)
    return rows, legend


def draw_panel(rows, path, title=None, legend=(), caption=()):
    """Write ``rows`` of titled tiles (from :func:`panel_tiles`) as one PNG.

    Args:
        rows (list[list[tuple[str, np.ndarray]]]): tiles of equal size.
        path (str): the PNG to write (its folder is created).
        title (str or None): a line above the panel (e.g. the image's name).
        legend (list[tuple[str, tuple]]): (name, RGB) entries drawn under the title.
        caption (sequence of str): sentences under the title, above the legend (e.g. what
            the tiles show of several passes), each wrapped to the panel's width.

    Returns:
        PanelLayout
    """
    h, w = rows[0][0][1].shape[:2]
    scale = tile_scale(w)
    tw, th = round(w * scale), round(h * scale)
    cell_w, cell_h = tw + MARGIN_PX, th + TITLE_PX + MARGIN_PX
    width = COLUMNS * cell_w + MARGIN_PX
    legend_columns = max(1, (width - MARGIN_PX) // LEGEND_ENTRY_PX)
    head = TITLE_PX + MARGIN_PX if title else 0
    caption_top = head + (0 if title else MARGIN_PX)
    lines = [line for text in caption
             for line in textwrap.wrap(text, (width - 2 * MARGIN_PX) // CHAR_PX)]
    if lines:
        head = caption_top + len(lines) * CAPTION_LINE_PX
    legend_top = head + MARGIN_PX
    if legend:
        head += MARGIN_PX + legend_height(legend, legend_columns)
    height = head + len(rows) * cell_h + MARGIN_PX
    fig = new_figure(width, height)
    if title:
        fig.text(MARGIN_PX / width, 1 - (MARGIN_PX + TITLE_PX / 2) / height, title,
                 fontsize=FONT_PT + 1, weight='bold', va='center')
    caption_boxes = []
    for i, line in enumerate(lines):
        y = caption_top + i * CAPTION_LINE_PX
        fig.text(MARGIN_PX / width, 1 - (y + CAPTION_LINE_PX / 2) / height, line,
                 fontsize=FONT_PT, va='center')
        caption_boxes.append((line, (MARGIN_PX, y, width - 2 * MARGIN_PX, CAPTION_LINE_PX)))
    boxes = draw_legend(fig, legend, legend_top, legend_columns, (width, height))
    placed = []
    for r, row in enumerate(rows):
        for c, (name, tile) in enumerate(row):
            x = MARGIN_PX + c * cell_w
            y = head + r * cell_h + TITLE_PX + MARGIN_PX  # top of the picture
            ax = fig.add_axes([x / width, 1 - (y + th) / height, tw / width, th / height])
            ax.imshow(_resize(tile, (th, tw), smooth=True), interpolation='nearest')
            ax.set_axis_off()
            fig.text(x / width, 1 - (y - TITLE_PX / 2) / height, _wrap(name, tw),
                     fontsize=FONT_PT, va='center', linespacing=1.1)
            placed.append((name, (x, y, tw, th)))
    save_figure(fig, path)
    return PanelLayout(placed, width, height, boxes, caption_boxes)


def _wrap(text, width_px):
    """Break a title into at most two lines that stay within their tile (about 10 px per
    character at FONT_PT, DPI), at ' · ' separators where possible."""
    chars = max(8, int(width_px / CHAR_PX))
    lines, line = [], ''
    for part in text.split(' · '):
        candidate = f'{line} · {part}' if line else part
        if len(candidate) <= chars or not line:
            line = candidate
        else:
            lines.append(line)
            line = part
    lines.append(line)
    if len(lines) > 2:
        lines = [lines[0], ' · '.join(lines[1:])]
    return '\n'.join(l if len(l) <= chars else l[:chars - 1] + '…' for l in lines)


def write_panel(model, image, path, label=None, ignore_label=255, name=None, views=None,
                caption=(), spec=CITYSCAPES):
    """Panel of one image: run the model (unless ``views`` are given) and draw.

    Args:
        model (AnytimeHRNet): in eval mode.
        image (Tensor): 3 x H x W normalised input.
        path (str): PNG to write.
        label (Tensor or np.ndarray or None): H x W ground truth.
        ignore_label (int): TRAIN.IGNORE_LABEL.
        name (str or None): title of the panel.
        views (ExitViews or None): precomputed views (e.g. from an evaluation's outputs).
        caption (sequence of str): sentences under the title (see :func:`draw_panel`).
        spec (DatasetSpec): the class names and palette of the pictures.

    Returns:
        PanelLayout
    """
    if views is None:
        padded = pad_to_multiple(image)
        device = next(model.parameters()).device
        views = crop_views(exit_views(model, padded[None].to(device)), *image.shape[-2:],
                           padded.shape[-2:])
    if label is not None:
        label = np.asarray(label.cpu() if torch.is_tensor(label) else label)
        if not (label != ignore_label).any():
            label = None  # an image-only split: no ground truth to show
    title = [name] if name else []
    if model.use_masks:
        title.append(f'masks: {model.mask_criterion} {model.mask_threshold:.4g}')
    rows, legend = panel_tiles(denormalize(image), views, label, ignore_label, spec)
    return draw_panel(rows, path, ' · '.join(title) or None, legend, caption)


def panels_of_files(model, paths, out_dir, ignore_label=255, log=print, spec=CITYSCAPES):
    """Panels of image files (with their Cityscapes ground truth when it lies next to
    them in the usual layout), as ``<out_dir>/<image stem>.png``, in ``spec``'s colours.

    Returns:
        list[str]: the PNGs written.
    """
    written = []
    for path in progress(paths, 'panels'):
        image, _ = read_image(path)
        name = os.path.splitext(os.path.basename(path))[0]
        out = os.path.join(out_dir, f'{name}.png')
        label = cityscapes_label(path, ignore_label) if spec.name == 'cityscapes' else None
        write_panel(model, image, out, label, ignore_label, name, spec=spec)
        log(out)
        written.append(out)
    return written


def crop_views(views, h, w, padded_hw):
    """The part of ExitViews of a padded input that covers the H x W image (logits and
    masks at 1/4 resolution keep their share of the padded size)."""
    ph, pw = padded_hw
    if (ph, pw) == (h, w):
        return views
    lh, lw = views.logits[0].shape[-2:]
    ch, cw = math.ceil(lh * h / ph), math.ceil(lw * w / pw)
    return ExitViews([lg[:, :ch, :cw] for lg in views.logits],
                     [m[:ch, :cw] for m in views.masks], views.gflops)


def panels_of_dataset(model, dataset, out_dir, num, ignore_label=255, log=print,
                      spec=CITYSCAPES):
    """Panels of the first ``num`` images of an evaluation ``dataset``, named after them,
    in ``spec``'s colours.

    Returns:
        list[str]: the PNGs written.
    """
    written = []
    for i in progress(range(min(num, len(dataset))), 'panels'):
        image, label, name = dataset[i]
        out = os.path.join(out_dir, f'{name}.png')
        write_panel(model, image, out, label, ignore_label, name, spec=spec)
        log(out)
        written.append(out)
    return written
