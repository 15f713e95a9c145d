"""Evaluation and validation run channels-last (models.layout): the model's weights and its
input are channels-last while the loop runs, a model validated during training gets its
mode and layout back, and the logits equal the NCHW ones up to float32 rounding (both
within reach of the exact float64 result, tests/models/rounding.py)."""
import copy
import os
import sys

import pytest
import torch
import torch.nn as nn

from evaluation.loop import evaluate
from models.layout import is_channels_last, to_inference
from utils.distributed import DistContext

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                'models'))
from rounding import exact_and_spread, within_reach  # noqa: E402
from tiny import tiny_model  # noqa: E402


def randomised(variant):
    """A tiny model in training mode with weights and statistics away from the init (whose
    N(0, 0.001) weights would make every output nearly 0); confidence masks computing
    every pixel, so that no pixel's mask can flip with rounding."""
    torch.manual_seed(0)
    model = tiny_model(variant)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
        elif isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    model.mask_threshold = 2.0  # above any confidence: every pixel computed
    return model.train()


@pytest.mark.parametrize('variant', ['rh', 'adpc'])
def test_evaluation_runs_channels_last_and_agrees_with_nchw(variant):
    model = randomised(variant)
    x = torch.randn(1, 3, 64, 96)
    labels = torch.randint(0, 19, (1, 64, 96))
    seen, outputs = [], []
    model.conv1.register_forward_pre_hook(lambda conv, args: seen.append(
        (args[0].is_contiguous(memory_format=torch.channels_last), is_channels_last(model))))
    evaluate(model, [(x, labels, ['a'])], 19, 255, DistContext(),
             on_batch=lambda images, labels, names, out: outputs.append(out))
    assert seen == [(True, True)]  # input and weights channels-last
    # As after a validation: training mode and PyTorch's default layout again.
    assert model.training and all(p.is_contiguous() for p in model.parameters())

    reference = copy.deepcopy(model).eval()
    reference.execution = 'dense'
    with torch.no_grad():
        exact, spread = exact_and_spread(lambda m: dict(enumerate(m(x.double()))), reference)
        nchw = model.eval()(x)
    assert not is_channels_last(model)
    for k, (got, plain) in enumerate(zip(outputs[0], nchw)):
        assert within_reach(got, exact[k], spread[k]), f'exit {k + 1}, channels-last'
        assert within_reach(plain, exact[k], spread[k]), f'exit {k + 1}, NCHW'


def test_a_model_set_up_for_inference_stays_channels_last():
    """Tools convert once (to_inference); the loop then changes nothing."""
    model = to_inference(randomised('rh'))
    evaluate(model, [(torch.randn(1, 3, 32, 32), torch.zeros(1, 32, 32).long(), ['a'])], 19,
             255, DistContext())
    assert is_channels_last(model) and not model.training
