"""Log files never shared or appended to; the config goes to the file only; progress
bars only on a terminal."""
import logging
import os
import re
import signal
import sys

import pytest

from utils.logger import log_to_file, progress, setup_logger, tensorboard_writer


def test_each_setup_creates_its_own_log_file(tmp_path):
    first = setup_logger(str(tmp_path), 'tiny', 'test')
    logging.getLogger('x').info('first evaluation')
    second = setup_logger(str(tmp_path), 'tiny', 'test')  # same process, same second
    logging.getLogger('x').info('second evaluation')
    assert first != second
    assert re.fullmatch(r'tiny_\d{4}(-\d\d){5}_\d+(-\d+)?_test\.log', first.split('/')[-1])
    assert 'second' not in open(first).read() and 'first' not in open(second).read()


def test_log_to_file_skips_the_console(tmp_path, capsys):
    log = setup_logger(str(tmp_path), 'tiny', 'train')
    log_to_file('MODEL:\n  NAME: model_anytime')
    logging.getLogger('x').info('on both')
    out = capsys.readouterr().out
    assert 'NAME: model_anytime' not in out and 'on both' in out
    assert 'NAME: model_anytime' in open(log).read()


class Terminal:
    def isatty(self):
        return True

    def write(self, text):
        pass

    def flush(self):
        pass


def test_progress_bar_only_on_a_terminal(monkeypatch):
    assert not hasattr(progress([1, 2], 'x'), 'format_dict')  # captured: no tqdm
    monkeypatch.setattr(sys, 'stderr', Terminal())
    assert hasattr(progress([1, 2], 'x'), 'format_dict')
    assert not hasattr(progress([1, 2], 'x', is_main=False), 'format_dict')


def test_ctrl_c_inside_a_tensorboard_write_waits_for_its_end(tmp_path):
    # A SIGINT during add_scalar would leave tensorboardX's queue half-fed and its exit
    # handler waiting forever: the interrupt is raised once the event is handed over.
    writer = tensorboard_writer(str(tmp_path))
    done = []
    original = type(writer).__mro__[1].add_scalar

    def interrupted_write(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # arrives in the middle of the write
        original(self, *args, **kwargs)
        done.append(True)

    type(writer).__mro__[1].add_scalar = interrupted_write
    try:
        with pytest.raises(KeyboardInterrupt):
            writer.add_scalar('train/loss', 1.0, 0)
    finally:
        type(writer).__mro__[1].add_scalar = original
    assert done == [True]  # the write finished before the interrupt was raised
    writer.close()  # and the writer still closes
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
