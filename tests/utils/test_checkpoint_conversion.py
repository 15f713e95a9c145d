"""tools/convert_checkpoint.py: a trusted file of an older format becomes one that loads
with torch.load(weights_only=True), keeping what a checkpoint of this project holds."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from utils.checkpoint import read_checkpoint
from utils.checkpoint_conversion import convert_checkpoint
from utils.errors import CheckpointError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Args:
    """What the original's training scripts put beside the weights."""

    def __init__(self, marker=None):
        self.marker = marker

    def __reduce__(self):  # a trusted file's object: unpickling it touches the marker
        return open, (self.marker, 'w')


def resume_checkpoint(marker):
    """An original-style checkpoint.pth.tar: numpy counters, an optimiser, an object."""
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    state = {'model.' + k: v for k, v in model.state_dict().items()}
    return {'epoch': np.int64(5), 'best_mIoU': np.float64(0.625), 'state_dict': state,
            'optimizer': optimizer.state_dict(), 'args': Args(marker)}


def test_trusted_resume_checkpoint_keeps_weights_optimiser_and_counters(tmp_path):
    src, dst = str(tmp_path / 'old.pth.tar'), str(tmp_path / 'new.pth.tar')
    original = resume_checkpoint(str(tmp_path / 'unpickled'))
    torch.save(original, src)
    convert_checkpoint(src, dst, trust=True)
    assert os.path.exists(tmp_path / 'unpickled')  # --trust really unpickled it fully
    converted = torch.load(dst, weights_only=True)
    assert set(converted) == {'epoch', 'best_mIoU', 'state_dict', 'optimizer'}
    assert type(converted['epoch']) is int and converted['epoch'] == 5
    assert type(converted['best_mIoU']) is float and converted['best_mIoU'] == 0.625
    for key, value in original['state_dict'].items():
        assert torch.equal(converted['state_dict'][key], value)
    momentum = converted['optimizer']['state'][0]['momentum_buffer']
    assert torch.equal(momentum, original['optimizer']['state'][0]['momentum_buffer'])
    assert converted['optimizer']['param_groups'][0]['lr'] == 0.1


def test_trusted_state_dict_keeps_its_tensors(tmp_path):
    src, dst = str(tmp_path / 'old.pth'), str(tmp_path / 'new.pth')
    torch.save({'model.w': torch.nn.Parameter(torch.ones(2)), 'loss.criterion.weight': torch.ones(19),
                'note': np.float32(1.0)}, src)
    convert_checkpoint(src, dst, trust=True)
    converted = read_checkpoint(dst)
    assert set(converted) == {'model.w', 'loss.criterion.weight'}
    assert type(converted['model.w']) is torch.Tensor


def test_untrusted_file_is_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / 'MARKER'
    src, dst = str(tmp_path / 'old.pth.tar'), str(tmp_path / 'new.pth.tar')
    torch.save(resume_checkpoint(str(marker)), src)
    with pytest.raises(CheckpointError, match=r'old.pth.tar holds Python objects beyond tensors: '
                                              r'converting it .* runs any code .*--trust'):
        convert_checkpoint(src, dst)
    assert not marker.exists() and not os.path.exists(dst)


def test_existing_output_is_never_overwritten(tmp_path):
    src, dst = tmp_path / 'old.pth', tmp_path / 'new.pth'
    torch.save({'w': torch.ones(1)}, src)
    dst.write_text('mine')
    with pytest.raises(CheckpointError, match='new.pth exists'):
        convert_checkpoint(str(src), str(dst), trust=True)
    assert dst.read_text() == 'mine'


def convert_tool(*args):
    return subprocess.run([sys.executable, 'tools/convert_checkpoint.py', *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_tool_refuses_without_trust_and_converts_with_it(tmp_path):
    marker = tmp_path / 'MARKER'
    src, dst = str(tmp_path / 'old.pth.tar'), str(tmp_path / 'new.pth.tar')
    torch.save(resume_checkpoint(str(marker)), src)

    refused = convert_tool(src, dst)
    assert refused.returncode != 0
    assert refused.stderr.startswith(f'error: {src} holds Python objects beyond tensors')
    assert 'Traceback' not in refused.stderr
    assert not marker.exists() and not os.path.exists(dst)

    converted = convert_tool(src, dst, '--trust')
    assert converted.returncode == 0, converted.stderr
    assert f'wrote {dst}: 2 model tensors, optimizer, epoch, best_mIoU' in converted.stderr
    assert read_checkpoint(dst)['epoch'] == 5
