import errno
import logging
import os
import re

import pytest
import torch

from config import config
from utils.errors import OutputError
from utils.io import atomic_torch_save, atomic_write_text, check_writable, output_error, \
    run_directory, save_json, tensorboard_directory
from utils.logger import setup_logger
from full_disk import FullDisk  # beside this file


def test_atomic_save_replaces_the_file(tmp_path):
    path = str(tmp_path / 'sub' / 'ckpt.pth')
    atomic_torch_save({'a': torch.ones(2)}, path)
    atomic_torch_save({'a': torch.zeros(2)}, path)
    assert torch.equal(torch.load(path, weights_only=True)['a'], torch.zeros(2))
    assert os.listdir(tmp_path / 'sub') == ['ckpt.pth']


class Exploding:
    """Pickling fails half-way, like a process killed while writing."""

    def __reduce__(self):
        raise KeyboardInterrupt('killed while writing')


def test_failed_save_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    path = str(tmp_path / 'checkpoint.pth.tar')
    atomic_torch_save({'epoch': 1}, path)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({'epoch': 2, 'bad': Exploding()}, path)
    assert torch.load(path, weights_only=True) == {'epoch': 1}
    assert os.listdir(tmp_path) == ['checkpoint.pth.tar']


def test_text_and_json(tmp_path):
    atomic_write_text(str(tmp_path / 'result.txt'), '1.00\t2.00')
    assert (tmp_path / 'result.txt').read_text() == '1.00\t2.00'
    save_json(str(tmp_path / 's.json'), {'Gflops_mean': 1.5})
    assert '"Gflops_mean": 1.5' in (tmp_path / 's.json').read_text()


def test_run_directory_is_output_dataset_cfg_stem():
    cfg = config.clone()
    cfg.defrost()
    cfg.OUTPUT_DIR = 'output'
    assert run_directory(cfg, 'experiments/cityscapes/w48_adpc.yaml') == \
        os.path.join('output', 'cityscapes', 'w48_adpc')
    assert tensorboard_directory(cfg, 'a/w48.yaml') == os.path.join('output', 'cityscapes', 'w48')
    cfg.LOG_DIR = 'log'
    assert tensorboard_directory(cfg, 'a/w48.yaml') == os.path.join('log', 'cityscapes', 'w48')


def test_a_full_disk_inside_torch_save_is_named_and_keeps_the_previous_file(tmp_path,
                                                                             monkeypatch):
    path = str(tmp_path / 'checkpoint.pth.tar')
    atomic_torch_save({'epoch': 1}, path)
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, 'fdopen', lambda fd, *a, **k: FullDisk(real_fdopen(fd, *a, **k), 100))
    # torch.save turns the file's OSError into its own RuntimeError; the disk's reason
    # must still be what the user reads.
    with pytest.raises(OutputError, match=rf'cannot write {re.escape(path)} \(No space left '
                                          r'on device\): free space on that disk'):
        atomic_torch_save({'epoch': 2, 'w': torch.zeros(10000)}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {'epoch': 1}
    assert os.listdir(tmp_path) == ['checkpoint.pth.tar']


def test_check_writable_creates_nothing_and_names_what_blocks(tmp_path, monkeypatch):
    touched = os.stat(tmp_path).st_mtime_ns
    check_writable(str(tmp_path / 'a' / 'b'), '--out')  # may be made: fine
    check_writable(str(tmp_path), 'OUTPUT_DIR')
    assert os.listdir(tmp_path) == [] and os.stat(tmp_path).st_mtime_ns == touched
    (tmp_path / 'f').write_text('x')
    with pytest.raises(OutputError, match=r'cannot write .*f/sub \(--out\): .*/f is a file, not '
                                          r'a folder: choose another --out'):
        check_writable(str(tmp_path / 'f' / 'sub'), '--out')
    with pytest.raises(OutputError, match=r'--json .* is a folder: give the name of a file'):
        check_writable(str(tmp_path), '--json', is_file=True)
    full = os.statvfs_result((4096, 4096, 100, 0, 0, 10, 0, 0, 0, 255))
    monkeypatch.setattr(os, 'statvfs', lambda path: full)
    with pytest.raises(OutputError, match=r'the disk of .* is full: free space on that disk, '
                                          r'or choose another OUTPUT_DIR on another disk'):
        check_writable(str(tmp_path / 'run'), 'OUTPUT_DIR')
    assert sorted(os.listdir(tmp_path)) == ['f']


def test_only_refusals_of_the_machine_become_one_line():
    assert output_error(ValueError('bug')) is None
    assert output_error(FileNotFoundError(errno.ENOENT, 'No such file', 'x.png')) is None
    refused = output_error(PermissionError(errno.EACCES, 'Permission denied', '/r/x.png'))
    assert str(refused) == ('/r/x.png: Permission denied: make it writable, or choose another '
                            'folder you can write')
    vanished = output_error(FileNotFoundError(errno.ENOENT, 'No such file'), '/r/x.png')
    assert str(vanished).startswith('cannot write /r/x.png (No such file)')


@pytest.fixture
def root_logger():
    """The root logger's handlers as they were, after a test that sets up its own."""
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    yield root
    for handler in list(root.handlers):
        if handler not in before:
            root.removeHandler(handler)
    root.setLevel(level)


def test_a_log_file_the_disk_refuses_is_one_warning(tmp_path, capsys, root_logger):
    log_file = setup_logger(str(tmp_path), 'run', 'test')
    handler = next(h for h in root_logger.handlers if getattr(h, 'baseFilename', None))

    class Refusing:
        def write(self, text):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def flush(self):
            pass
    handler.stream = Refusing()
    logging.getLogger('x').info('first')
    logging.getLogger('x').info('second')
    err = capsys.readouterr().err
    assert err.count(f'warning: the log file {log_file} cannot be written (No space left on '
                     'device)') == 1, err
    assert 'Traceback' not in err and 'Logging error' not in err
