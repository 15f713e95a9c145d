import copy
import logging
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from models.confidence import confidence_mask
from models.masked_conv import MaskedConv2d
from rounding import exact_and_spread, within_reach
from tiny import mixed_mask_model, tiny_cfg, tiny_model

VARIANTS = ['ee', 'rh', 'ca', 'adpc']


@pytest.mark.parametrize('variant', VARIANTS)
@pytest.mark.parametrize('training', [False, True])
def test_four_exits_at_quarter_resolution(variant, training):
    model = tiny_model(variant).train(training)
    outs = model(torch.randn(2, 3, 64, 96))
    assert len(outs) == 4
    for out in outs:
        assert out.shape == (2, 19, 16, 24)


@pytest.mark.parametrize('size', [(50, 70), (33, 65)])
def test_odd_sizes_with_original_heads(size):
    outs = tiny_model('ca').eval()(torch.randn(1, 3, *size))
    quarter = tuple((s + 3) // 4 for s in size)  # two stride-2 convs with padding 1
    assert all(out.shape[-2:] == quarter for out in outs)


def test_only_masked_variants_hold_masked_convolutions():
    for variant in VARIANTS:
        model = tiny_model(variant)
        masked = {name.split('.')[0] for name, m in model.named_modules()
                  if isinstance(m, MaskedConv2d)}
        if variant in ('ca', 'adpc'):
            assert masked == {'transition1', 'stage2', 'exit2', 'transition2', 'stage3', 'exit3',
                              'transition3', 'stage4', 'last_layer'}
        else:
            assert masked == set()


def _modules_run(model, x, **kwargs):
    ran = set()
    handles = [m.register_forward_hook(lambda m, i, o, name=name: ran.add(name.split('.')[0]))
               for name, m in model.named_modules() if name]
    outs = model(x, **kwargs)
    for h in handles:
        h.remove()
    return outs, ran


@pytest.mark.parametrize('k', [1, 2, 3, 4])
def test_stop_at_runs_nothing_after_exit_k(k):
    model = tiny_model('adpc').eval()
    x = torch.randn(1, 3, 64, 64)
    outs, ran = _modules_run(model, x, stop_at=k)
    assert len(outs) == k
    names = [['transition1', 'stage2', 'exit2'], ['transition2', 'stage3', 'exit3'],
             ['transition3', 'stage4', 'last_layer']]
    expected = {'conv1', 'bn1', 'conv2', 'bn2', 'layer1', 'exit1', 'relu'}
    for part in names[:k - 1]:
        expected |= set(part)
    assert ran == expected
    full = model(x)
    for a, b in zip(outs, full):
        assert torch.equal(a, b)


def test_stop_at_out_of_range():
    with pytest.raises(ValueError, match='stop_at'):
        tiny_model('ee')(torch.randn(1, 3, 32, 32), stop_at=5)


def _masks_seen(model, x):
    """Mask each masked convolution used, keyed by module name."""
    seen = {}
    handles = [m.register_forward_hook(
        lambda m, i, o, name=name: seen.__setitem__(name, m.current_mask(o.shape[-2:]).clone()))
        for name, m in model.named_modules() if isinstance(m, MaskedConv2d)]
    outs = model(x)
    for h in handles:
        h.remove()
    return outs, seen


SEGMENT_OF = {'transition1': 0, 'stage2': 0, 'exit2': 0, 'transition2': 1, 'stage3': 1,
              'exit3': 1, 'transition3': 2, 'stage4': 2, 'last_layer': 2}


@pytest.mark.parametrize('variant', ['ca', 'adpc'])
def test_masks_come_from_the_previous_exit_on_the_first_call(variant):
    torch.manual_seed(0)
    x = torch.randn(1, 3, 64, 64)
    model = mixed_mask_model(variant, x)
    outs, seen = _masks_seen(model, x)
    assert len(seen) == sum(isinstance(m, MaskedConv2d) for m in model.modules())
    for name, mask in seen.items():
        segment = SEGMENT_OF[name.split('.')[0]]
        expected = confidence_mask(outs[segment], mask.shape[-2:], 'conf_thre',
                                   model.mask_threshold)
        assert torch.equal(mask, expected), name
        if segment == 0:
            assert 0 < mask.mean() < 1, name  # the test exercises mixed masks
    # Confident pixels of exit j keep exit j's logits in every later exit.
    for j in range(3):
        keep = confidence_mask(outs[j], outs[j].shape[-2:], 'conf_thre', model.mask_threshold) == 0
        keep = keep.expand_as(outs[j])
        assert torch.equal(outs[j + 1][keep], outs[j][keep])


def test_threshold_one_computes_everything_like_the_unmasked_network():
    x = torch.randn(2, 3, 64, 64)
    masked = mixed_mask_model('adpc')
    masked.mask_threshold = 1.0
    plain = tiny_model('rh').eval()
    plain.load_state_dict(masked.state_dict(), strict=False)
    # The same convolutions; an all-ones mask adds exact operations only (y·1 + fill·0,
    # copy aggregation prev·0 + new·1): the same bits.
    for a, b in zip(masked(x), plain(x)):
        assert torch.equal(a, b)


def test_threshold_zero_keeps_exit_one_everywhere():
    x = torch.randn(1, 3, 64, 64)
    model = mixed_mask_model('adpc')
    model.mask_threshold = 0.0
    outs = model(x)
    for out in outs[1:]:
        assert torch.equal(out, outs[0])


@pytest.mark.numerics
def test_no_state_between_calls_and_per_image_masks_in_a_batch():
    torch.manual_seed(1)
    a, b = torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64) * 2
    model = mixed_mask_model('adpc', torch.cat([a, b]))
    first_a, first_b = model(a), model(b)
    again_a = model(a)
    batch, masks = model(torch.cat([a, b]), return_masks=True)
    fresh = copy.deepcopy(model)
    # A batch may take other kernels than one image: each image's logits within float32's
    # reach of the exact (float64) ones, on the batch's masks (tests/models/rounding.py).
    with torch.no_grad():
        exact, spread = exact_and_spread(
            lambda m: dict(enumerate(m(torch.cat([a, b]).double(), masks=masks))), model)
    for k in range(4):
        assert torch.equal(first_a[k], again_a[k])
        assert within_reach(batch[k], exact[k], spread[k])
        assert within_reach(first_a[k], exact[k][:1], spread[k])
        assert within_reach(first_b[k], exact[k][1:], spread[k])
        assert torch.equal(fresh(b)[k], first_b[k])
    assert all(slot.masks is None for slot in model.mask_slots)


def test_training_gradients_reach_lambda_and_earlier_exits_through_copy():
    torch.manual_seed(2)
    x = torch.randn(2, 3, 64, 64)
    model = mixed_mask_model('adpc', x).train()
    outs = model(x)
    outs[3].sum().backward()
    lambdas = [m.Lambda.grad for m in model.modules() if isinstance(m, MaskedConv2d)]
    assert all(g is not None for g in lambdas) and any(g.abs() > 0 for g in lambdas)
    # out4 copies confident pixels of exits 1-3, so exit1's classifier gets gradient.
    assert model.exit1[-1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize('detach', [False, True])
def test_early_detach_stops_exit_gradients_into_backbone(detach):
    model = tiny_model('rh', 'MODEL.EXTRA.EARLY_DETACH', detach).train()
    outs = model(torch.randn(2, 3, 64, 64))
    (outs[0].sum() + outs[1].sum() + outs[2].sum()).backward()
    backbone_grad = model.layer1[0].conv1.weight.grad
    if detach:
        assert backbone_grad is None
        assert model.exit1[1].weight.grad.abs().sum() > 0
    else:
        assert backbone_grad.abs().sum() > 0


def test_final_conv_kernel_three():
    model = tiny_model('adpc', 'EXIT.FINAL_CONV_KERNEL', 3)
    assert model.exit1[-1].kernel_size == (3, 3) and model.last_layer[3].padding == (1, 1)
    assert model(torch.randn(1, 3, 64, 64))[0].shape == (1, 19, 16, 16)


def with_value(cfg, section, key, value):
    """``cfg`` with a value that merging would refuse (config.ALLOWED), set directly as a
    program could: the builder still names the key."""
    cfg.defrost()
    cfg[section][key] = value
    return cfg


def test_config_errors_name_the_key():
    from models.model_anytime import build_model
    with pytest.raises(ValueError, match='EXIT.TYPE'):
        build_model(with_value(tiny_cfg('ee'), 'EXIT', 'TYPE', 'wide'))
    with pytest.raises(ValueError, match='MASK.CRIT'):
        build_model(with_value(tiny_cfg('ca'), 'MASK', 'CRIT', 'margin'))
    with pytest.raises(ValueError, match='STAGE1.BLOCK'):
        build_model(tiny_cfg('ee', 'MODEL.EXTRA.STAGE1.BLOCK', 'WIDE'))


def test_random_init_follows_the_original():
    torch.manual_seed(0)
    model = tiny_model('adpc')
    w = torch.cat([m.weight.flatten() for m in model.modules() if isinstance(m, nn.Conv2d)])
    # The sample std of n normal draws is off by 1/sqrt(2n) of sigma (one standard
    # error); 6 standard errors are never reached by chance (p ~ 2e-9).
    assert abs(w.std().item() - 0.001) < 6 * 0.001 / math.sqrt(2 * w.numel())
    assert torch.all(model.bn1.weight == 1) and torch.all(model.bn1.bias == 0)
    assert model.stage2[0].branches[0][0].conv1.Lambda.item() == 3.0


def test_bn_momentum_reaches_every_batch_norm():
    def momenta(model):
        return {m.momentum for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert momenta(tiny_model('adpc')) == {0.01}  # HRNet's
    assert momenta(tiny_model('adpc', 'MODEL.BN_MOMENTUM', 0.1)) == {0.1}


def test_loss_drives_the_classifier():
    model = tiny_model('adpc').train()
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 19, (2, 8, 8))
    loss = sum(F.cross_entropy(o, y) for o in model(x))
    loss.backward()
    assert model.last_layer[3].weight.grad.abs().sum() > 0


def test_iter_exits_runs_only_as_far_as_the_caller_reads():
    model = tiny_model('adpc').eval()
    x = torch.randn(1, 3, 64, 64)
    ran = []
    model.stage3.register_forward_hook(lambda *a: ran.append('stage3'))
    exits = model.iter_exits(x)
    first, second = next(exits), next(exits)
    exits.close()
    assert ran == [] and all(slot.masks is None for slot in model.mask_slots)
    full = model(x)
    assert torch.equal(first, full[0]) and torch.equal(second, full[1]) and ran == ['stage3']


@pytest.mark.parametrize('execution', ['dense', 'sparse'])
def test_next_exit_continues_one_state_under_several_thresholds(execution):
    """The threshold sweep runs exit 1 once and continues it with each threshold's masks:
    each continuation equals a fresh forward at that threshold."""
    from models.confidence import ConfidenceMasks
    x = torch.randn(1, 3, 64, 64)
    model = mixed_mask_model('adpc', x)
    model.execution = execution
    median = model.mask_threshold
    with torch.no_grad():
        start = model.first_exit(x)
        for t in (median * 0.9, median, 1.0):
            state, got = start, [start.logits]
            while state.exit < 4:
                state = model.next_exit(state, ConfidenceMasks(state.logits, 'conf_thre', t))
                got.append(state.logits)
            fresh = copy.deepcopy(model)
            fresh.mask_threshold = t
            for a, b in zip(got, fresh(x)):  # the same operations: the same bits
                assert torch.equal(a, b)


def test_model_for_a_checkpoint_skips_and_does_not_mention_pretrained_weights(tmp_path, caplog):
    from models import get_seg_model
    cfg = tiny_cfg('ee', 'MODEL.PRETRAINED', str(tmp_path / 'absent.pth'))
    with caplog.at_level(logging.INFO):
        model = get_seg_model(cfg, pretrained=False)  # the absent file is never read
    assert 'PRETRAINED' not in caplog.text
    assert set(model.state_dict()) == set(tiny_model('ee').state_dict())
    caplog.clear()
    with caplog.at_level(logging.INFO):
        get_seg_model(tiny_cfg('ee'))
    assert 'MODEL.PRETRAINED is empty: random initialisation' in caplog.text
