"""The network against the original release: its weights loaded into our model give the
original's eval outputs, train-mode losses and gradients (tests/data/ref_*, written by
the original code; see tests/data/README.md)."""
import argparse
import json
import os

import pytest
import torch
import torch.nn as nn

from config import config, update_config
from engine.criterion import MultiExitLoss
from models.model_anytime import build_model
from utils.checkpoint import load_model_weights, read_checkpoint

DATA = os.path.join(os.path.dirname(__file__), '..', 'data')
CASES = ['ref_ee', 'ref_adpc']
# float32 on CPU: our outputs agree with the original's to about 1e-5 of their std.
OUTPUT_TOL = 1e-5
# Gradients: within GRAD_TOL of each tensor's root mean square, plus GRAD_FLOOR of the
# largest one (a few tensors, e.g. some Lambdas, have gradients near rounding level).
GRAD_TOL = 1e-4
GRAD_FLOOR = 1e-7
# Gradients of conv biases feeding a train-mode BatchNorm are 0 in exact arithmetic:
# what is left is rounding noise, only bounded by NOISE_FLOOR of the largest gradient.
NOISE_FLOOR = 1e-5


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


def assert_close(mine, ref, tol, what):
    """Max |mine - ref| within ``tol`` x the std of ``ref``."""
    scale = ref.std().item()
    err = (mine - ref).abs().max().item()
    assert err <= tol * scale, f'{what}: max error {err:.3g} > {tol} x std {scale:.3g}'


def rms(t):
    return t.pow(2).mean().sqrt().item()


@pytest.mark.parametrize('execution', ['dense', 'sparse'])
@pytest.mark.parametrize('case', CASES)
def test_eval_outputs_match_the_original(case, execution):
    ref = expected(case)
    model = reference_model(case, 'MASK.EXECUTION', execution).eval()
    with torch.no_grad():
        outs = model(ref['input'])
    assert len(outs) == len(ref['eval_outputs'])
    for k, (mine, theirs) in enumerate(zip(outs, ref['eval_outputs']), start=1):
        assert mine.shape == theirs.shape
        assert_close(mine, theirs, OUTPUT_TOL, f'exit {k}')


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
                    names.add(f'{prefix}.{name}.bias')
    return names


@pytest.mark.parametrize('case', CASES)
def test_train_losses_and_gradients_match_the_original(case):
    ref = expected(case)
    cfg = reference_cfg(case)
    model = reference_model(case).train()
    weights = read_checkpoint(os.path.join(DATA, f'{case}.pth'))['loss.criterion.weight']
    assert torch.equal(weights, ref['class_weights'])
    loss = MultiExitLoss([1, 1, 1, 1], cfg.DATASET.NUM_CLASSES, ref['class_weights'],
                         ignore_label=cfg.TRAIN.IGNORE_LABEL)
    total, losses = loss(model(ref['input']), ref['label'])
    assert [l.item() for l in losses] == pytest.approx(ref['train_losses'], rel=1e-5)
    total.backward()

    grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    assert set(grads) == set(ref['train_grads'])
    noise = bias_feeding_batch_norm(model)
    assert noise, 'the heads have conv biases before BatchNorm'
    largest = max(rms(g) for g in ref['train_grads'].values())
    for name, theirs in ref['train_grads'].items():
        mine = grads[name]
        if name in noise:
            bound = NOISE_FLOOR * largest
            assert mine.abs().max() <= bound and theirs.abs().max() <= bound, name
        else:
            err = (mine - theirs).abs().max().item()
            bound = GRAD_TOL * rms(theirs) + GRAD_FLOOR * largest
            assert err <= bound, f'{name}: max error {err:.3g} > {bound:.3g}'

