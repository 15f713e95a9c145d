"""Log files never shared or appended to; the config goes to the file only; progress
bars only on a terminal."""
import logging
import re
import sys

from utils.logger import log_to_file, progress, setup_logger


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
