"""Panels: the documented tiles at readable sizes, with the masks the model really used."""
import os
import sys

import cv2
import numpy as np
import pytest
import torch

from evaluation.figure import legend_entries
from evaluation.panels import TILE_MAX_WIDTH, TILE_MIN_WIDTH, draw_panel, exit_views, \
    views_from_outputs, write_panel
from datasets.labels import CITYSCAPES_PALETTE, CLASS_NAMES, colorize
from models.masked_conv import MaskedConv2d
from models.resize import upsample_to

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'models'))
from tiny import mixed_mask_model, tiny_model  # noqa: E402


def model_masks(model, x):
    """The mask each segment ran with, at the logits' resolution, read inside the model
    (dense execution: every masked convolution of the segment reads its slot)."""
    seen = {}
    logit_size = tuple(model(x, stop_at=1)[0].shape[-2:])

    def hook(module, inputs, output):
        if tuple(output.shape[-2:]) == logit_size:
            seen.setdefault(module.slot, module.current_mask(logit_size)[0, 0].clone())
    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, MaskedConv2d)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return [seen[slot] for slot in model.mask_slots]


def test_panel_masks_equal_the_models_masks():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 64, 128)
    model = mixed_mask_model('adpc', x)
    # Masks read inside the model need the dense path; compare on the same path, since
    # the threshold sits at the median confidence, where the 1e-7 differences between
    # dense and sparse logits flip pixels.
    model.execution = 'dense'
    views = exit_views(model, x)
    expected = model_masks(model, x)
    assert len(views.masks) == 3
    assert 0 < expected[0].mean() < 1  # computed and skipped pixels
    for got, want in zip(views.masks, expected):
        assert torch.equal(got, want)
    with torch.no_grad():
        from_outputs, = views_from_outputs(model, model(x))
    for got, want in zip(from_outputs.masks, expected):
        assert torch.equal(got, want)


def test_masked_panel_with_ground_truth_has_every_tile(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(1, 3, 64, 128)
    model = mixed_mask_model('adpc', x)
    label = np.random.RandomState(0).randint(0, 19, (64, 128))
    label[:8] = 255
    path = str(tmp_path / 'panel.png')
    layout = write_panel(model, x[0], path, label, 255, name='img')
    titles = [t for t, _ in layout.tiles]
    assert titles[:2] == ['input 128x64', 'ground truth (ignored: black)']
    assert [t.split(' · ')[0] for t in titles[2:6]] == [f'exit {k}' for k in (1, 2, 3, 4)]
    assert all('GF' in t and 'acc' in t for t in titles[2:6])
    assert all('% computed' in t for t in titles[3:6])
    masks = exit_views(model, x).masks
    for j, (title, m) in enumerate(zip(titles[6:9], masks), start=1):
        assert title.startswith(f'segment {j} mask · {m.mean().item() * 100:.1f}% computed')
    assert [t.split(' · ')[0] for t in titles[9:12]] == [f'exit {k} confidence' for k in (1, 2, 3)]
    assert [t.split(' · ')[0] for t in titles[12:16]] == [f'exit {k} errors' for k in (1, 2, 3, 4)]
    assert len(titles) == 16
    # Small images are enlarged to a readable tile; the PNG is the size the layout says.
    png = cv2.imread(path)
    assert png.shape[:2] == (layout.height, layout.width)
    x0, y0, w, h = layout.tiles[0][1]
    assert TILE_MIN_WIDTH <= w <= TILE_MAX_WIDTH and w == 3 * 128 and h == 3 * 64
    # The ground-truth tile shows the palette, ignored pixels black.
    x0, y0, w, h = layout.tiles[1][1]
    tile = png[y0:y0 + h, x0:x0 + w, ::-1]
    assert (tile[:8 * 3 - 2] == 0).all()
    row, col = 40, 10
    assert tuple(tile[row * 3 + 1, col * 3 + 1]) == CITYSCAPES_PALETTE[label[row, col]]


def test_unmasked_panel_without_ground_truth_and_a_large_input(tmp_path):
    model = tiny_model('rh').eval()
    layout = write_panel(model, torch.randn(3, 64, 96), str(tmp_path / 'p.png'))
    titles = [t for t, _ in layout.tiles]
    assert len(titles) == 1 + 4 + 3  # input, exits, confidences: no masks, no errors
    assert not any('computed' in t or 'errors' in t for t in titles)
    # A 1024 x 2048 input: tiles reduced to TILE_MAX_WIDTH, panel 4 tiles wide.
    rgb = np.zeros((1024, 2048, 3), np.uint8)
    layout = draw_panel([[('input', rgb), ('b', rgb)], [('c', rgb)] * 4], str(tmp_path / 'l.png'))
    assert [box[2:] for _, box in layout.tiles] == [(TILE_MAX_WIDTH, TILE_MAX_WIDTH // 2)] * 6
    assert cv2.imread(str(tmp_path / 'l.png')).shape[:2] == (layout.height, layout.width)
    assert layout.width < 4 * TILE_MAX_WIDTH + 100


def legend_colours(path, layout):
    """The RGB at the centre of each colour square of a written legend, by name."""
    png = cv2.imread(path)[:, :, ::-1]
    return {name: tuple(png[y + h // 2, x + w // 2]) for name, (x, y, w, h) in layout.legend}


def test_the_legend_lists_the_classes_the_panel_shows_in_their_colours(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(1, 3, 64, 128)
    model = mixed_mask_model('adpc', x)
    label = np.full((64, 128), 255)
    label[8:, :64], label[8:, 64:] = 0, 13  # road and car, the top rows ignored
    path = str(tmp_path / 'panel.png')
    layout = write_panel(model, x[0], path, label, 255, name='img')
    predicted = set()
    for logits in exit_views(model, x).logits:
        full = upsample_to(logits[None].float(), (64, 128))  # as the exit tiles are drawn
        predicted.update(full[0].argmax(0)[8:].unique().tolist())  # not the ignored rows
    shown = sorted(predicted | {0, 13})
    assert [name for name, _ in layout.legend] == [CLASS_NAMES[c] for c in shown] + ['ignored']
    expected = {CLASS_NAMES[c]: CITYSCAPES_PALETTE[c] for c in shown}
    assert legend_colours(path, layout) == dict(expected, ignored=(0, 0, 0))
    # The legend lies above every tile.
    assert max(y + h for _, (x, y, w, h) in layout.legend) < min(y for _, (x, y, w, h) in
                                                                  layout.tiles)


def test_legend_entries_skip_ignored_pixels_and_unknown_ids():
    ids = np.array([[0, 5, 255], [18, 5, 7]])
    assert legend_entries([ids]) == [(CLASS_NAMES[c], CITYSCAPES_PALETTE[c])
                                     for c in (0, 5, 7, 18)]
    ignored = np.array([[False, False, True], [True, False, True]])
    assert legend_entries([ids], ignored) == [('road', CITYSCAPES_PALETTE[0]),
                                              ('pole', CITYSCAPES_PALETTE[5]),
                                              ('ignored', (0, 0, 0))]


def test_colorize_paints_the_palette_and_ignored_pixels_black():
    ids = np.array([[0, 18, 255]])
    rgb = colorize(ids, ignore_mask=np.array([[False, True, False]]))
    assert tuple(rgb[0, 0]) == CITYSCAPES_PALETTE[0]
    assert tuple(rgb[0, 1]) == (0, 0, 0) and tuple(rgb[0, 2]) == (0, 0, 0)


def test_evaluation_writes_the_panel_of_every_image_from_its_own_outputs(tmp_path):
    """test_ee.py --show-dir: evaluate's on_batch draws each image's panel; it equals the
    panel tools/visualize.py draws with a forward of its own."""
    from evaluation.loop import evaluate
    from evaluation.panel_writer import PanelWriter
    from utils.distributed import DistContext
    torch.manual_seed(0)
    images = torch.randn(2, 3, 32, 64)
    model = mixed_mask_model('adpc', images[:1])
    model.execution = 'dense'
    labels = torch.randint(0, 19, (2, 32, 64))
    writer = PanelWriter(model, str(tmp_path / 'show'))
    evaluate(model, [(images, labels, ['a', 'b'])], 19, 255, DistContext(), on_batch=writer)
    assert writer.count == 2 and sorted(os.listdir(tmp_path / 'show')) == ['a.png', 'b.png']
    write_panel(model, images[1], str(tmp_path / 'b.png'), labels[1], 255, name='b')
    assert (tmp_path / 'show' / 'b.png').read_bytes() == (tmp_path / 'b.png').read_bytes()
