import pytest

from datasets.synthetic import generate_synthetic_cityscapes

# Small enough for every test to take well under a second per sample.
SYNTHETIC = dict(num_train=5, num_val=3, num_test=2, height=48, width=96, seed=7)


@pytest.fixture(scope='session')
def synthetic_args():
    """Arguments of `generate_synthetic_cityscapes` that made ``synthetic_root``."""
    return dict(SYNTHETIC)


@pytest.fixture(scope='session')
def synthetic_root(tmp_path_factory, synthetic_args):
    """A tiny synthetic Cityscapes tree with its lists; tests must not modify it."""
    root = tmp_path_factory.mktemp('synthetic')
    generate_synthetic_cityscapes(str(root), **synthetic_args)
    return str(root)
