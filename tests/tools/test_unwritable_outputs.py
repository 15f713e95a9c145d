"""An output folder that cannot be written ends every tool with one `error:` line naming
the folder and the option that sets it, before any work and without creating anything;
a write that the disk refuses later (a full disk while a checkpoint is saved) is one
line too, and what the file held before stays whole.

Two unwritable folders stand in for a read-only mount or a folder without write
permission, both of which root would write through: a path under a regular file (real,
for every user), and a folder whose file creations fail with EROFS (``os.open``
patched), in which a tool that made folders before its check would leave them.
"""
import errno
import logging
import os
import runpy
import sys

import cv2
import numpy as np
import pytest
import torch

from datasets.synthetic import generate_synthetic_cityscapes
from utils.logger import FILE_ONLY

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'utils'))
from full_disk import FullDisk  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = os.path.join(ROOT, 'tools')
# torch's error recorder cannot enable faulthandler on pytest's captured stderr.
pytestmark = pytest.mark.filterwarnings('ignore:Unable to enable fault handler')
TINY = os.path.join(ROOT, 'experiments', 'synthetic', 'tiny_adpc.yaml')
SMALL = ['TRAIN.IMAGE_SIZE', '[64,32]', 'TEST.IMAGE_SIZE', '[64,32]', 'TRAIN.BASE_SIZE', '64',
         'TEST.BASE_SIZE', '64', 'TRAIN.BATCH_SIZE_PER_GPU', '1', 'WORKERS', '0']


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('synthetic'))
    generate_synthetic_cityscapes(root, num_train=1, num_val=1, num_test=0, height=32, width=64)
    return root


def run_tool(argv, monkeypatch, capsys):
    """Run ``tools/<argv[0]>`` in this process as ``python tools/...`` would; returns
    (exit status, stdout, stderr)."""
    monkeypatch.syspath_prepend(TOOLS)
    monkeypatch.setattr(sys, 'argv', list(argv))
    monkeypatch.delenv('ADPC_DEBUG', raising=False)
    loggers = [logging.getLogger(), logging.getLogger(FILE_ONLY)]
    before = [(list(log.handlers), log.level) for log in loggers]
    try:
        runpy.run_path(os.path.join(TOOLS, argv[0]), run_name='__main__')
        status = 0
    except SystemExit as e:
        status = e.code
    finally:  # the tool's log handlers end with it, as they do with its process
        for log, (handlers, level) in zip(loggers, before):
            for handler in list(log.handlers):
                if handler not in handlers:
                    log.removeHandler(handler)
                    handler.close()
            log.setLevel(level)
    out, err = capsys.readouterr()
    return status, out, err


# Each tool with its output path at {out}. Where the tool would read a file first, that
# file is missing ({missing}): the folder's error, not the file's, shows that the check
# comes before any work.
TOOL_LINES = {
    'train_ee': (['train_ee.py', '--cfg', TINY, 'DATASET.ROOT', '{data}', 'OUTPUT_DIR', '{out}']
                 + SMALL, 'OUTPUT_DIR'),
    'test_ee': (['test_ee.py', '--cfg', TINY, 'DATASET.ROOT', '{data}', 'OUTPUT_DIR', '{out}',
                 'TEST.MODEL_FILE', '{missing}'] + SMALL, 'OUTPUT_DIR'),
    'test_ee --show-dir': (['test_ee.py', '--cfg', TINY, 'DATASET.ROOT', '{data}', 'OUTPUT_DIR',
                            '{tmp}/results', 'TEST.MODEL_FILE', '{missing}', '--show-dir',
                            '{out}'] + SMALL, '--show-dir'),
    'test_ee --submit': (['test_ee.py', '--cfg', TINY, 'DATASET.ROOT', '{data}', 'OUTPUT_DIR',
                          '{tmp}/results', 'TEST.MODEL_FILE', '{missing}', '--submit',
                          '{out}'] + SMALL, '--submit'),
    'sweep_threshold': (['sweep_threshold.py', '--cfg', TINY, 'DATASET.ROOT', '{data}',
                         'OUTPUT_DIR', '{tmp}/results', 'TEST.MODEL_FILE', '{missing}',
                         '--out', '{out}'] + SMALL, '--out'),
    'predict': (['predict.py', '--cfg', TINY, '--image', '{missing}', '--out', '{out}',
                 'TEST.MODEL_FILE', '{missing}'], '--out'),
    'visualize': (['visualize.py', '--cfg', TINY, '--num', '1', '--out', '{out}',
                   'TEST.MODEL_FILE', '{missing}'], '--out'),
    'profile_latency --out': (['profile_latency.py', '--cfg', TINY, '--out', '{out}/p.json',
                               'TEST.MODEL_FILE', '{missing}'], '--out'),
    'profile_latency --json': (['profile_latency.py', '--cfg', TINY, '--profile', '{missing}',
                                '--json', '{out}/e.json'], '--json'),
    'benchmark': (['benchmark.py', '--cfg', TINY, '--json', '{out}/b.json',
                   'TEST.MODEL_FILE', '{missing}'], '--json'),
    'get_flops': (['get_flops.py', '--cfg', TINY, '--image', '{missing}', '--json',
                   '{out}/f.json'], '--json'),
    'gpu_check --out': (['gpu_check.py', '--device', 'cpu', '--quick', '--out', '{out}'],
                        '--out'),
    'gpu_check --json': (['gpu_check.py', '--device', 'cpu', '--quick', '--json',
                          '{out}/g.json'], '--json'),
    'convert_checkpoint': (['convert_checkpoint.py', '{missing}', '{out}/new.pth'], 'OUT'),
    'make_cityscapes_lists': (['make_cityscapes_lists.py', '--root', '{out}'], '--root'),
    'make_synthetic_cityscapes': (['make_synthetic_cityscapes.py', '--root', '{out}',
                                   '--train', '1', '--val', '0', '--test', '0', '--height',
                                   '32', '--width', '64'], '--root'),
}


@pytest.fixture(params=['under-a-file', 'read-only'])
def unwritable(request, tmp_path, monkeypatch):
    """(the output path to give, the folder that must stay as it was)."""
    if request.param == 'under-a-file':
        blocker = tmp_path / 'blocker'
        blocker.write_text('a file, where the tool would need a folder')
        return str(blocker / 'out'), blocker
    locked = tmp_path / 'locked'
    locked.mkdir()
    real_open, real_access = os.open, os.access

    def inside(path):
        return os.path.abspath(path).startswith(str(locked))

    def read_only_open(path, flags, *args, **kwargs):
        if inside(path) and flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return real_open(path, flags, *args, **kwargs)

    def read_only_access(path, mode, *args, **kwargs):
        return not (inside(path) and mode & os.W_OK) and real_access(path, mode, *args, **kwargs)
    monkeypatch.setattr(os, 'open', read_only_open)
    monkeypatch.setattr(os, 'access', read_only_access)
    return str(locked / 'out'), locked


def snapshot(folder):
    """What a folder holds and when it last changed (a file: its text)."""
    if folder.is_file():
        return folder.read_text()
    return os.stat(folder).st_mtime_ns, sorted(str(p.relative_to(folder))
                                               for p in folder.rglob('*'))


@pytest.mark.parametrize('tool', list(TOOL_LINES))
def test_an_unwritable_output_folder_is_one_line_before_any_work(tool, unwritable, data_root,
                                                                 tmp_path, monkeypatch, capsys):
    out, guarded = unwritable
    before = snapshot(guarded)
    argv, option = TOOL_LINES[tool]
    argv = [a.format(out=out, data=data_root, tmp=tmp_path, missing=tmp_path / 'missing.pth')
            for a in argv]
    status, stdout, stderr = run_tool(argv, monkeypatch, capsys)
    errors = [line for line in stderr.splitlines() if line.startswith('error:')]
    assert status == 2, stdout[-2000:] + stderr[-2000:]
    assert len(errors) == 1, stderr
    assert f'cannot write {out}' in errors[0] and f'({option})' in errors[0], errors[0]
    assert f'choose another {option}' in errors[0], errors[0]
    assert 'Traceback' not in stdout + stderr
    assert snapshot(guarded) == before  # nothing made in (or under) the folder
    assert not (tmp_path / 'results').exists()  # nor anywhere else


def test_a_checkpoint_save_that_fills_the_disk_keeps_the_last_checkpoint(
        data_root, tmp_path, monkeypatch, capsys):
    run = tmp_path / 'cityscapes' / 'tiny_adpc'
    checkpoint = run / 'checkpoint.pth.tar'
    saved = {}
    real_fdopen = os.fdopen

    def disk_full_after_epoch_1(fd, *args, **kwargs):
        f = real_fdopen(fd, *args, **kwargs)
        if not checkpoint.exists():
            return f
        saved.setdefault('bytes', checkpoint.read_bytes())  # what the disk holds by then
        return FullDisk(f, room=4096)
    monkeypatch.setattr(os, 'fdopen', disk_full_after_epoch_1)
    status, stdout, stderr = run_tool(
        ['train_ee.py', '--cfg', TINY, 'DATASET.ROOT', data_root, 'OUTPUT_DIR', str(tmp_path),
         'TRAIN.EVAL_INTERVAL', '0', 'TRAIN.END_EPOCH', '2'] + SMALL, monkeypatch, capsys)
    errors = [line for line in stderr.splitlines() if line.startswith('error:')]
    assert status == 2, stdout[-2000:] + stderr[-2000:]
    assert len(errors) == 1, stderr
    assert f'cannot write {checkpoint} (No space left on device)' in errors[0], errors[0]
    assert 'Traceback' not in stdout + stderr
    assert checkpoint.read_bytes() == saved['bytes']  # the epoch-1 checkpoint, whole
    assert torch.load(checkpoint, weights_only=True)['epoch'] == 1
    assert not [n for n in os.listdir(run) if n.endswith('.tmp')]


@pytest.mark.parametrize('tool', ['predict', 'visualize'])
def test_an_image_write_refused_later_is_one_line(tool, tmp_path, monkeypatch, capsys):
    image = str(tmp_path / 'street_leftImg8bit.png')
    cv2.imwrite(image, np.zeros((32, 64, 3), np.uint8))
    out = tmp_path / 'out'
    real_replace = os.replace

    def full_disk_replace(src, dst):  # the check passed; the disk fills up meanwhile
        if str(out) in str(dst):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_replace(src, dst)
    monkeypatch.setattr(os, 'replace', full_disk_replace)
    option = {'predict': '--image', 'visualize': '--images'}[tool]
    status, stdout, stderr = run_tool([f'{tool}.py', '--cfg', TINY, option, image, '--out',
                                       str(out)], monkeypatch, capsys)
    errors = [line for line in stderr.splitlines() if line.startswith('error:')]
    assert status == 2, stdout[-2000:] + stderr[-2000:]
    assert len(errors) == 1 and 'No space left on device' in errors[0], stderr
    assert 'Traceback' not in stdout + stderr
    assert not out.exists() or not os.listdir(out)  # no half-written or temporary file
