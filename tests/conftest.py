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
