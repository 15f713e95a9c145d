"""models.sparse.tables: the break-even densities of 'auto', measured on this machine and
cached, or shipped. The autouse fixture ``break_even_cache`` (tests/conftest.py) points
the cache at the test's tmp_path."""
import json
import logging
import os

import pytest
import torch

from models.sparse import precision, tables
from models.sparse.policy import ExecutionPolicy

CPU = torch.device('cpu')
MEASURED = {(3, None): 0.125, (1, None): 0.375}  # unlike any shipped table


def resolutions(caplog):
    return [r.getMessage() for r in caplog.records if r.name == tables.__name__]


def test_cache_path_follows_the_variable_then_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv(tables.CACHE_ENV, str(tmp_path / 'mine.json'))
    assert tables.cache_path() == str(tmp_path / 'mine.json')
    monkeypatch.delenv(tables.CACHE_ENV)
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
    assert tables.cache_path() == str(tmp_path / 'xdg' / 'adpc' / 'break_even.json')
    monkeypatch.delenv('XDG_CACHE_HOME')
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    assert tables.cache_path() == str(tmp_path / 'home' / '.cache' / 'adpc' / 'break_even.json')


def test_a_stored_table_is_what_auto_uses_and_the_log_says_so_once(break_even_cache, caplog):
    key = tables.machine_key(CPU, torch.float32)
    assert tables.store_table(key, MEASURED, 1.0) == str(break_even_cache)
    with caplog.at_level(logging.INFO, logger=tables.__name__):
        assert tables.break_even_table(CPU) == MEASURED
        assert ExecutionPolicy.for_device('auto', CPU).break_even == MEASURED
    said = resolutions(caplog)
    assert len(said) == 1 and 'measured on this machine' in said[0] and key in said[0]
    assert str(break_even_cache) in said[0]


def test_the_key_names_device_torch_dtype_and_threads(break_even_cache, caplog):
    """A table measured with other threads is not used: the shipped one is, and the log
    says how to measure this machine's."""
    torch.set_num_threads(1)
    tables.store_table(tables.machine_key(CPU, torch.float32), MEASURED, 1.0)
    key = tables.machine_key(CPU, torch.float32)
    assert key.split(' | ')[1:] == [f'torch {torch.__version__}', 'float32', '1 threads']
    torch.set_num_threads(2)
    with caplog.at_level(logging.INFO, logger=tables.__name__):
        assert tables.break_even_table(CPU) == tables.SHIPPED['cpu']
    said = resolutions(caplog)
    assert len(said) == 1 and 'shipped' in said[0]
    assert 'python tools/calibrate.py --device cpu --threads 2' in said[0]


@pytest.mark.parametrize('native', [True, False])
def test_the_dtype_is_the_autocast_one_only_where_the_device_computes_it(monkeypatch,
                                                                         native):
    monkeypatch.setattr(precision, 'reduced_precision_units',
                        lambda device: 'bf16 units' if native else None)
    assert tables.compute_dtype(CPU) == torch.float32
    with torch.autocast('cpu', dtype=torch.bfloat16):
        dtype = tables.compute_dtype(CPU)
        assert dtype == (torch.bfloat16 if native else torch.float32)
        tables.store_table(tables.machine_key(CPU, dtype), MEASURED, 1.0)
        assert tables.break_even_table(CPU) == MEASURED
    assert tables.break_even_table(CPU) == (tables.SHIPPED['cpu'] if native else MEASURED)


FORMAT = tables.FORMAT
BAD_FILES = {
    'not JSON': b'break-even densities',
    'truncated': b'{"format": "adpc-break-even/1", "tables": {"AMD',
    'not a dict': b'[1, 2, 3]',
    'another version': json.dumps({'format': 'adpc-break-even/99', 'tables': {}}).encode(),
    'foreign JSON': json.dumps({'name': 'my notes'}).encode(),
    'not UTF-8': b'\xff\xfe\x00{',
}


@pytest.mark.parametrize('content', BAD_FILES.values(), ids=list(BAD_FILES))
def test_an_unusable_cache_file_is_ignored_in_one_line_and_never_replaced(
        break_even_cache, caplog, content):
    break_even_cache.write_bytes(content)
    with caplog.at_level(logging.INFO, logger=tables.__name__):
        assert tables.break_even_table(CPU) == tables.SHIPPED['cpu']
        assert tables.break_even_table(CPU) == tables.SHIPPED['cpu']
        assert tables.store_table('key', MEASURED, 1.0) is None
    said = resolutions(caplog)
    assert sum('ignoring the break-even cache' in s for s in said) == 1
    assert sum('not cached' in s for s in said) == 1
    assert break_even_cache.read_bytes() == content  # what was there is left as it was


@pytest.mark.parametrize('entry', [{'break_even': [[5, None, 0.5]]}, {'break_even': []},
                                   {'break_even': [[3, None, 1.5]]}, ['not', 'a', 'dict']])
def test_a_wrong_entry_is_ignored_in_one_line(break_even_cache, caplog, entry):
    key = tables.machine_key(CPU, torch.float32)
    break_even_cache.write_text(json.dumps({'format': FORMAT, 'tables': {key: entry}}))
    with caplog.at_level(logging.INFO, logger=tables.__name__):
        assert tables.break_even_table(CPU) == tables.SHIPPED['cpu']
    assert sum('ignoring the break-even cache' in s for s in resolutions(caplog)) == 1


def test_writes_keep_other_keys_and_leave_no_temporary_file(break_even_cache):
    tables.store_table('other machine', {(3, 64): 0.5}, 2.0)
    tables.store_table('this machine', MEASURED, 3.0)
    cached = tables.read_cache(str(break_even_cache))
    assert set(cached) == {'other machine', 'this machine'}
    assert tables.decode(cached['this machine']['break_even']) == MEASURED
    assert os.listdir(break_even_cache.parent) == [break_even_cache.name]


def test_an_unwritable_cache_folder_is_one_warning(monkeypatch, tmp_path, caplog):
    blocker = tmp_path / 'a file'
    blocker.write_text('not a folder')
    monkeypatch.setenv(tables.CACHE_ENV, str(blocker / 'break_even.json'))
    with caplog.at_level(logging.INFO, logger=tables.__name__):
        assert tables.store_table('key', MEASURED, 1.0) is None
        assert tables.break_even_table(CPU) == tables.SHIPPED['cpu']  # read: no file
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and 'cannot write' in warnings[0].getMessage()
    assert blocker.read_text() == 'not a folder'
