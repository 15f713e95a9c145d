"""--show-dir in multi-pass evaluation (sliding windows, flip, multi-scale): one panel per
image, whose predictions are the ones the evaluation scored, with the GFLOPs and the
computed shares of all its forwards and the masks of the pass its caption names."""
import os
import sys

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from datasets.labels import CITYSCAPES_PALETTE
from evaluation.loop import evaluate
from evaluation.metrics import ConfusionMatrix, FlopsMeter
from evaluation.panel_writer import PanelWriter, passes_caption, passes_views
from evaluation.panels import TITLE_PX
from evaluation.passes import EvalModes, multi_pass_inference, scaled_size
from models.flops import FlopsCounter
from utils.distributed import DistContext

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'models'))
from tiny import mixed_mask_model  # noqa: E402

H, W = 32, 64
NAMES = ['a', 'b']
MODES = {
    # 32 x 32 crops at columns 0, 21 and 32.
    'sliding windows': EvalModes(crop_size=(32, 32)),
    'flip': EvalModes(flip=True),
    # 16 x 32 in one forward; 48 x 96 in four 32 x 64 crops (rows 0, 16; columns 0, 32).
    'multi-scale': EvalModes(scales=(0.5, 1.5), base_size=W, crop_size=(32, 64)),
}
# What the caption says of the masks, per mode.
MASKS_CAPTION = {
    'sliding windows': 'Masks of the unflipped full-scale pass, its 3 crops put together',
    'flip': 'Masks of the unflipped full-scale pass.',
    'multi-scale': 'Masks of the unflipped 96x48 (1.5x the image) pass, its 4 crops put '
                   'together',
}


@pytest.fixture(scope='module')
def data():
    """Two smooth random images (whose exits predict several classes), labels with some
    pixels ignored, and a tiny masked model whose masks hold computed and skipped
    pixels."""
    torch.manual_seed(2)
    images = F.interpolate(torch.randn(len(NAMES), 3, 4, 8) * 2, size=(H, W), mode='bilinear')
    labels = torch.randint(0, 19, (len(NAMES), H, W))
    labels[:, :4] = 255
    model = mixed_mask_model('adpc', images[:1], 2)
    model.execution = 'dense'  # the masks read from its forwards are those it ran with
    return model, images, labels


@pytest.fixture(scope='module', params=list(MODES))
def shown(request, data, tmp_path_factory):
    """Evaluate in one mode with a PanelWriter; also every image's passes run again
    independently, recording each forward's own masks."""
    model, images, labels = data
    modes = MODES[request.param]
    out = tmp_path_factory.mktemp('show')
    writer = PanelWriter(model, str(out))
    meter = FlopsMeter(FlopsCounter(model))
    matrices = evaluate(model, [(images, labels, NAMES)], 19, 255, DistContext(),
                        flops_meter=meter, modes=modes, on_batch=writer)
    return request.param, writer, meter, matrices, [rerun(model, x[None], modes)
                                                    for x in images]


def rerun(model, image, modes):
    """The passes of one image and, per forward, its padded input shape and the masks
    it ran with."""
    counter, forwards = FlopsCounter(model), []

    def forward(x):
        with torch.no_grad():
            outputs, masks = model(x, return_masks=True)
        forwards.append((x.shape, masks, outputs))
        return outputs, counter.gflops(x.shape, masks).sum(dim=0).tolist()
    return multi_pass_inference(forward, image, modes), forwards


def tile_predictions(path, layout, k):
    """Exit k's prediction read back from its tile of a written panel: train ids, -1
    where the tile is black (ignored)."""
    (x, y, tw, th), = [box for title, box in layout.tiles if title.startswith(f'exit {k} · ')]
    scale = tw // W
    png = cv2.imread(path)[:, :, ::-1]
    centres = png[y + scale // 2:y + th:scale, x + scale // 2:x + tw:scale]
    colours = {colour: c for c, colour in enumerate(CITYSCAPES_PALETTE)}
    colours[(0, 0, 0)] = -1
    return np.vectorize(lambda r, g, b: colours[(r, g, b)])(*centres.transpose(2, 0, 1))


def test_one_panel_per_image_named_after_it(shown):
    mode, writer, meter, _, _ = shown
    assert writer.count == len(NAMES) == meter.count
    assert sorted(os.listdir(os.path.dirname(writer.written[0][0]))) == \
        [f'{n}.png' for n in NAMES]
    for path, layout in writer.written:
        assert cv2.imread(path).shape[:2] == (layout.height, layout.width)


def test_panel_predictions_are_the_scored_ones(shown, data):
    mode, writer, _, matrices, reruns = shown
    _, _, labels = data
    classes = {}  # per exit, the classes it predicted
    for k in range(1, 5):
        from_panels = ConfusionMatrix(19, 255)
        for (path, layout), label, (result, _) in zip(writer.written, labels, reruns):
            predicted = tile_predictions(path, layout, k)
            valid = label.numpy() != 255
            scored = result.scores(k - 1)[0].argmax(0).numpy()
            assert np.array_equal(predicted[valid], scored[valid]), (mode, k)
            if k < 4:  # the confidence of the combined scores, which are probabilities
                confidence = result.scores(k - 1)[0].amax(0).mean().item()
                assert any(t.startswith(f'exit {k} confidence · mean {confidence:.2f} · ')
                           for t, _ in layout.tiles)
            assert (predicted[~valid] == -1).all()
            from_panels.add(torch.from_numpy(predicted[valid]), label[valid])
            classes.setdefault(k, set()).update(np.unique(scored[valid]).tolist())
        assert torch.equal(from_panels.mat, matrices[k - 1].mat), (mode, k)
    assert max(len(c) for c in classes.values()) > 1  # the comparison compares something


def test_panel_gflops_and_computed_shares_are_of_every_forward(shown):
    mode, writer, meter, _, reruns = shown
    for (path, layout), (result, forwards) in zip(writer.written, reruns):
        assert len(forwards) == result.forwards > 1
        titles = [t for t, _ in layout.tiles if t.split(' · ')[0].startswith('exit ')
                  and 'confidence' not in t and 'errors' not in t]
        area = sum(shape[-2] * shape[-1] for shape, _, _ in forwards)
        for k, title in enumerate(titles, start=1):
            assert f'{result.cost[k - 1]:.3g} GF' in title
            if k > 1:  # segment k-1, over every forward, padding included
                share = sum(masks[k - 2].at(outputs[k - 2].shape[-2:]).float().mean().item()
                            * shape[-2] * shape[-1] for shape, masks, outputs in forwards)
                assert f'{share / area * 100:.1f}% computed' in title
    # The panels' GFLOPs are the evaluation's own: their mean is what it reports.
    mean = np.mean([result.cost for result, _ in reruns], axis=0)
    assert meter.gflops() == pytest.approx(mean.tolist(), rel=1e-12)


def expected_masks(result, forwards, shown):
    """The masks of the unflipped pass ``shown``: the masks its forwards ran with
    (upsampled nearest), a pixel computed if any crop over it was."""
    start = sum(len(p.windows) for p in result.passes[:result.passes.index(shown)])
    masks = [torch.zeros(shown.size, dtype=torch.bool) for _ in range(3)]
    for (top, left, h, w), (shape, used, outputs) in zip(shown.windows, forwards[start:]):
        for whole, provider, out in zip(masks, used, outputs):
            m = provider.at(out.shape[-2:]).float()
            m = F.interpolate(m, size=shape[-2:], mode='nearest')[0, 0, :h, :w]
            whole[top:top + h, left:left + w] |= m.bool()
    return masks


def test_panel_masks_are_those_of_the_pass_the_caption_names(shown, data):
    mode, writer, _, _, reruns = shown
    model, shares = data[0], []
    for (path, layout), (result, forwards) in zip(writer.written, reruns):
        scores = [result.scores(k) for k in range(4)]
        views = passes_views(model, scores, result)
        size = scaled_size((H, W), 1.5, W) if mode == 'multi-scale' else (H, W)
        pass_, = [p for p in result.passes if p.size == size and not p.flipped]
        assert len(views.masks) == 3
        for got, want in zip(views.masks, expected_masks(result, forwards, pass_)):
            assert torch.equal(got, want)
        shares += [m.float().mean().item() for m in views.masks]
        caption = passes_caption(result, masked=True)
        assert MASKS_CAPTION[mode] in caption[-1]
        # The caption is drawn, line by line, between the title and the legend.
        drawn = ' '.join(line for line, _ in layout.caption)
        assert drawn == ' '.join(' '.join(caption).split())
        bottom = max(y + h for _, (x, y, w, h) in layout.caption)
        assert bottom <= min(y for _, (x, y, w, h) in layout.legend)
        assert min(y for _, (x, y, w, h) in layout.caption) >= TITLE_PX  # under the title
    assert any(0 < share < 1 for share in shares)  # computed and skipped pixels


def test_one_forward_of_the_image_as_it_is_needs_no_caption(data):
    model, images, _ = data
    result, _ = rerun(model, images[:1], EvalModes(scales=(1.0,), base_size=W))
    assert result.forwards == 1 and passes_caption(result, masked=True) == []
    half, _ = rerun(model, images[:1], EvalModes(scales=(0.5,), base_size=W))
    assert passes_caption(half, masked=True) == [
        'Evaluated through 1 pass (32x16), 1 forward.',
        'Predictions, confidences and errors: the pass resized to the image; GFLOPs and '
        '% computed: its one forward.',
        'Masks of the unflipped 32x16 (0.5x the image) pass.']


def test_no_panel_for_evaluated_images_is_an_error():
    from evaluation.run import report_panels
    from utils.errors import UserError
    with pytest.raises(UserError, match='--show-dir P: no panel was drawn, since none of the '
                                        '3 evaluated images got one'):
        report_panels(0, 3, 'P', 'list/cityscapes/val.lst')
    report_panels(3, 3, 'P', 'list/cityscapes/val.lst')  # all drawn: no error
