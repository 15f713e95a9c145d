"""Configuration: ``config`` holds the defaults, ``update_config`` merges an experiment.

Usage, with ``lib/`` on ``sys.path`` as in the tools::

    from config import config, update_config
    update_config(config, args)   # args.cfg: YAML path, args.opts: [KEY, VALUE, ...]
"""
import difflib
import os

import yaml
from yacs.config import CfgNode

from .defaults import config

__all__ = ['config', 'update_config', 'merge_yaml', 'ConfigKeyError']

BASE_KEY = '_BASE_'


class ConfigKeyError(KeyError):
    """An experiment names a key that the defaults do not declare."""

    def __str__(self):  # KeyError would print the message quoted
        return self.args[0]


def _declared_keys(node, prefix=''):
    keys = []
    for name, value in node.items():
        full = prefix + name
        keys.append(full)
        if isinstance(value, CfgNode):
            keys.extend(_declared_keys(value, full + '.'))
    return keys


def _unknown_key_error(full_key, source):
    declared = _declared_keys(config)
    close = difflib.get_close_matches(full_key, declared, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else ''
    return ConfigKeyError(f"unknown config key {full_key} in {source}{hint}")


def check_keys(cfg, overrides, source, prefix=''):
    """Raise ConfigKeyError for the first key of ``overrides`` (a nested dict) that
    ``cfg`` does not declare. Nodes built with ``new_allowed`` (MODEL.EXTRA) accept
    anything."""
    for name, value in overrides.items():
        full = prefix + name
        if name not in cfg:
            if cfg.is_new_allowed():
                continue
            raise _unknown_key_error(full, source)
        if isinstance(cfg[name], CfgNode) and isinstance(value, dict):
            check_keys(cfg[name], value, source, full + '.')


def _check_opts(cfg, opts):
    if len(opts) % 2:
        raise ValueError(f"command-line overrides must come as KEY VALUE pairs, got {opts}")
    for full in opts[0::2]:
        node = cfg
        for name in full.split('.'):
            if not isinstance(node, CfgNode) or name not in node:
                if isinstance(node, CfgNode) and node.is_new_allowed():
                    break
                raise _unknown_key_error(full, 'the command line')
            node = node[name]


def merge_yaml(cfg, path):
    """Merge the experiment YAML at ``path`` into ``cfg``. A ``_BASE_: other.yaml``
    entry (relative to ``path``) is merged first, so variant files stay small."""
    with open(path) as f:
        overrides = yaml.safe_load(f) or {}
    base = overrides.pop(BASE_KEY, None)
    if base:
        merge_yaml(cfg, os.path.join(os.path.dirname(path), base))
    check_keys(cfg, overrides, path)
    cfg.merge_from_other_cfg(CfgNode(overrides))


def update_config(cfg, args):
    """Merge the YAML at ``args.cfg``, then the ``KEY VALUE`` list ``args.opts``, and
    freeze ``cfg``. Unknown keys raise ConfigKeyError naming the key and the closest
    declared one."""
    cfg.defrost()
    merge_yaml(cfg, args.cfg)
    opts = list(getattr(args, 'opts', None) or [])
    _check_opts(cfg, opts)
    cfg.merge_from_list(opts)
    cfg.freeze()
    return cfg
