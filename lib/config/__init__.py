"""Configuration: ``config`` holds the defaults, ``update_config`` merges an experiment.

Usage, with ``lib/`` on ``sys.path`` as in the tools::

    from config import config, update_config
    cfg = update_config(config.clone(), args)   # args.cfg: YAML path, args.opts: [KEY, VALUE, ...]

Every mistake a user can make in a file or on the command line (a missing file or
``_BASE_``, an unknown key, a value of the wrong type or outside the values
``defaults.ALLOWED`` declares for its key, an odd number of overrides) raises
:class:`config.errors.ConfigError` (also ``utils.errors.ConfigError``) naming the key,
value or file and what to do.

This package imports nothing of the rest of lib/: everything else may import it.
"""
import difflib
import os
import re

import yaml
from yacs.config import CfgNode

from .defaults import ALLOWED, config
from .errors import ConfigError

RUN_CONFIG = 'config.yaml'  # the merged config a run's folder holds (utils.run_dir)

__all__ = ['config', 'default_config', 'update_config', 'merge_yaml', 'load_config_file',
           'config_differences', 'ConfigKeyError', 'ConfigError', 'KEY_ALIASES', 'ALLOWED',
           'check_allowed', 'names_a_key', 'RUN_CONFIG']

BASE_KEY = '_BASE_'
COMMAND_LINE = 'the command line'

# Names users bring from detectron2 / mmsegmentation, matched on the whole key first and
# then on its last part, for the "did you mean" of an unknown key.
KEY_ALIASES = {
    'TRAIN.BASE_LR': 'TRAIN.LR',
    'SOLVER.BASE_LR': 'TRAIN.LR',
    'BASE_LR': 'TRAIN.LR',
    'MAX_EPOCH': 'TRAIN.END_EPOCH',
    'MAX_EPOCHS': 'TRAIN.END_EPOCH',
    'IMS_PER_BATCH': 'TRAIN.BATCH_SIZE_PER_GPU',
    'SAMPLES_PER_GPU': 'TRAIN.BATCH_SIZE_PER_GPU',
    'WEIGHT_DECAY': 'TRAIN.WD',
    'NUM_WORKERS': 'WORKERS',
    'WORKERS_PER_GPU': 'WORKERS',
    'MODEL.WEIGHTS': 'TEST.MODEL_FILE',
}

_DEFAULTS = config.clone()  # taken before anyone merges into ``config``

# Upper-case words joined by dots, as every key is written: 'MASK.CONF_THRE', 'WORKERS'.
_KEY_FORM = re.compile(r'[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)*')


class ConfigKeyError(ConfigError):
    """An experiment names a key that the defaults do not declare."""


def default_config():
    """A fresh copy of the defaults (unaffected by merges into ``config``)."""
    return _DEFAULTS.clone()


def flat_items(node, prefix=''):
    """``{'A.B': value}`` for every leaf of ``node``.

    Args:
        node (CfgNode): a config or a part of it.
        prefix (str): prepended to every key.
    """
    items = {}
    for name, value in node.items():
        if isinstance(value, CfgNode):
            items.update(flat_items(value, prefix + name + '.'))
        else:
            items[prefix + name] = value
    return items


def names_a_key(word):
    """Whether a command-line word is a config key: written as one (upper case, dotted)
    and starting with a declared name (``MASK.CONF_THRE``, ``WORKERS``, also a misspelt
    ``MASK.CONF_THR``) or named in ``KEY_ALIASES`` (``SOLVER.BASE_LR``), so that the
    tools take it and the next word as an override wherever they stand.

    A file named like a key (``TEST.PNG``) is given with its folder: ``./TEST.PNG``.
    """
    if not _KEY_FORM.fullmatch(word):
        return False
    return (word.split('.', 1)[0] in _DEFAULTS or word in KEY_ALIASES
            or word.rsplit('.', 1)[-1] in KEY_ALIASES)


def _suggestion(full_key):
    last = full_key.rsplit('.', 1)[-1]
    alias = KEY_ALIASES.get(full_key) or KEY_ALIASES.get(last)
    if alias:
        return alias
    close = difflib.get_close_matches(full_key, _declared_keys(_DEFAULTS), n=1, cutoff=0.6)
    return close[0] if close else None


def _declared_keys(node, prefix=''):
    keys = []
    for name, value in node.items():
        keys.append(prefix + name)
        if isinstance(value, CfgNode):
            keys.extend(_declared_keys(value, prefix + name + '.'))
    return keys


def _unknown_key_error(full_key, source):
    close = _suggestion(full_key)
    hint = f'; did you mean {close}?' if close else ''
    return ConfigKeyError(f'unknown config key {full_key} {_where(source)}{hint} '
                          '(every key is listed in lib/config/defaults.py)')


def _where(source):
    return 'on the command line' if source == COMMAND_LINE else f'in {source}'


def _type_name(value):
    """The type of ``value`` with its article: 'an int', 'a float', 'None'."""
    if value is None:
        return 'None'
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _coerce(value, original, full_key, source, raw=None):
    """``value`` (already decoded) as the type of ``original``, the way yacs allows
    (same type, list <-> tuple, None), plus int -> float and, for strings given on the
    command line, the text as typed.

    Raises:
        ConfigError: ``value`` cannot take the place of ``original``.
    """
    if type(value) is type(original) or value is None or original is None:
        return value
    if isinstance(value, (list, tuple)) and isinstance(original, (list, tuple)):
        return type(original)(value)
    if isinstance(original, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(original, str) and raw is not None:
        return raw
    shown = raw if raw is not None else value
    raise ConfigError(f'{full_key} {shown!r} {_where(source)}: expected {_type_name(original)} '
                       f'like the default {original!r}, got {_type_name(value)}')


def check_allowed(full_key, value, source=COMMAND_LINE):
    """Refuse a value (of the right type) outside those ``ALLOWED`` declares for its key.

    Args:
        full_key (str): e.g. 'MASK.EXECUTION'.
        value: the decoded value.
        source (str): the file the value comes from, or ``COMMAND_LINE``.
    Raises:
        ConfigError: naming the key, the value and the values allowed.
    """
    allowed = ALLOWED.get(full_key)
    if allowed is not None and value not in allowed:
        raise ConfigError(f'{full_key} {value!r} {_where(source)} is not allowed: use {allowed}')


def check_keys(cfg, overrides, source, prefix=''):
    """Check the nested dict ``overrides`` against ``cfg`` and decode its values in place
    (strings such as ``'(0,1)'`` become tuples, ints become floats where a float is
    declared). Nodes built with ``new_allowed`` (MODEL.EXTRA) accept any key.

    Raises:
        ConfigKeyError: a key that ``cfg`` does not declare.
        ConfigError: a value of the wrong type, or one its key does not allow.
    """
    for name, value in overrides.items():
        full = prefix + name
        if name not in cfg:
            if cfg.is_new_allowed():
                continue
            raise _unknown_key_error(full, source)
        if isinstance(cfg[name], CfgNode):
            if not isinstance(value, dict):
                raise ConfigError(f'{full} in {source} is a section of keys, not a value '
                                  f'({value!r})')
            check_keys(cfg[name], value, source, full + '.')
            continue
        overrides[name] = _coerce(CfgNode._decode_cfg_value(value), cfg[name], full, source)
        check_allowed(full, overrides[name], source)


def _read_yaml(path, what):
    if os.path.isdir(path):
        inside = os.path.join(path, RUN_CONFIG)
        if os.path.isfile(inside):
            raise ConfigError(f'{what} {path} is a run folder: give the config.yaml in it, '
                              f'{inside}')
        raise ConfigError(f'{what} {path} is a folder: give a YAML file, e.g. one of '
                          'experiments/ or the config.yaml of a run folder')
    if not os.path.isfile(path):
        raise ConfigError(f'{what} {path} does not exist'
                          + ('' if os.path.isabs(path) else f' (relative to {os.getcwd()})'))
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise ConfigError(f'{path} is not valid YAML: {e}') from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f'{path} must hold KEY: value pairs, not a {type(data).__name__}')
    return data


def merge_yaml(cfg, path, what='--cfg file'):
    """Merge the experiment YAML at ``path`` into ``cfg``. A ``_BASE_: other.yaml``
    entry (relative to ``path``) is merged first, so variant files stay small.

    Args:
        cfg (CfgNode): the config to merge into (mutable).
        path (str): the YAML file.
        what (str): how the error messages call ``path``.
    """
    overrides = _read_yaml(path, what)
    base = overrides.pop(BASE_KEY, None)
    if base:
        merge_yaml(cfg, os.path.join(os.path.dirname(path), base),
                   what=f'{BASE_KEY} of {path}:')
    check_keys(cfg, overrides, path)
    cfg.merge_from_other_cfg(CfgNode(overrides))


def merge_opts(cfg, opts):
    """Merge ``[KEY, VALUE, ...]`` from the command line into ``cfg`` (mutable).

    Raises:
        ConfigError: an odd number of items, an unknown key, a value of the wrong type or
            one its key does not allow.
    """
    if len(opts) % 2:
        raise ConfigError(f'command-line overrides must come as KEY VALUE pairs; '
                          f'{opts[-1]!r} has no value' + (f' (got {len(opts)} items)'
                                                          if len(opts) > 1 else ''))
    for full, raw in zip(opts[0::2], opts[1::2]):
        node, names = cfg, full.split('.')
        for name in names[:-1]:
            if not isinstance(node.get(name), CfgNode):
                if name not in node and node.is_new_allowed():
                    node[name] = CfgNode(new_allowed=True)
                else:
                    raise _unknown_key_error(full, COMMAND_LINE)
            node = node[name]
        leaf = names[-1]
        value = CfgNode._decode_cfg_value(raw)
        if leaf not in node:
            if not node.is_new_allowed():
                raise _unknown_key_error(full, COMMAND_LINE)
            node[leaf] = value
            continue
        if isinstance(node[leaf], CfgNode):
            raise ConfigError(f'{full} is a section of keys; override its keys one by one, '
                              f'e.g. {full}.{next(iter(node[leaf]), "KEY")} VALUE')
        node[leaf] = _coerce(value, node[leaf], full, COMMAND_LINE,
                             raw=raw if isinstance(raw, str) else None)
        check_allowed(full, node[leaf])


def update_config(cfg, args):
    """Merge the YAML at ``args.cfg``, then the ``KEY VALUE`` list ``args.opts``, and
    freeze ``cfg``.

    Args:
        cfg (CfgNode): usually ``config.clone()``.
        args: has ``cfg`` (str) and ``opts`` (list of str).

    Returns:
        CfgNode: ``cfg``.

    Raises:
        ConfigError: see the module's docstring.
    """
    cfg.defrost()
    merge_yaml(cfg, args.cfg)
    merge_opts(cfg, list(getattr(args, 'opts', None) or []))
    cfg.freeze()
    return cfg


def load_config_file(path):
    """The defaults with the YAML at ``path`` merged (e.g. a run's ``config.yaml``).

    Args:
        path (str): the YAML file.
    """
    cfg = default_config()
    merge_yaml(cfg, path, what='config file')
    cfg.freeze()
    return cfg


def config_differences(old, new, ignore=()):
    """Keys whose values differ between two configs.

    Args:
        old (CfgNode): e.g. the config of an existing run.
        new (CfgNode): e.g. the config of this launch.
        ignore (iterable of str): keys that do not matter here.

    Returns:
        list[tuple[str, object, object]]: (key, old value, new value) in ``new``'s key
        order; a value missing on one side is None.
    """
    a, b = flat_items(old), flat_items(new)
    ignore = set(ignore)
    keys = list(b) + [k for k in a if k not in b]
    return [(k, a.get(k), b.get(k)) for k in keys
            if k not in ignore and _normal(a.get(k)) != _normal(b.get(k))]


def _normal(value):
    return list(value) if isinstance(value, tuple) else value
