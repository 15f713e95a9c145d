import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'models'))
from tiny import tiny_model  # noqa: E402
from utils.checkpoint import CheckpointMismatchError, load_model_weights, load_pretrained  # noqa: E402


def original_format(model):
    """The training wrapper's state dict the original release saves."""
    state = {'model.' + k: v for k, v in model.state_dict().items()}
    state['loss.criterion.weight'] = torch.ones(19)
    return state


@pytest.mark.parametrize('layout', ['original', 'bare', 'resume'])
def test_checkpoint_layouts_load_and_reproduce_outputs(tmp_path, layout):
    source = tiny_model('adpc').eval()
    with torch.no_grad():
        for p in source.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    state = {'original': original_format(source), 'bare': source.state_dict(),
             'resume': {'epoch': 3, 'state_dict': original_format(source)}}[layout]
    path = tmp_path / 'ckpt.pth'
    torch.save(state, path)
    target = tiny_model('adpc').eval()
    load_model_weights(target, str(path))
    x = torch.randn(1, 3, 64, 64)
    for a, b in zip(source(x), target(x)):
        assert torch.equal(a, b)


def test_rh_checkpoint_into_ee_model_explains_the_fix(tmp_path):
    path = tmp_path / 'rh.pth'
    torch.save(original_format(tiny_model('rh')), path)
    with pytest.raises(CheckpointMismatchError) as err:
        load_model_weights(tiny_model('ee'), str(path))
    message = str(err.value)
    lines = {line.split(':')[0].strip(): line for line in message.splitlines()}
    assert 'exit1.0.weight' in lines['missing keys']
    assert 'exit1.10.bias' in lines['unexpected keys'] and '(63 in all)' in message
    assert 'exit1.1.weight: file (8, 32, 1, 1), model (32,)' in lines['shape mismatches']
    assert 'this is a W4 RH checkpoint; the config builds a W4 EE model' in message
    assert 'add: EXIT.TYPE flex EXIT.INTER_CHANNEL 8' in message


def test_adpc_checkpoint_into_rh_model_suggests_masks():
    with pytest.raises(CheckpointMismatchError, match=r'ADP-C checkpoint(.|\n)*MASK.USE True'):
        load_model_weights(tiny_model('rh'), original_format(tiny_model('adpc')))


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match='nowhere.pth'):
        load_model_weights(tiny_model('ee'), str(tmp_path / 'nowhere.pth'))


def test_file_with_python_objects_still_loads(tmp_path):
    model = tiny_model('ee')
    path = tmp_path / 'ckpt.pth.tar'
    torch.save({'state_dict': original_format(model), 'note': object.__new__(Note)}, path)
    load_model_weights(tiny_model('ee'), str(path))


class Note:
    pass


def imagenet_like(model):
    """HRNet ImageNet weights: backbone keys, no exits, plus a classifier."""
    state = {k: torch.full_like(v, 0.5) for k, v in model.state_dict().items()
             if not k.startswith(('exit', 'last_layer'))}
    state['classifier.weight'] = torch.zeros(1000, 2048)
    return state


def test_pretrained_stage0_takes_shared_keys(tmp_path):
    path = tmp_path / 'imagenet.pth'
    torch.save(imagenet_like(tiny_model('ee')), path)
    model = tiny_model('ee')
    load_pretrained(model, str(path), load_stage=0)
    assert torch.all(model.layer1[0].conv1.weight == 0.5)
    assert not torch.all(model.exit1[0].weight == 0.5)


@pytest.mark.parametrize('stage,exits_loaded', [(1, False), (2, True)])
def test_pretrained_stage1_and_2_strip_prefix(tmp_path, stage, exits_loaded):
    state = {'model.' + k: torch.full_like(v, 0.5) for k, v in tiny_model('ee').state_dict().items()}
    path = tmp_path / 'city.pth'
    torch.save(state, path)
    model = tiny_model('ee')
    load_pretrained(model, str(path), load_stage=stage)
    assert torch.all(model.stage2[0].branches[0][0].conv1.weight == 0.5)
    assert bool(torch.all(model.exit1[0].weight == 0.5)) is exits_loaded


def test_pretrained_missing_file_names_path_and_key(tmp_path):
    with pytest.raises(FileNotFoundError, match=r'MODEL.PRETRAINED file not found: .*w48.pth'):
        load_pretrained(tiny_model('ee'), str(tmp_path / 'w48.pth'))


def test_pretrained_of_another_width_is_refused(tmp_path):
    state = imagenet_like(tiny_model('ee'))
    state['conv1.weight'] = torch.zeros(32, 3, 3, 3)
    path = tmp_path / 'other.pth'
    torch.save(state, path)
    with pytest.raises(CheckpointMismatchError, match='conv1.weight'):
        load_pretrained(tiny_model('ee'), str(path))
