"""Config keys that change the network: MASK.AGGR, MASK.CRIT with MASK.ENTROPY_THRE,
MASK.INTERPOLATION and MODEL.EXTRA.EARLY_DETACH, each read through ``build_model``."""
import pytest
import torch

from models.confidence import confidence_mask
from models.masked_conv import MaskedConv2d
from models.model_anytime import build_model
from rounding import exact_and_spread, within_reach
from tiny import median_confidence, spread_weights, tiny_cfg


def built(variant, *opts, x=None):
    """A tiny model built from the config, with spread weights (mixed masks on ``x``)."""
    model = spread_weights(build_model(tiny_cfg(variant, *opts)), seed=0).eval()
    if x is not None:
        model.mask_threshold = median_confidence(model, x)
    return model


@pytest.mark.numerics
@pytest.mark.parametrize('execution', ['dense', 'sparse'])
def test_aggregation_none_keeps_the_new_exit_at_confident_pixels(execution):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    copy = built('adpc', 'MASK.EXECUTION', execution, x=x)
    plain = built('adpc', 'MASK.EXECUTION', execution, 'MASK.AGGR', 'none')
    plain.load_state_dict(copy.state_dict())
    plain.mask_threshold = copy.mask_threshold
    with torch.no_grad():
        with_copy, (without, masks) = copy(x), plain(x, return_masks=True)
        # The exact logits without aggregation: the network run dense in float64 on the
        # same masks, and how far float32 may be from them (tests/models/rounding.py).
        plain.execution = 'dense'
        exact, spread = exact_and_spread(lambda m: dict(enumerate(m(x.double(), masks=masks))),
                                         plain)
    # Segment 1 gets the same masks in both (from exit 1): exit 2 before aggregation is
    # the same, and only the copy model takes exit 1's logits at confident pixels.
    compute = confidence_mask(with_copy[0], with_copy[0].shape[-2:], 'conf_thre',
                              copy.mask_threshold).bool().expand_as(with_copy[0])
    assert 0 < compute.float().mean() < 1
    assert torch.equal(with_copy[1][~compute], with_copy[0][~compute])
    assert not torch.isclose(without[1][~compute], without[0][~compute]).any()
    assert within_reach(with_copy[1][compute], exact[1][compute], spread[1])
    # The sparse engine computes the skipped pixels' logits too.
    assert all(within_reach(without[k], exact[k], spread[k]) for k in range(4))


def test_entropy_criterion_reads_entropy_threshold():
    x = torch.randn(1, 3, 64, 64)
    model = built('ca', 'MASK.CRIT', 'entropy_thre', 'MASK.ENTROPY_THRE', 100.0,
                  'MASK.CONF_THRE', 0.5)
    assert (model.mask_criterion, model.mask_threshold) == ('entropy_thre', 100.0)
    with torch.no_grad():
        outs = model(x)
    # No pixel has an entropy of 100 (log 19 < 3): nothing is computed after exit 1.
    for out in outs[1:]:
        assert torch.equal(out, outs[0])
    model = built('ca', 'MASK.CRIT', 'entropy_thre', 'MASK.ENTROPY_THRE', 0.0,
                  'MASK.CONF_THRE', 1.0)
    assert model.mask_threshold == 0.0
    with torch.no_grad():
        assert not torch.equal(model(x)[1], model(x)[0])


def skipped_outputs(model, x):
    """Outputs of every masked convolution at the pixels its mask skips."""
    skipped = []

    def keep(module, inputs, output):
        mask = module.current_mask(output.shape[-2:])
        skipped.append(output[(mask == 0).expand_as(output)])

    handles = [m.register_forward_hook(keep) for m in model.modules()
               if isinstance(m, MaskedConv2d)]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return torch.cat(skipped)


@pytest.mark.parametrize('interpolation', ['rbf', 'none'])
def test_interpolation_none_leaves_skipped_pixels_at_zero(interpolation):
    torch.manual_seed(1)
    x = torch.randn(1, 3, 64, 64)
    model = built('adpc', 'MASK.INTERPOLATION', interpolation, 'MASK.EXECUTION', 'dense', x=x)
    convs = [m for m in model.modules() if isinstance(m, MaskedConv2d)]
    assert all(m.rbf == (interpolation == 'rbf') for m in convs)
    skipped = skipped_outputs(model, x)
    assert skipped.numel() > 0
    if interpolation == 'none':
        assert torch.all(skipped == 0)
    else:
        assert skipped.any()  # the fill reaches skipped pixels near computed ones


@pytest.mark.parametrize('variant', ['rh', 'adpc'])
def test_early_detach_keeps_the_last_exit_training_the_backbone(variant):
    torch.manual_seed(2)
    x = torch.randn(2, 3, 64, 64)
    model = built(variant, 'MODEL.EXTRA.EARLY_DETACH', True, x=x).train()
    outs = model(x)
    outs[3].sum().backward()
    assert model.layer1[0].conv1.weight.grad.abs().sum() > 0
    assert model.conv1.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    outs = model(x)
    (outs[1].sum() + outs[2].sum()).backward()
    # Exits 2 and 3 train their heads only: nothing reaches the stages before them.
    assert model.exit2[-1].weight.grad.abs().sum() > 0
    assert model.exit3[-1].weight.grad.abs().sum() > 0
    for name in ('stage2', 'stage3', 'transition1', 'layer1'):
        grads = [p.grad for p in getattr(model, name).parameters()]
        assert all(g is None or not g.any() for g in grads), name
