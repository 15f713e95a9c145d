import json
import os

import pytest
import torch
import torch.nn.functional as F

from engine.criterion import FullModel, MultiExitLoss, build_criterion
from standin import StandIn

DATA = os.path.join(os.path.dirname(__file__), '..', 'data')


def reference_ce(logits, labels, weight, ignore):
    up = F.interpolate(logits, size=labels.shape[-2:], mode='bilinear', align_corners=False)
    return F.cross_entropy(up, labels, weight=weight, ignore_index=ignore)


def test_loss_is_weighted_sum_of_upsampled_class_weighted_ce():
    torch.manual_seed(0)
    outputs = [torch.randn(2, 3, 4, 5) for _ in range(4)]
    labels = torch.randint(0, 3, (2, 16, 20))
    labels[0, :3] = 255
    class_w = torch.tensor([0.5, 1.0, 2.0])
    exit_w = [1.0, 0.0, 2.0, 0.5]
    loss = MultiExitLoss(exit_w, 3, class_weights=class_w.tolist(), ignore_label=255)
    total, per_exit = loss(outputs, labels)
    expected = [reference_ce(o, labels, class_w, 255) for o in outputs]
    for got, exp in zip(per_exit, expected):
        assert torch.allclose(got, exp, atol=1e-6)
    assert torch.allclose(total, sum(w * e for w, e in zip(exit_w, expected)), atol=1e-6)


def test_without_class_balance_the_weight_buffer_is_ones_and_loss_is_plain_ce():
    outputs = [torch.randn(1, 3, 8, 8) for _ in range(4)]
    labels = torch.randint(0, 3, (1, 8, 8))
    loss = MultiExitLoss((1, 1, 1, 1), 3, class_weights=None, ignore_label=255)
    assert torch.equal(loss.state_dict()['criterion.weight'], torch.ones(3))
    _, per_exit = loss(outputs, labels)
    assert torch.allclose(per_exit[0], F.cross_entropy(outputs[0], labels), atol=1e-6)


def test_batch_without_valid_pixels_gives_finite_zero_with_gradient():
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    labels = torch.full((1, 16, 16), 255)
    total, _ = MultiExitLoss([1], 3, ignore_label=255)([logits], labels)
    assert total.item() == 0.0
    total.backward()
    assert logits.grad is not None


def test_ohem_keeps_only_pixels_below_the_threshold():
    # 8 pixels of class 0: true-class probability ~1/3 on the last 3, and 0.79 to 0.995
    # on the first 5 (logits 2..6).
    logits = torch.zeros(1, 3, 1, 8)
    labels = torch.zeros(1, 1, 8, dtype=torch.long)
    logits[0, 0, 0, :5] = torch.tensor([6.0, 5.0, 4.0, 3.0, 2.0])
    loss = MultiExitLoss([1], 3, ignore_label=255, ohem=True, ohem_threshold=0.7,
                         ohem_min_kept=1)
    total, _ = loss([logits], labels)
    assert torch.allclose(total, F.cross_entropy(logits[..., 5:], labels[..., 5:]), atol=1e-6)
    # OHEMKEEP 4 raises the threshold to the 5th smallest probability (0.91): the pixel
    # at 0.79 joins the hard ones.
    keep4 = MultiExitLoss([1], 3, ignore_label=255, ohem=True, ohem_threshold=0.7,
                          ohem_min_kept=4)
    total4, _ = keep4([logits], labels)
    assert torch.allclose(total4, F.cross_entropy(logits[..., 4:], labels[..., 4:]), atol=1e-6)


def test_output_count_must_match_ee_weights():
    loss = MultiExitLoss([1, 1, 1, 1], 3)
    with pytest.raises(ValueError, match='EE_WEIGHTS'):
        loss([torch.randn(1, 3, 2, 2)] * 3, torch.zeros(1, 2, 2, dtype=torch.long))


def test_class_weights_of_wrong_length_name_the_key():
    with pytest.raises(ValueError, match='NUM_CLASSES'):
        MultiExitLoss([1], 19, class_weights=[1.0] * 18)


def test_build_criterion_reads_config(tmp_path):
    from config import config
    cfg = config.clone()
    cfg.defrost()
    cfg.MODEL.EXTRA.EE_WEIGHTS = (1, 2, 3, 4)
    cfg.TRAIN.IGNORE_LABEL = 255
    cfg.LOSS.USE_OHEM = True
    loss = build_criterion(cfg, [float(i) for i in range(19)])
    assert loss.exit_weights == [1.0, 2.0, 3.0, 4.0]
    assert loss.ignore_label == 255 and loss.ohem
    assert loss.criterion.weight[5].item() == 5.0
    cfg.LOSS.CLASS_BALANCE = False
    assert torch.equal(build_criterion(cfg, None).criterion.weight, torch.ones(19))


def test_full_model_state_dict_is_model_prefixed_plus_criterion_weight():
    net = StandIn()
    full = FullModel(net, MultiExitLoss([1] * 4, 3))
    keys = set(full.state_dict())
    assert keys == {'model.' + k for k in net.state_dict()} | {'loss.criterion.weight'}
    total, losses, outputs = full(torch.randn(2, 3, 16, 16), torch.randint(0, 3, (2, 16, 16)))
    assert len(losses) == 4 and len(outputs) == 4 and total.dim() == 0


def test_full_model_of_w18_adpc_matches_released_checkpoint_manifest():
    import argparse

    from config import config, update_config
    from datasets.cityscapes import CITYSCAPES_CLASS_WEIGHTS
    from models import get_seg_model
    exp = os.path.join(os.path.dirname(__file__), '..', '..', 'experiments', 'cityscapes')
    cfg = update_config(config.clone(), argparse.Namespace(
        cfg=os.path.join(exp, 'w18_adpc.yaml'), opts=['MODEL.PRETRAINED', '']))
    with torch.device('meta'):
        full = FullModel(get_seg_model(cfg), build_criterion(cfg, CITYSCAPES_CLASS_WEIGHTS))
    with open(os.path.join(DATA, 'state_dict_manifests.json')) as f:
        manifest = json.load(f)['w18_adpc']
    assert {k: list(v.shape) for k, v in full.state_dict().items()} == manifest
