import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'lib'))


@pytest.fixture(autouse=True)
def restore_torch_threads():
    """Undo a test's torch.set_num_threads: the thread count changes summation orders,
    and with them the results of later tests (a training, most of all)."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def break_even_cache(tmp_path, monkeypatch):
    """Each test's own (absent) cache of measured break-even densities: 'auto' uses the
    shipped table, whatever the user's cache holds; a test may write its own there."""
    path = tmp_path / 'break_even.json'
    monkeypatch.setenv('ADPC_BREAK_EVEN', str(path))
    return path
