"""The state dict of every released variant, key by key and shape by shape."""
import argparse
import json
import os

import pytest
import torch

from config import config, update_config
from models import get_seg_model

DATA = os.path.join(os.path.dirname(__file__), '..', 'data')
EXPERIMENTS = os.path.join(os.path.dirname(__file__), '..', '..', 'experiments', 'cityscapes')
RH = {'w48': ['EXIT.TYPE', 'flex', 'EXIT.INTER_CHANNEL', '128'],
      'w18': ['EXIT.TYPE', 'flex', 'EXIT.INTER_CHANNEL', '64']}
CA = ['MASK.USE', 'True', 'MASK.CONF_THRE', '0.998']


def build_on_meta(net, variant):
    opts = {'ee': [], 'rh': RH[net], 'adpc': RH[net] + CA}[variant] + ['MODEL.PRETRAINED', '']
    cfg = config.clone()
    update_config(cfg, argparse.Namespace(cfg=os.path.join(EXPERIMENTS, f'{net}.yaml'), opts=opts))
    with torch.device('meta'):  # shapes only: W48 builds in a fraction of a second
        return get_seg_model(cfg)


@pytest.mark.parametrize('net', ['w48', 'w18'])
@pytest.mark.parametrize('variant', ['ee', 'rh', 'adpc'])
def test_state_dict_equals_manifest(net, variant):
    with open(os.path.join(DATA, 'state_dict_manifests.json')) as f:
        manifest = json.load(f)[f'{net}_{variant}']
    expected = {k[len('model.'):]: v for k, v in manifest.items() if k.startswith('model.')}
    state = {k: list(v.shape) for k, v in build_on_meta(net, variant).state_dict().items()}
    assert sorted(set(expected) - set(state)) == []
    assert sorted(set(state) - set(expected)) == []
    assert state == expected
    assert manifest['loss.criterion.weight'] == [19]
