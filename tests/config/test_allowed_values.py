"""Every key with a fixed set or range of values refuses others when it is merged, with
one message naming the key, the value and the values allowed."""
import argparse
import os
import re

import pytest

from config import ALLOWED, check_allowed, default_config, flat_items, update_config
from config.allowed import Between, Each, OneOf
from utils.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
W48 = os.path.join(ROOT, 'experiments', 'cityscapes', 'w48.yaml')
DEFAULTS = flat_items(default_config())


def outside(allowed, default):
    """A value of the default's type that ``allowed`` refuses."""
    if isinstance(allowed, Each):
        item = outside(allowed.item, default[0] if default else 1)
        return type(default)([item] * (allowed.length or 1))
    if isinstance(allowed, OneOf):
        return 'no_such_name' if isinstance(default, str) else max(allowed.choices) + 1
    step = 1 if isinstance(default, int) else 0.5
    value = allowed.low - step if allowed.low is not None else allowed.high + step
    return type(default)(value)


def command_line(value):
    """``value`` as typed on the command line."""
    return str(list(value)) if isinstance(value, (list, tuple)) else str(value)


def merge(*opts):
    return update_config(default_config(), argparse.Namespace(cfg=W48, opts=list(opts)))


def test_every_constrained_key_is_declared():
    assert set(ALLOWED) <= set(DEFAULTS)


@pytest.mark.parametrize('key', sorted(ALLOWED))
def test_every_constrained_key_accepts_its_default_and_refuses_a_value_outside(key):
    default, allowed = DEFAULTS[key], ALLOWED[key]
    assert default in allowed
    check_allowed(key, default)
    bad = outside(allowed, default)
    assert bad not in allowed
    with pytest.raises(ConfigError) as error:
        merge(key, command_line(bad))
    message = str(error.value)
    assert message.startswith(f'{key} ') and 'on the command line is not allowed' in message
    assert message.endswith(f'use {allowed}')


def test_the_message_names_key_value_and_the_values_allowed():
    with pytest.raises(ConfigError, match=re.escape(
            "MASK.EXECUTION 'fast' on the command line is not allowed: use one of 'dense', "
            "'sparse', 'auto'")):
        merge('MASK.EXECUTION', 'fast')
    with pytest.raises(ConfigError, match=re.escape(
            'TEST.BATCH_SIZE_PER_GPU 0 on the command line is not allowed: use a value >= 1')):
        merge('TEST.BATCH_SIZE_PER_GPU', '0')


def test_a_value_in_a_file_names_the_file(tmp_path):
    path = tmp_path / 'bad.yaml'
    path.write_text('MASK:\n  CONF_THRE: 1.5\n')
    with pytest.raises(ConfigError, match=r'MASK\.CONF_THRE 1\.5 in .*bad\.yaml is not allowed: '
                                          r'use a value in \[0\.0, 1\.0\]'):
        update_config(default_config(), argparse.Namespace(cfg=str(path), opts=[]))


@pytest.mark.parametrize('key,value', [('MASK.CONF_THRE', '0.0'), ('MASK.CONF_THRE', '1'),
                                       ('TEST.SCALE_LIST', '[0.5,1.75]'),
                                       ('EXIT.FINAL_CONV_KERNEL', '3'), ('WORKERS', '0')])
def test_the_ends_of_ranges_and_every_choice_are_allowed(key, value):
    merge(key, value)


@pytest.mark.parametrize('allowed,inside,outside_', [
    (Between(0.0, 1.0), [0.0, 0.5, 1.0], [-0.1, 1.1, None, True, 'x']),
    (Between(0.0, above=True), [1e-9, 3], [0.0, -1]),
    (Each(Between(1), length=2), [[1, 2], (5, 5)], [[1], [0, 1], [1, 2, 3], 3]),
    (OneOf('a', 'b'), ['a', 'b'], ['c', None]),
])
def test_constraints(allowed, inside, outside_):
    assert all(v in allowed for v in inside)
    assert not any(v in allowed for v in outside_)


def test_names_match_the_registries_of_the_code_that_reads_them():
    import datasets.build
    import models
    from models.confidence import CRITERIA
    from models.sparse.policy import EXECUTION_MODES
    assert set(ALLOWED['MODEL.NAME'].choices) == set(models.MODELS)
    assert set(ALLOWED['DATASET.DATASET'].choices) == set(datasets.build.DATASETS)
    assert ALLOWED['MASK.CRIT'].choices == CRITERIA
    assert ALLOWED['MASK.EXECUTION'].choices == EXECUTION_MODES
