import os
import pickle
import re
import sys

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'models'))
from malicious import Touch  # noqa: E402
from tiny import tiny_model  # noqa: E402
from utils.checkpoint import (ROOT, CheckpointMismatchError, UnsafeCheckpointError,  # noqa: E402
                              config_advice, load_model_weights, load_pretrained, read_checkpoint)
from utils.errors import CheckpointError  # noqa: E402


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
    assert 'fix: add to the command line: EXIT.TYPE flex EXIT.INTER_CHANNEL 8' in message
    assert isinstance(err.value, CheckpointError)


def test_adpc_checkpoint_into_rh_model_suggests_masks_but_no_threshold():
    with pytest.raises(CheckpointMismatchError) as err:
        load_model_weights(tiny_model('rh'), original_format(tiny_model('adpc')))
    message = str(err.value)
    assert 'ADP-C checkpoint' in message
    assert message.endswith('fix: add to the command line: MASK.USE True, with the '
                            'MASK.CONF_THRE the model was trained with')
    assert 'CONF_THRE 0' not in message  # a checkpoint cannot tell the threshold


def named_configs(message):
    return re.findall(r'experiments/\S+\.yaml', message)


def test_checkpoint_of_another_width_names_an_existing_config_of_its_width():
    # experiments/synthetic/tiny_adpc.yaml is a width-16 ADP-C with 16-channel heads.
    source = tiny_model('adpc', 'MODEL.EXTRA.STAGE2.NUM_CHANNELS', [16, 32],
                        'MODEL.EXTRA.STAGE3.NUM_CHANNELS', [16, 32, 64],
                        'MODEL.EXTRA.STAGE4.NUM_CHANNELS', [16, 32, 64, 128],
                        'EXIT.INTER_CHANNEL', 16)
    with pytest.raises(CheckpointMismatchError) as err:
        load_model_weights(tiny_model('ee'), original_format(source))
    message = str(err.value)
    assert 'this is a W16 ADP-C checkpoint; the config builds a W4 EE model' in message
    assert 'fix: use --cfg experiments/synthetic/tiny_adpc.yaml, with the MASK.CONF_THRE' in message
    assert all(os.path.isfile(os.path.join(ROOT, p)) for p in named_configs(message))


def test_checkpoint_of_a_width_without_config_names_no_file():
    with pytest.raises(CheckpointMismatchError) as err:
        load_model_weights(tiny_model('adpc', 'MODEL.EXTRA.STAGE2.NUM_CHANNELS', [8, 16],
                                      'MODEL.EXTRA.STAGE3.NUM_CHANNELS', [8, 16, 32],
                                      'MODEL.EXTRA.STAGE4.NUM_CHANNELS', [8, 16, 32, 64]),
                           original_format(tiny_model('ee')))
    message = str(err.value)
    assert 'no file in experiments/ builds width 4' in message
    assert named_configs(message) == []


def variant(width, flex, inter, masked):
    return {'width': width, 'flex': flex, 'inter_channel': inter if flex else None,
            'masked': masked, 'num_classes': 19}


@pytest.mark.parametrize('found,advice', [
    (variant(48, True, 128, True), 'use --cfg experiments/cityscapes/w48_adpc.yaml, with the '
                                   'MASK.CONF_THRE the model was trained with'),
    (variant(18, True, 64, False), 'use --cfg experiments/cityscapes/w18_rh.yaml'),
    # No W48 file has 64-channel heads: the nearest file, and the overrides it needs.
    (variant(48, True, 64, False), 'use --cfg experiments/cityscapes/w48_rh.yaml and add '
                                   'EXIT.TYPE flex EXIT.INTER_CHANNEL 64'),
])
def test_advice_for_another_width_uses_the_experiment_files(found, advice):
    assert config_advice(found, variant(4, False, None, False)) == advice


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(CheckpointError, match=r'nowhere.pth does not exist: check the path'):
        load_model_weights(tiny_model('ee'), str(tmp_path / 'nowhere.pth'))


def test_text_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / 'notes.pth'
    path.write_text('hello\n')
    with pytest.raises(CheckpointError, match=r"notes.pth is not a PyTorch checkpoint "
                                              r"\(it starts with b'hello\\n'\)") as err:
        read_checkpoint(str(path))
    assert not isinstance(err.value, UnsafeCheckpointError)


def test_empty_file_is_not_a_checkpoint(tmp_path):
    (tmp_path / 'empty.pth').write_bytes(b'')
    with pytest.raises(CheckpointError, match=r'empty.pth is not a PyTorch checkpoint \(it is empty\)'):
        read_checkpoint(str(tmp_path / 'empty.pth'))


@pytest.mark.parametrize('legacy', [False, True])
def test_truncated_checkpoint_says_so(tmp_path, legacy):
    path = tmp_path / 'cut.pth'
    torch.save(tiny_model('ee').state_dict(), path, _use_new_zipfile_serialization=not legacy)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match=r'cut.pth is truncated or damaged .*download it again'):
        load_model_weights(tiny_model('ee'), str(path))


def test_file_of_another_kind_is_not_a_checkpoint(tmp_path):
    torch.save([torch.ones(2)], tmp_path / 'list.pth')
    with pytest.raises(CheckpointError, match='list.pth holds a list, not a checkpoint'):
        load_model_weights(tiny_model('ee'), str(tmp_path / 'list.pth'))


def assert_refused_as_unsafe(err, path):
    message = str(err.value)
    assert isinstance(err.value, UnsafeCheckpointError)
    assert f'{path} holds Python objects beyond tensors' in message
    assert 'could run code' in message
    assert f'python tools/convert_checkpoint.py {path} ' in message and '--trust' in message


def test_file_with_python_objects_is_refused(tmp_path):
    path = str(tmp_path / 'ckpt.pth.tar')
    torch.save({'state_dict': original_format(tiny_model('ee')), 'note': Note()}, path)
    with pytest.raises(CheckpointError) as err:
        load_model_weights(tiny_model('ee'), path)
    assert_refused_as_unsafe(err, path)


class Note:
    pass


@pytest.mark.parametrize('writer', ['torch.save', 'pickle.dump'])
@pytest.mark.parametrize('reader', ['checkpoint', 'pretrained'])
def test_malicious_pickle_never_runs(tmp_path, writer, reader):
    marker, path = tmp_path / 'MARKER', str(tmp_path / 'evil.pth')
    content = {'state_dict': original_format(tiny_model('ee')), 'optimizer': Touch(str(marker))}
    if writer == 'torch.save':
        torch.save(content, path)
    else:
        with open(path, 'wb') as f:
            pickle.dump(content, f)
    with pytest.raises(CheckpointError) as err:
        if reader == 'checkpoint':
            load_model_weights(tiny_model('ee'), path)
        else:
            load_pretrained(tiny_model('ee'), path)
    assert_refused_as_unsafe(err, path)
    assert not marker.exists()


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
    with pytest.raises(CheckpointError, match=r'MODEL.PRETRAINED file not found: .*w48.pth'):
        load_pretrained(tiny_model('ee'), str(tmp_path / 'w48.pth'))


def test_pretrained_of_another_width_is_refused(tmp_path):
    wide = tiny_model('ee', 'MODEL.EXTRA.STAGE2.NUM_CHANNELS', [8, 16],
                      'MODEL.EXTRA.STAGE3.NUM_CHANNELS', [8, 16, 32],
                      'MODEL.EXTRA.STAGE4.NUM_CHANNELS', [8, 16, 32, 64])
    path = tmp_path / 'other.pth'
    torch.save(imagenet_like(wide), path)
    with pytest.raises(CheckpointMismatchError,
                       match=r'MODEL.PRETRAINED .*other.pth holds HRNet-W8 weights; the config '
                             r'builds a W4 model .*set MODEL.PRETRAINED to a file of HRNet-W4 '
                             r"ImageNet weights, or '' for a random initialisation"):
        load_pretrained(tiny_model('ee'), str(path))
