"""Reading model weights: released checkpoints (strict) and ImageNet initialisation.

Checkpoints are untrusted data: they are downloaded and shared, and unpickling a file
can run any code it holds. So every file is read with ``torch.load(weights_only=True)``
(tensors, numbers, strings, lists and dicts only) and refused otherwise;
``tools/convert_checkpoint.py --trust`` rewrites a trusted file of another format once.
ImageNet weights may also be a ``.safetensors`` file (a header and raw tensor bytes, with
nothing to execute), e.g. the HRNet weights timm distributes on the Hugging Face Hub.

Checkpoints of the original release hold the training wrapper's state dict: the model's
keys prefixed with ``model.`` plus ``loss.criterion.weight``. Bare model state dicts and
``checkpoint.pth.tar`` files (``{'state_dict': ..., ...}``) load too.
"""
import glob
import logging
import os
import pickle
import re

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file as load_safetensors_file

from .errors import CheckpointError, ConfigError
from .hub import hub_weights_file, is_hub_name

logger = logging.getLogger(__name__)

WRAPPER_PREFIXES = ('module.', 'model.')  # DistributedDataParallel, then the training wrapper
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXPERIMENTS = os.path.join(ROOT, 'experiments')
ZIP_MAGIC = b'PK'  # torch.save's format since PyTorch 1.6
PICKLE_MAGIC = b'\x80'  # a pickle (protocol 2 or later): torch.save's legacy format
# The HRNet-Image-Classification weights of the experiments' widths, by the width of
# their first branch, as timm distributes them (named in messages).
IMAGENET_WEIGHTS = {48: 'hf-hub:timm/hrnet_w48.ms_in1k',
                    18: 'hf-hub:timm/hrnet_w18_small_v2.ms_in1k'}
SAFETENSORS_HEADER = 8  # bytes of the header length; the JSON header follows: '{'
# The modules that predict classes: exits 1-3 and exit 4's segmentation head. Everything
# else is the backbone, which MODEL.PRETRAINED_KEEP 'backbone' takes from a checkpoint
# trained on other classes.
HEAD_PREFIXES = ('exit', 'last_layer')
PRETRAINED_KEEP = ('all', 'backbone')


class UnsafeCheckpointError(CheckpointError):
    """A file holds Python objects beyond tensors, which only full unpickling reads."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint does not fit the model built from the config."""


def _describe_file(path, key):
    return f'{key} {path}' if key else path


def read_checkpoint(path, key=None):
    """``torch.load(path, weights_only=True)`` on the CPU; never full unpickling.

    Args:
        path (str): a checkpoint or weights file.
        key (str or None): the config key that named the file (e.g. 'MODEL.PRETRAINED'),
            for messages.
    Raises:
        UnsafeCheckpointError: the file holds Python objects beyond tensors.
        CheckpointError: the file is missing, empty, damaged or no checkpoint at all.
    """
    name = _describe_file(path, key)
    if os.path.isdir(path):
        raise CheckpointError(f'{name} is a directory: give the checkpoint file in it')
    if not os.path.isfile(path):
        raise CheckpointError(f'{name} does not exist: check the path')
    with open(path, 'rb') as f:
        head = f.read(16)
    if not head.startswith((ZIP_MAGIC, PICKLE_MAGIC)):
        shown = f'it starts with {head!r}' if head else 'it is empty'
        raise CheckpointError(f'{name} is not a PyTorch checkpoint ({shown}): give a .pth file '
                              'written by torch.save, e.g. by training or a release')
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r'GLOBAL (\S+)', str(e))
        what = f' ({found.group(1)})' if found else ''
        converted = os.path.join(os.path.dirname(path), 'converted_' + os.path.basename(path))
        raise UnsafeCheckpointError(
            f'{name} holds Python objects beyond tensors{what}, and loading them could run '
            'code, so it is refused. If you trust the file, convert it once: python '
            f'tools/convert_checkpoint.py {path} {converted} --trust') from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError) as e:
        reason = str(e).split('. ')[0] or type(e).__name__
        raise CheckpointError(f'{name} is truncated or damaged ({reason}): copy or download '
                              'it again') from None


def is_safetensors(path):
    """Whether ``path`` is a safetensors file: named so, or starting like one (and not
    like a torch.save file)."""
    if path.endswith('.safetensors'):
        return True
    with open(path, 'rb') as f:
        head = f.read(SAFETENSORS_HEADER + 1)
    return not head.startswith((ZIP_MAGIC, PICKLE_MAGIC)) and head[SAFETENSORS_HEADER:] == b'{'


def read_safetensors(path, key=None):
    """The tensors of a safetensors file, by name, on the CPU.

    Raises:
        CheckpointError: the file is damaged or no safetensors file.
    """
    try:
        return load_safetensors_file(path, device='cpu')
    except SafetensorError as e:
        raise CheckpointError(f'{_describe_file(path, key)} is truncated or damaged ({e}): '
                              'copy or download it again') from None


def model_state(checkpoint):
    """The model's own state dict inside any supported checkpoint layout."""
    state = checkpoint.get('state_dict', checkpoint)
    for prefix in WRAPPER_PREFIXES:
        if state and all(k.startswith(prefix) or k.startswith('loss.') for k in state):
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return {k: v for k, v in state.items() if not k.startswith('loss.')}


def describe_variant(state):
    """Which configuration a model state dict belongs to, from its keys and shapes."""
    def shape(key, dim=0):
        return tuple(state[key].shape)[dim] if key in state else None

    flex = 'exit1.21.weight' in state
    masked = any(k.endswith('.Lambda') for k in state)
    return {
        'width': shape('stage2.0.branches.0.0.conv1.weight'),
        'flex': flex,
        'inter_channel': shape('exit1.1.weight') if flex else None,
        'masked': masked,
        'num_classes': shape('last_layer.3.weight'),
    }


def variant_name(desc):
    name = {(False, False): 'EE', (True, False): 'RH', (False, True): 'CA',
            (True, True): 'ADP-C'}[desc['flex'], desc['masked']]
    width = f"W{desc['width']}" if desc['width'] else 'HRNet'
    return f'{width} {name}'


def config_fix(found, built):
    """Command-line overrides that turn a config of variant ``built`` into one of
    ``found`` (both from :func:`describe_variant`), for models of the same width."""
    fix = []
    if found['flex'] != built['flex'] or (found['flex'] and
                                          found['inter_channel'] != built['inter_channel']):
        fix.append(f"EXIT.TYPE flex EXIT.INTER_CHANNEL {found['inter_channel']}"
                   if found['flex'] else 'EXIT.TYPE original')
    if found['masked'] != built['masked']:
        fix.append(f"MASK.USE {found['masked']}")
    if found['num_classes'] != built['num_classes']:
        fix.append(f"DATASET.NUM_CLASSES {found['num_classes']}")
    return fix


def _merge_dicts(base, over):
    merged = dict(base)
    for k, v in over.items():
        merged[k] = _merge_dicts(merged[k], v) if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
    return merged


def _read_experiment(path):
    with open(path) as f:
        node = yaml.safe_load(f) or {}
    base = node.pop('_BASE_', None)
    return _merge_dicts(_read_experiment(os.path.join(os.path.dirname(path), base)) if base else {},
                        node)


def experiment_variants(folder=EXPERIMENTS):
    """The variant (as :func:`describe_variant` gives it) of every experiment file under
    ``folder`` that declares its architecture, exit heads, masks and classes.

    Returns:
        list[tuple[str, dict]]: (path relative to the repository, variant), sorted by path.
    """
    variants = []
    for path in sorted(glob.glob(os.path.join(folder, '**', '*.yaml'), recursive=True)):
        try:
            node = _read_experiment(path)
            flex = node['EXIT']['TYPE'] == 'flex'
            variants.append((os.path.relpath(path, ROOT), {
                'width': node['MODEL']['EXTRA']['STAGE2']['NUM_CHANNELS'][0], 'flex': flex,
                'inter_channel': node['EXIT']['INTER_CHANNEL'] if flex else None,
                'masked': bool(node['MASK']['USE']), 'num_classes': node['DATASET']['NUM_CLASSES']}))
        except (OSError, yaml.YAMLError, KeyError, TypeError, IndexError):
            continue  # a partial or unreadable file: its variant is unknown
    return variants


def config_advice(found, built):
    """What to change so that the config builds the model of a checkpoint: overrides for
    the same width, else an existing experiment file of the checkpoint's width.

    Args:
        found (dict): the checkpoint's variant (:func:`describe_variant`).
        built (dict): the variant of the model built from the config.
    """
    if found['width'] == built['width']:
        fix = config_fix(found, built)
        if not fix:
            return 'its MODEL.EXTRA differs from the config: use the config it was trained with'
        advice = 'add to the command line: ' + ' '.join(fix)
    else:
        candidates = [(p, v) for p, v in experiment_variants() if v['width'] == found['width']]
        exact = [p for p, v in candidates if v == found]
        if exact:
            advice = f'use --cfg {exact[0]}'
        elif candidates:
            path, variant = min(candidates, key=lambda c: sum(found[k] != c[1][k] for k in found))
            advice = f'use --cfg {path} and add ' + ' '.join(config_fix(found, variant))
        else:
            return (f"no file in experiments/ builds width {found['width']}: use a config whose "
                    f"MODEL.EXTRA.STAGE2-4 NUM_CHANNELS start with {found['width']}")
    if found['masked']:
        # A checkpoint does not record the threshold: never guess one.
        advice += ', with the MASK.CONF_THRE the model was trained with'
    return advice


def _mismatch_lines(state, expected):
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [f'{k}: file {tuple(state[k].shape)}, model {tuple(expected[k].shape)}'
                  for k in sorted(set(state) & set(expected)) if state[k].shape != expected[k].shape]
    lines = []
    for title, items in (('missing keys', missing), ('unexpected keys', unexpected),
                         ('shape mismatches', mismatched)):
        if items:
            shown = ', '.join(items[:10]) + (f', ... ({len(items)} in all)' if len(items) > 10 else '')
            lines.append(f'  {title}: {shown}')
    return lines


def _tensors(state, name):
    """``state`` itself, once it is known to be a dict of tensors."""
    if not (isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())):
        raise CheckpointError(f'{name} holds no state dict (a dict of tensors): give the .pth '
                              'file of a model')
    return state


def load_model_weights(model, source):
    """Load a checkpoint into ``model`` strictly.

    Args:
        model (nn.Module): the network built from the config.
        source (str | dict): a checkpoint path or an already loaded checkpoint.
    Raises:
        CheckpointError: the file is missing, unsafe or damaged (see :func:`read_checkpoint`).
        CheckpointMismatchError: listing missing keys, unexpected keys and shape
            mismatches, and which variant the file looks like with the fix to use.
    """
    name = source if isinstance(source, str) else 'checkpoint'
    checkpoint = read_checkpoint(source) if isinstance(source, str) else source
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f'{name} holds a {type(checkpoint).__name__}, not a checkpoint')
    state = _tensors(model_state(checkpoint), name)
    expected = model.state_dict()
    lines = _mismatch_lines(state, expected)
    if lines:
        found, built = describe_variant(state), describe_variant(expected)
        raise CheckpointMismatchError('\n'.join(
            [f'{name} does not fit the model built from the config:'] + lines +
            [f'  this is a {variant_name(found)} checkpoint; the config builds a '
             f'{variant_name(built)} model', '  fix: ' + config_advice(found, built)]))
    model.load_state_dict(state, strict=True)
    logger.info('loaded %d tensors from %s (%s)', len(state), name,
                variant_name(describe_variant(state)))


def _top_names(keys):
    """The first component of each key, once each, in order: 'conv1', 'layer1', ..."""
    return list(dict.fromkeys(k.split('.')[0] for k in keys))


def _imagenet_advice(own):
    """What to set MODEL.PRETRAINED to, for a model of state dict ``own``."""
    return _imagenet_advice_for_width(describe_variant(own)['width'])


def _imagenet_advice_for_width(width):
    weights = (IMAGENET_WEIGHTS[width] if width in IMAGENET_WEIGHTS
               else f'a file of HRNet-W{width} ImageNet weights')
    return f"set MODEL.PRETRAINED to {weights}, or '' for a random initialisation"


def _nothing_taken(name, state, own, load_stage):
    """The error for a weights file none of whose tensors the model has."""
    keys = sorted(state)
    held = (f'its {len(keys)} tensors are named like {", ".join(keys[:3])}'
            f'{", ..." if len(keys) > 3 else ""}' if keys else 'it holds no tensors')
    hint = ''
    if load_stage == 0 and any(k.startswith('model.') for k in keys):
        hint = " (its keys start with 'model.': MODEL.LOAD_STAGE 2 strips that prefix)"
    return CheckpointMismatchError(
        f'{name} holds no tensor of this model: {held}; the model expects names under '
        f'{", ".join(_top_names(own))}{hint}: {_imagenet_advice(own)}')


def check_pretrained_file(path, width):
    """Refuse a MODEL.PRETRAINED that names no file, before a run builds or writes
    anything (a Hub name is checked when it is downloaded).

    Args:
        path (str): MODEL.PRETRAINED ('' for a random initialisation).
        width (int): the width of the network's first branch, for the advice.
    Raises:
        CheckpointError: naming the path and the weights to use.
    """
    if path and not is_hub_name(path) and not os.path.isfile(path):
        raise CheckpointError(f'MODEL.PRETRAINED file not found: {path} '
                              f'({_imagenet_advice_for_width(width)})')


def _keep_backbone(state, name):
    """The backbone tensors of ``state`` (any checkpoint layout), for
    MODEL.PRETRAINED_KEEP 'backbone', with the log line saying what starts from scratch."""
    state = model_state(state)
    heads = sorted({k.split('.')[0] for k in state if k.startswith(HEAD_PREFIXES)})
    kept = {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIXES)}
    logger.info('%s (MODEL.PRETRAINED_KEEP backbone): keeping its %d backbone tensors; '
                'the exit heads (exit1, exit2, exit3, last_layer) start from scratch%s',
                name, len(kept), f' (its own {", ".join(heads)} are left out)' if heads else '')
    return kept


def _classes_hint(state, own):
    """The advice for weights that differ from the model only in the number of classes."""
    found, built = describe_variant(state)['num_classes'], describe_variant(own)['num_classes']
    if found is None or found == built:
        return ''
    return (f'; it was trained with {found} classes and the config has {built} '
            '(DATASET.NUM_CLASSES): to start from its backbone and train the exits from '
            'scratch, add MODEL.PRETRAINED_KEEP backbone')


def load_pretrained(model, path, load_stage=0, keep='all'):
    """Initialise ``model`` from HRNet weights (MODEL.PRETRAINED, MODEL.LOAD_STAGE,
    MODEL.PRETRAINED_KEEP).

    ``path`` is a ``.pth`` file (read weights-only), a ``.safetensors`` file, or
    ``hf-hub:OWNER/REPO``: that repository's ``model.safetensors``, downloaded once (see
    :mod:`utils.hub`). LOAD_STAGE 0 takes every tensor whose key the model has; 1 strips
    a ``model.`` prefix and skips the exit heads; 2 strips the prefix and takes
    everything that matches. Keys the model lacks (e.g. the ImageNet classifier) are
    skipped and counted; a file of which the model takes nothing is refused. ``keep``
    'backbone' takes only the backbone of a checkpoint (e.g. a Cityscapes ADP-C for a
    2-class model): the exit heads start from scratch, whatever their shapes; the log
    says so.
    """
    if load_stage not in (0, 1, 2):
        raise ConfigError(f'MODEL.LOAD_STAGE must be 0, 1 or 2, got {load_stage}')
    if keep not in PRETRAINED_KEEP:
        raise ConfigError(f'MODEL.PRETRAINED_KEEP must be one of {", ".join(PRETRAINED_KEEP)}, '
                          f'got {keep!r}')
    own = model.state_dict()
    key, file = 'MODEL.PRETRAINED', path
    if is_hub_name(path):
        key, file = f'{key} {path}', hub_weights_file(path, key)
    else:
        check_pretrained_file(path, describe_variant(own)['width'])
    name = _describe_file(file, key)
    if is_safetensors(file):
        state = read_safetensors(file, key)
    else:
        checkpoint = read_checkpoint(file, key)
        if isinstance(checkpoint, dict):
            checkpoint = checkpoint.get('state_dict', checkpoint)
        state = _tensors(checkpoint, name)
    if keep == 'backbone':
        state = _keep_backbone(state, name)
    elif load_stage > 0:
        state = {k[len('model.'):] if k.startswith('model.') else k: v for k, v in state.items()}
    taken = {k: v for k, v in state.items() if k in own}
    if load_stage == 1:
        taken = {k: v for k, v in taken.items() if not k.startswith('exit')}
    if not taken:
        raise _nothing_taken(name, state, own, load_stage)
    wrong = [f'{k}: file {tuple(v.shape)}, model {tuple(own[k].shape)}'
             for k, v in taken.items() if v.shape != own[k].shape]
    if wrong:
        found, built = describe_variant(state)['width'], describe_variant(own)['width']
        what = f'holds HRNet-W{found} weights' if found and found != built else 'does not fit'
        hint = _classes_hint(state, own) if found == built else ''
        raise CheckpointMismatchError(
            f'{name} {what}; the config builds a W{built} model ({", ".join(wrong[:3])}'
            f'{", ..." if len(wrong) > 3 else ""}){hint or ": " + _imagenet_advice(own)}')
    model.load_state_dict(taken, strict=False)
    logger.info('%s (LOAD_STAGE %d): took %d tensors, skipped %d of the file, '
                '%d of the model keep their random init', name, load_stage, len(taken),
                len(state) - len(taken), len(own) - len(taken))
