"""Configuration files and command-line values are data: a YAML tag or a value that
would construct a Python object is refused, and its code never runs."""
import argparse
import os
import subprocess
import sys

import pytest
import yaml

from config import config, update_config
from utils.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, 'experiments', 'synthetic', 'tiny_adpc.yaml')
TAGS = ['!!python/object/apply:os.system ["touch {marker}"]',
        '!!python/object/new:os.system ["touch {marker}"]',
        '!!python/name:os.system']


def merged(cfg_path, *opts):
    return update_config(config.clone(), argparse.Namespace(cfg=cfg_path, opts=list(opts)))


def evil_config(folder, tag, marker):
    """An experiment that sets OUTPUT_DIR with ``tag`` on top of the tiny config."""
    path = folder / 'config.yaml'
    path.write_text(f'_BASE_: {TINY}\nOUTPUT_DIR: {tag.format(marker=marker)}\n')
    return str(path)


@pytest.mark.parametrize('tag', TAGS)
def test_python_tag_in_a_config_file_is_refused(tmp_path, tag):
    marker = tmp_path / 'MARKER'
    with pytest.raises((yaml.YAMLError, ConfigError), match='python/'):
        merged(evil_config(tmp_path, tag, marker))
    assert not marker.exists()


@pytest.mark.parametrize('value', ['!!python/object/apply:os.system ["touch {marker}"]',
                                   "__import__('os').system('touch {marker}')"])
def test_command_line_values_are_literals_never_code(tmp_path, value):
    marker = tmp_path / 'MARKER'
    value = value.format(marker=marker)
    # A key of another type refuses the text; a string key keeps it as text.
    with pytest.raises((ValueError, ConfigError), match='TRAIN.LR'):
        merged(TINY, 'TRAIN.LR', value)
    assert merged(TINY, 'OUTPUT_DIR', value).OUTPUT_DIR == value
    assert not marker.exists()


def test_tools_refuse_a_config_with_a_python_tag(tmp_path):
    marker = tmp_path / 'MARKER'
    in_file = ['--cfg', evil_config(tmp_path, TAGS[0], marker)]
    on_command_line = ['--cfg', TINY, 'TRAIN.LR', TAGS[0].format(marker=marker)]
    for args, named in ((in_file, 'python/object/apply:os.system'), (on_command_line, 'TRAIN.LR')):
        proc = subprocess.run([sys.executable, 'tools/test_ee.py', *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0 and named in proc.stderr, proc.stderr
        assert not marker.exists()
