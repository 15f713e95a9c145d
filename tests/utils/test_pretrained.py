"""MODEL.PRETRAINED from a .pth file, a .safetensors file or a Hugging Face Hub name
(downloaded by a stand-in for huggingface_hub: the tests never download; one runs the real
client against a Hub name that never resolves, to check what a user without network sees)."""
import logging
import os
import re
import subprocess
import sys
import types

import pytest
import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'models'))
from tiny import tiny_model  # noqa: E402
from utils.checkpoint import CheckpointMismatchError, load_pretrained  # noqa: E402
from utils.errors import CheckpointError, ConfigError  # noqa: E402
from utils import hub  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

HUB_NAME = 'hf-hub:timm/hrnet_w48.ms_in1k'


def imagenet_like(model):
    """HRNet ImageNet weights as timm stores them: the backbone's keys (no exits, no
    segmentation head) plus the classification head, every tensor a distinct value."""
    state = {k: torch.full_like(v, 0.5 + i) for i, (k, v) in enumerate(model.state_dict().items())
             if not k.startswith(('exit', 'last_layer'))}
    state['incre_modules.0.0.conv1.weight'] = torch.zeros(32, 4, 1, 1)
    state['classifier.weight'] = torch.zeros(1000, 2048)
    state['classifier.bias'] = torch.zeros(1000)
    return state


def assert_backbone_from(model, state):
    own = model.state_dict()
    backbone = [k for k in state if k in own]
    assert backbone and all(torch.equal(own[k], state[k]) for k in backbone)
    assert not torch.all(model.exit1[0].weight == model.exit1[0].weight.flatten()[0])


@pytest.mark.parametrize('name', ['hrnet.safetensors', 'model.bin'])
def test_safetensors_file_initialises_like_the_pth_file(tmp_path, name, caplog):
    state = imagenet_like(tiny_model('ee'))
    save_file(state, str(tmp_path / name))  # 'model.bin': recognised by its content
    torch.save(state, tmp_path / 'hrnet.pth')
    from_pth, from_safetensors = tiny_model('ee'), tiny_model('ee')
    load_pretrained(from_pth, str(tmp_path / 'hrnet.pth'))
    with caplog.at_level(logging.INFO, logger='utils.checkpoint'):
        load_pretrained(from_safetensors, str(tmp_path / name))
    assert_backbone_from(from_safetensors, state)
    for key, value in from_pth.state_dict().items():
        if not key.startswith(('exit', 'last_layer')):
            assert torch.equal(value, from_safetensors.state_dict()[key]), key
    taken = sum(k in from_pth.state_dict() for k in state)
    assert f'took {taken} tensors, skipped 3 of the file' in caplog.text


@pytest.mark.parametrize('stage,exits_loaded', [(0, False), (1, False), (2, True)])
def test_load_stage_applies_to_safetensors_files(tmp_path, stage, exits_loaded):
    model = tiny_model('ee')
    state = {'model.' + k: torch.full_like(v, 0.5) for k, v in model.state_dict().items()
             if k != 'conv1.weight'}
    state['conv1.weight'] = torch.full_like(model.conv1.weight, 0.25)  # a key without prefix
    save_file(state, str(tmp_path / 'city.safetensors'))
    load_pretrained(model, str(tmp_path / 'city.safetensors'), load_stage=stage)
    assert torch.all(model.conv1.weight == 0.25)
    assert bool(torch.all(model.stage2[0].branches[0][0].conv1.weight == 0.5)) is (stage > 0)
    assert bool(torch.all(model.exit1[0].weight == 0.5)) is exits_loaded


def test_damaged_safetensors_file_is_refused(tmp_path):
    path = tmp_path / 'hrnet.safetensors'
    save_file(imagenet_like(tiny_model('ee')), str(path))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=r'MODEL.PRETRAINED .*hrnet.safetensors is '
                                              r'truncated or damaged .*download it again'):
        load_pretrained(tiny_model('ee'), str(path))


W18 = ['MODEL.EXTRA.STAGE2.NUM_CHANNELS', [18, 8], 'MODEL.EXTRA.STAGE3.NUM_CHANNELS', [18, 8, 12],
       'MODEL.EXTRA.STAGE4.NUM_CHANNELS', [18, 8, 12, 16]]


@pytest.mark.parametrize('suffix', ['.pth', '.safetensors'])
def test_file_matching_no_tensor_is_refused(tmp_path, suffix):
    state = {f'backbone.block{i}.weight': torch.zeros(3) for i in range(5)}
    path = str(tmp_path / ('resnet' + suffix))
    torch.save(state, path) if suffix == '.pth' else save_file(state, path)
    with pytest.raises(CheckpointMismatchError) as err:
        load_pretrained(tiny_model('ee', *W18), path)
    message = str(err.value)
    assert '\n' not in message
    assert f'MODEL.PRETRAINED {path} holds no tensor of this model' in message
    assert 'its 5 tensors are named like backbone.block0.weight, backbone.block1.weight' in message
    assert 'the model expects names under conv1, bn1, conv2, bn2, layer1' in message
    assert 'set MODEL.PRETRAINED to hf-hub:timm/hrnet_w18_small_v2.ms_in1k' in message


def test_prefixed_file_at_stage_zero_points_to_load_stage(tmp_path):
    model = tiny_model('ee')
    path = str(tmp_path / 'run.pth')
    torch.save({'model.' + k: v for k, v in model.state_dict().items()}, path)
    with pytest.raises(CheckpointMismatchError, match=r"start with 'model.': MODEL.LOAD_STAGE 2"):
        load_pretrained(model, path, load_stage=0)


def stub_hub(monkeypatch, download):
    """Install ``download`` as ``huggingface_hub.hf_hub_download``; returns its calls."""
    calls = []

    def hf_hub_download(repo_id, filename, **kwargs):
        calls.append((repo_id, filename))
        return download()

    module = types.ModuleType('huggingface_hub')
    module.hf_hub_download = hf_hub_download
    monkeypatch.setitem(sys.modules, 'huggingface_hub', module)
    return calls


def test_hub_name_loads_the_downloaded_file(tmp_path, monkeypatch, caplog):
    state = imagenet_like(tiny_model('ee'))
    cached = tmp_path / 'cache' / 'model.safetensors'
    cached.parent.mkdir()
    save_file(state, str(cached))
    calls = stub_hub(monkeypatch, lambda: str(cached))
    model = tiny_model('ee')
    with caplog.at_level(logging.INFO, logger='utils.checkpoint'):
        load_pretrained(model, HUB_NAME, load_stage=0)
    assert calls == [('timm/hrnet_w48.ms_in1k', 'model.safetensors')]
    assert_backbone_from(model, state)
    assert f'MODEL.PRETRAINED {HUB_NAME} {cached} (LOAD_STAGE 0): took' in caplog.text


def test_hub_name_without_huggingface_hub_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, 'huggingface_hub', None)  # makes the import fail
    with pytest.raises(CheckpointError) as err:
        load_pretrained(tiny_model('ee'), HUB_NAME)
    message = str(err.value)
    assert message.startswith(f'MODEL.PRETRAINED {HUB_NAME} needs the huggingface_hub '
                              'package: pip install huggingface_hub')
    assert 'https://huggingface.co/timm/hrnet_w48.ms_in1k' in message


@pytest.fixture
def online(monkeypatch):
    """The Hub answers the connection check (the tests never use the network)."""
    monkeypatch.setattr(hub, 'unreachable', lambda endpoint: None)
    monkeypatch.delenv('HF_HUB_OFFLINE', raising=False)


def test_failed_download_is_one_line_naming_the_network(monkeypatch, online):
    def offline():
        raise ConnectionError('Max retries exceeded with url\n(caused by NameResolutionError)')
    stub_hub(monkeypatch, offline)
    with pytest.raises(CheckpointError) as err:
        load_pretrained(tiny_model('ee'), HUB_NAME)
    message = str(err.value)
    assert '\n' not in message
    assert (f'MODEL.PRETRAINED {HUB_NAME}: downloading model.safetensors from the Hugging Face '
            'Hub failed (Max retries exceeded with url (caused by NameResolutionError)): check '
            'the network connection') in message  # a short reason, whole


def test_a_long_reason_of_the_hub_keeps_its_first_line(monkeypatch, online):
    first = 'Repository Not Found for url: https://huggingface.co/x'
    stub_hub(monkeypatch, lambda: (_ for _ in ()).throw(OSError(first + '\n' + 'detail ' * 80)))
    with pytest.raises(CheckpointError, match=rf'failed \({re.escape(first)}\): check'):
        load_pretrained(tiny_model('ee'), HUB_NAME)


def test_an_unreachable_hub_is_one_line_without_a_download(monkeypatch):
    monkeypatch.setattr(hub, 'unreachable',
                        lambda endpoint: 'huggingface.co:443 cannot be reached: refused')
    monkeypatch.delenv('HF_HUB_OFFLINE', raising=False)
    calls = stub_hub(monkeypatch, lambda: (_ for _ in ()).throw(FileNotFoundError('not cached')))
    with pytest.raises(CheckpointError) as err:
        load_pretrained(tiny_model('ee'), HUB_NAME)
    assert str(err.value).startswith(
        f'MODEL.PRETRAINED {HUB_NAME}: model.safetensors is not in the Hugging Face cache and '
        'the Hub is offline (huggingface.co:443 cannot be reached: refused): connect to the '
        'network and run again, or download model.safetensors of https://huggingface.co/')
    assert len(calls) == 1  # the cache was asked; nothing was downloaded


HUB_OFFLINE_CALL = """
import sys, time
sys.path.insert(0, 'lib')
from utils.hub import hub_weights_file
start = time.perf_counter()
try:
    hub_weights_file('hf-hub:timm/hrnet_w18_small_v2.ms_in1k', 'MODEL.PRETRAINED')
except Exception as e:
    print(type(e).__name__, e)
print('seconds', time.perf_counter() - start)
"""


def test_offline_the_real_hub_client_answers_in_seconds_and_silently(tmp_path):
    """huggingface_hub itself, with an empty cache and a Hub that cannot resolve (a
    reserved .invalid name: offline on every machine): within a few seconds, where its
    retries took half a minute, and not a word of its own on either stream."""
    pytest.importorskip('huggingface_hub')
    env = dict(os.environ, HF_HOME=str(tmp_path), HF_ENDPOINT='https://huggingface.invalid')
    env.pop('HF_HUB_OFFLINE', None)
    proc = subprocess.run([sys.executable, '-c', HUB_OFFLINE_CALL], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith('CheckpointError MODEL.PRETRAINED hf-hub:timm/hrnet_w18_small_v2'
                               '.ms_in1k: model.safetensors is not in the Hugging Face cache '
                               'and the Hub is offline (huggingface.invalid:443 cannot be '
                               'reached'), proc.stdout + proc.stderr
    assert float(lines[1].split()[1]) < 15  # the probe waits 3 s at most; retries took 23
    assert len(lines) == 2 and proc.stderr == '', proc.stdout + proc.stderr


@pytest.mark.parametrize('name', ['hf-hub:hrnet_w48', 'hf-hub:timm/', 'hf-hub:a/b/c'])
def test_malformed_hub_name_is_a_config_error(monkeypatch, name):
    calls = stub_hub(monkeypatch, lambda: pytest.fail('no download for a malformed name'))
    with pytest.raises(ConfigError, match=r'expected hf-hub:OWNER/REPO'):
        load_pretrained(tiny_model('ee'), name)
    assert calls == []
