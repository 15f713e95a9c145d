"""PNG figures drawn with matplotlib at exact pixel sizes, and the colour legends of
pictures in a data set's palette: the strip under a panel's title
(``evaluation.panels``) and ``legend.png`` beside prediction PNGs
(``anytime.predict``)."""
import math
from dataclasses import dataclass, field

import numpy as np

from datasets.labels import CITYSCAPES_PALETTE, CLASS_NAMES
from utils.io import atomic_write

DPI = 100
FONT_PT = 12
MARGIN_PX = 6
LEGEND_LINE_PX = 24  # one line of legend entries
LEGEND_SWATCH_PX = 16  # the colour square of an entry
LEGEND_ENTRY_PX = 150  # width of an entry: the square and a name ('traffic light')
IGNORED_ENTRY = ('ignored', (0, 0, 0))


@dataclass
class PanelLayout:
    """Where the tiles, the legend's colour squares and the caption's lines of a written
    figure lie: (title, class name or line, (x, y, width, height)) in pixels of the PNG,
    and the PNG's size."""
    tiles: list
    width: int
    height: int
    legend: list = field(default_factory=list)
    caption: list = field(default_factory=list)


def legend_entries(train_id_maps, ignored=None, classes=CLASS_NAMES,
                   palette=CITYSCAPES_PALETTE):
    """The legend of pictures of ``train_id_maps`` in a data set's palette: each class
    they show, in trainId order, then black for ignored pixels if there are any.

    Args:
        train_id_maps (list[np.ndarray]): H x W trainIds (e.g. ground truth, predictions).
        ignored (np.ndarray or None): H x W bool, the pixels painted black.
        classes (sequence of str): class names (``DatasetSpec.classes``; Cityscapes').
        palette (sequence of (r, g, b)): their colours (``DatasetSpec.palette``).

    Returns:
        list[tuple[str, tuple]]: (class name, RGB) entries.
    """
    shown = set()
    for ids in train_id_maps:
        shown.update(np.unique(ids if ignored is None else ids[~ignored]).tolist())
    entries = [(classes[c], tuple(palette[c])) for c in sorted(shown)
               if 0 <= c < len(classes)]
    if ignored is not None and ignored.any():
        entries.append(IGNORED_ENTRY)
    return entries


def new_figure(width, height):
    """A white matplotlib figure of ``width`` x ``height`` pixels (Agg: no display)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor='white')


def save_figure(fig, path):
    """Write ``fig`` as the PNG ``path`` (its folder is created) and free it."""
    import matplotlib.pyplot as plt
    atomic_write(path, lambda f: fig.savefig(f, dpi=DPI, format='png'))
    plt.close(fig)


def legend_height(entries, columns):
    """Pixels that :func:`draw_legend` takes for ``entries`` in lines of ``columns``."""
    return math.ceil(len(entries) / columns) * LEGEND_LINE_PX if entries else 0


def draw_legend(fig, entries, top, columns, size):
    """Draw ``entries`` (name, RGB) in lines of ``columns`` entries LEGEND_ENTRY_PX wide,
    from ``top`` pixels below the top of a figure of ``size`` (width, height) pixels.
    Returns the boxes of their colour squares."""
    from matplotlib.patches import Rectangle
    width, height = size
    boxes = []
    for i, (name, rgb) in enumerate(entries):
        line, column = divmod(i, columns)
        x = MARGIN_PX + column * LEGEND_ENTRY_PX
        y = top + line * LEGEND_LINE_PX + (LEGEND_LINE_PX - LEGEND_SWATCH_PX) // 2
        # A grey outline, so that the square of black (ignored) or pale colours shows.
        fig.add_artist(Rectangle((x / width, 1 - (y + LEGEND_SWATCH_PX) / height),
                                 LEGEND_SWATCH_PX / width, LEGEND_SWATCH_PX / height,
                                 transform=fig.transFigure, facecolor=np.divide(rgb, 255),
                                 edgecolor='0.6', linewidth=1))
        fig.text((x + LEGEND_SWATCH_PX + 6) / width,
                 1 - (y + LEGEND_SWATCH_PX / 2) / height, name, fontsize=FONT_PT, va='center')
        boxes.append((name, (x, y, LEGEND_SWATCH_PX, LEGEND_SWATCH_PX)))
    return boxes


def write_legend(path, entries):
    """Write a PNG listing ``entries`` (name, RGB) one per line, e.g. the colours of
    prediction PNGs.

    Args:
        path (str): the PNG to write (its folder is created).
        entries (list[tuple[str, tuple]]): the names and their RGB colours.

    Returns:
        PanelLayout: the boxes of the colour squares in ``legend``; no tiles.
    """
    longest = max(len(name) for name, _ in entries)
    # At most 10 px per character at FONT_PT (panels' titles count so), after the square
    # and its gap.
    width = LEGEND_SWATCH_PX + 6 + 10 * longest + 2 * MARGIN_PX
    height = legend_height(entries, 1) + 2 * MARGIN_PX
    fig = new_figure(width, height)
    boxes = draw_legend(fig, entries, MARGIN_PX, 1, (width, height))
    save_figure(fig, path)
    return PanelLayout([], width, height, boxes)
