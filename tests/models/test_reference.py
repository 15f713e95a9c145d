"""The network against the original release: its weights loaded into our model give the
original's eval outputs, train-mode losses and gradients (tests/data/ref_*, written by
the original code; see tests/data/README.md)."""
import argparse
import json
import math
import os

import pytest
import torch
import torch.nn as nn

from config import config, update_config
from engine.criterion import MultiExitLoss
from models.model_anytime import build_model
from utils.checkpoint import load_model_weights, read_checkpoint

import rounding

DATA = os.path.join(os.path.dirname(__file__), '..', 'data')
CASES = ['ref_ee', 'ref_adpc']
# Tolerances (see tests/models/rounding.py): the exact result is our network run in
# float64 (the same weights, input and masks); a float32 run, ours or the original's, is
# within SAFETY x the spread of float64 runs with float32-sized rounding errors.
SAFETY = rounding.SAFETY
U = rounding.U


def reference_cfg(case, *opts):
    with open(os.path.join(DATA, f'{case}.json')) as f:
        spec = json.load(f)
    args = argparse.Namespace(cfg=os.path.join(DATA, spec['config']),
                              opts=[str(o) for o in spec['overrides'] + list(opts)])
    return update_config(config.clone(), args)


def reference_model(case, *opts):
    model = build_model(reference_cfg(case, *opts))
    load_model_weights(model, os.path.join(DATA, f'{case}.pth'))
    return model


def expected(case):
    return torch.load(os.path.join(DATA, f'{case}_expected.pth'), weights_only=True)


def within(mine, theirs, exact, bound, what):
    """Our float32 result and the original's each within ``bound`` (a number, or a tensor
    that broadcasts) of ``exact``."""
    for who, value in (('ours', mine), ('original', theirs)):
        err = (value.double() - exact).abs()
        assert (err <= bound).all(), \
            f'{what} ({who}): error {(err / bound).max().item():.3g} x its bound'


def eval_outputs(model, x, masks=None):
    with torch.no_grad():
        return model(x, masks=masks, return_masks=True)


@pytest.mark.numerics
@pytest.mark.parametrize('execution', ['dense', 'sparse'])
@pytest.mark.parametrize('case', CASES)
def test_eval_outputs_match_the_original(case, execution):
    ref = expected(case)
    model = reference_model(case, 'MASK.EXECUTION', execution).eval()
    outs, used = eval_outputs(model, ref['input'])
    # The float64 runs use the masks of the float32 run: they would move a pixel whose
    # confidence is within rounding of MASK.CONF_THRE (in the reference data, the
    # nearest is 1e-4 away) to the other side.
    masks = None if used[0] is None else used
    dense = reference_model(case, 'MASK.EXECUTION', 'dense').eval()
    exact, spread = rounding.exact_and_spread(
        lambda m: dict(enumerate(eval_outputs(m, ref['input'].double(), masks)[0])), dense)
    assert len(outs) == len(ref['eval_outputs'])
    for k, (mine, theirs) in enumerate(zip(outs, ref['eval_outputs'])):
        assert mine.shape == theirs.shape
        within(mine, theirs, exact[k], SAFETY * spread[k], f'exit {k + 1}')


def bias_feeding_batch_norm(model):
    """Names of conv biases followed directly by a BatchNorm (in one nn.Sequential).
    Masked convolutions are left out: their masks make a bias vary over the pixels."""
    names = set()
    for prefix, module in model.named_modules():
        if isinstance(module, nn.Sequential):
            children = list(module.named_children())
            for (name, conv), (_, norm) in zip(children, children[1:]):
                if type(conv) is nn.Conv2d and conv.bias is not None and \
                        isinstance(norm, nn.BatchNorm2d):
                    names.add(f'{prefix}.{name}')
    return names


def train_pass(case, model, masks=None, output_grads=()):
    """Per-exit losses and parameter gradients of one train-mode pass, as one dict
    ('loss k' and parameter names), plus the gradients at the outputs of the modules
    named in ``output_grads`` (as '<name> output'); and the masks the pass used."""
    ref = expected(case)
    cfg = reference_cfg(case)
    result = {}

    def keep_output_grad(name):
        def hook(module, args, out):
            out.register_hook(lambda g: result.__setitem__(f'{name} output', g))
        return hook

    modules = dict(model.named_modules())
    for name in output_grads:
        modules[name].register_forward_hook(keep_output_grad(name))
    loss = MultiExitLoss([1, 1, 1, 1], cfg.DATASET.NUM_CLASSES, ref['class_weights'],
                         ignore_label=cfg.TRAIN.IGNORE_LABEL)
    dtype = next(model.parameters()).dtype
    logits, used = model(ref['input'].to(dtype), masks=masks, return_masks=True)
    total, losses = loss.to(dtype)(logits, ref['label'])
    total.backward()
    result.update({f'loss {k}': l.detach() for k, l in enumerate(losses, start=1)})
    result.update({name: p.grad for name, p in model.named_parameters() if p.grad is not None})
    return result, used


@pytest.mark.numerics
@pytest.mark.parametrize('case', CASES)
def test_train_losses_and_gradients_match_the_original(case):
    ref = expected(case)
    weights = read_checkpoint(os.path.join(DATA, f'{case}.pth'))['loss.criterion.weight']
    assert torch.equal(weights, ref['class_weights'])
    model = reference_model(case).train()
    zero = bias_feeding_batch_norm(model)
    assert zero, 'the heads have conv biases before BatchNorm'
    mine, used = train_pass(case, model)
    # The float64 runs use the masks of the float32 run (see the eval test).
    masks = None if used[0] is None else used
    exact, spread = rounding.exact_and_spread(
        lambda m: train_pass(case, m, masks, output_grads=zero)[0], model)
    output_grads = {conv: exact.pop(f'{conv} output') for conv in zero}

    theirs = dict(ref['train_grads'])
    theirs.update({f'loss {k}': torch.tensor(l) for k, l in enumerate(ref['train_losses'], 1)})
    assert set(mine) == set(theirs) == set(exact)
    pixels = ref['label'].numel()
    for name in exact:
        if name.startswith('loss'):
            # A (weighted) mean over the label's pixels: besides the rounding of the
            # logits (in the spread), its own sum adds sqrt(pixels)·u of its value.
            bound = spread[name] + math.sqrt(pixels) * U * exact[name].abs().item()
        elif name.removesuffix('.bias') in zero:
            # 0 in exact arithmetic, BatchNorm's backward subtracting the channel means
            # of the gradient from it. In float32 what is left is the rounding of those
            # means (P-term sums over the P pixels of a channel: sqrt(P)·u of their
            # size) added up P times: sqrt(P)·u·sum_p |g_p|, g the gradient at the conv
            # output. The float64 value is ~1e-17: the bound is taken around 0.
            grad = output_grads[name.removesuffix('.bias')]  # N x C x h x w
            bound = math.sqrt(grad[:, 0].numel()) * U * grad.abs().sum((0, 2, 3))
            exact[name] = torch.zeros_like(exact[name])
        else:
            bound = spread[name]
        within(mine[name], theirs[name], exact[name], SAFETY * bound, name)
