"""Evaluation of images of any size, alone or in mixed batches (issue 10, section 4)."""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'models'))
from tiny import spread_weights, tiny_model  # noqa: E402
from evaluation.loop import evaluate  # noqa: E402
from datasets.loaders import eval_loader, pad_collate  # noqa: E402
from evaluation.metrics import FlopsMeter  # noqa: E402
from models.flops import FlopsCounter, anytime_flops  # noqa: E402
from utils.distributed import DistContext  # noqa: E402

IGNORE = 255


def samples(sizes, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i, (h, w) in enumerate(sizes):
        label = torch.randint(0, 19, (h, w), generator=g)
        label[0] = IGNORE
        out.append((torch.randn(3, h, w, generator=g), label, f'image{i}'))
    return out


def test_pad_collate_pads_right_and_bottom_to_the_stride_and_keeps_sizes():
    images, labels, names, sizes = pad_collate(samples([(90, 200), (64, 128)]), IGNORE)
    assert images.shape == (2, 3, 96, 224) and labels.shape == (2, 96, 224)
    assert sizes.tolist() == [[90, 200], [64, 128]] and names == ['image0', 'image1']
    assert (images[0, :, 90:] == 0).all() and (images[0, :, :, 200:] == 0).all()
    assert (labels[0, 90:] == IGNORE).all() and (labels[1, :, 128:] == IGNORE).all()
    assert (labels[1, 64:] == IGNORE).all() and (labels[1, 1:64, :128] != IGNORE).all()


def run(model, data, batch_size):
    meter = FlopsMeter(FlopsCounter(model))
    loader = eval_loader(data, batch_size, DistContext(), ignore_label=IGNORE)
    matrices = evaluate(model, loader, 19, IGNORE, DistContext(), flops_meter=meter)
    return [m.mat for m in matrices], meter


def test_odd_and_mixed_sizes_evaluate_alike_at_batch_one_and_two():
    torch.manual_seed(0)
    model = spread_weights(tiny_model('adpc')).eval()
    model.mask_threshold = 0.5
    # 90 x 200 is no multiple of 32; 96 x 192 and 64 x 128 differ; the last two share a
    # padded size (64 x 128), so that batch 2 runs them together.
    data = samples([(90, 200), (96, 192), (64, 128), (64, 100)])
    one, meter_one = run(model, data, 1)
    two, meter_two = run(model, data, 2)
    assert all(torch.equal(a, b) for a, b in zip(one, two))
    assert meter_one.count == meter_two.count == 4
    assert meter_one.gflops() == meter_two.gflops()
    # Padded pixels never count: exactly the labelled pixels of the images themselves.
    valid = sum(int((label != IGNORE).sum()) for _, label, _ in data)
    assert all(int(m.sum()) == valid for m in one)
    # FLOPs are those of the padded input (90 x 200 runs as 96 x 224).
    padded = torch.nn.functional.pad(data[0][0], (0, 24, 0, 6))[None]
    assert run(model, data[:1], 1)[1].gflops() == anytime_flops(model, padded)['gflops']
