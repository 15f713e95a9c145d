"""A checkpoint trained on other classes: refused as it is, its backbone taken with
MODEL.PRETRAINED_KEEP backbone (the exit heads start from scratch, the log says so)."""
import logging
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'models'))
from tiny import tiny_cfg, tiny_model  # noqa: E402
from models import get_seg_model  # noqa: E402
from utils.checkpoint import CheckpointMismatchError, HEAD_PREFIXES  # noqa: E402


@pytest.fixture(scope='module')
def cityscapes_checkpoint(tmp_path_factory):
    """A 19-class ADP-C's final_state.pth (the training wrapper's keys)."""
    torch.manual_seed(1)
    state = {f'model.{k}': v for k, v in tiny_model('adpc').state_dict().items()}
    state['loss.criterion.weight'] = torch.ones(19)
    path = str(tmp_path_factory.mktemp('ckpt') / 'final_state.pth')
    torch.save(state, path)
    return path, state


def two_class_model(path, *opts):
    cfg = tiny_cfg('adpc', 'DATASET.DATASET', 'custom', 'DATASET.NUM_CLASSES', 2,
                   'MODEL.LOAD_STAGE', 2, *opts)
    cfg.defrost()
    cfg.MODEL.PRETRAINED = path  # tiny_cfg empties it
    torch.manual_seed(2)
    return get_seg_model(cfg)


def test_other_classes_are_refused_with_the_option_named(cityscapes_checkpoint):
    with pytest.raises(CheckpointMismatchError) as error:
        two_class_model(cityscapes_checkpoint[0])
    message = str(error.value)
    assert 'trained with 19 classes and the config has 2' in message
    assert 'MODEL.PRETRAINED_KEEP backbone' in message


def test_keeping_the_backbone_starts_the_heads_from_scratch(cityscapes_checkpoint, caplog):
    path, state = cityscapes_checkpoint
    with caplog.at_level(logging.INFO):
        model = two_class_model(path, 'MODEL.PRETRAINED_KEEP', 'backbone')
    own = model.state_dict()
    backbone = [k for k in own if not k.startswith(HEAD_PREFIXES)]
    assert backbone and all(torch.equal(own[k], state[f'model.{k}']) for k in backbone)
    assert own['last_layer.3.weight'].shape[0] == 2
    # Same-shaped head tensors were not taken either: the heads are all the model's own.
    torch.manual_seed(2)
    fresh = get_seg_model(tiny_cfg('adpc', 'DATASET.DATASET', 'custom', 'DATASET.NUM_CLASSES', 2),
                          pretrained=False).state_dict()
    heads = [k for k in own if k.startswith(HEAD_PREFIXES)]
    assert heads and all(torch.equal(own[k], fresh[k]) for k in heads)
    assert f'keeping its {len(backbone)} backbone tensors' in caplog.text
    assert 'start from scratch' in caplog.text
