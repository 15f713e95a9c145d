"""Reading model weights: released checkpoints (strict) and ImageNet initialisation.

Checkpoints of the original release hold the training wrapper's state dict: the model's
keys prefixed with ``model.`` plus ``loss.criterion.weight``. Bare model state dicts and
``checkpoint.pth.tar`` files (``{'state_dict': ..., ...}``) load too.
"""
import logging
import os
import pickle

import torch

logger = logging.getLogger(__name__)

WRAPPER_PREFIXES = ('module.', 'model.')  # DistributedDataParallel, then the training wrapper


class CheckpointMismatchError(RuntimeError):
    """A checkpoint does not fit the model built from the config."""


def read_checkpoint(path):
    """``torch.load`` on the CPU, tensors only where the file allows it."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError:
        logger.warning('%s holds more than tensors; loading it with weights_only=False '
                       '(only do this with files you trust)', path)
        return torch.load(path, map_location='cpu', weights_only=False)


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
    """Command-line overrides that turn the built model's config into the file's."""
    fix = []
    if found['width'] != built['width']:
        fix.append(f"a config of width {found['width']} (e.g. "
                   f"experiments/cityscapes/w{found['width']}.yaml)")
    if found['flex'] != built['flex'] or (found['flex'] and
                                          found['inter_channel'] != built['inter_channel']):
        fix.append(f"EXIT.TYPE flex EXIT.INTER_CHANNEL {found['inter_channel']}"
                   if found['flex'] else 'EXIT.TYPE original')
    if found['masked'] != built['masked']:
        fix.append('MASK.USE True MASK.CONF_THRE 0.998' if found['masked'] else 'MASK.USE False')
    if found['num_classes'] != built['num_classes']:
        fix.append(f"DATASET.NUM_CLASSES {found['num_classes']}")
    return fix


def load_model_weights(model, source):
    """Load a checkpoint into ``model`` strictly.

    Args:
        model (nn.Module): the network built from the config.
        source (str | dict): a checkpoint path or an already loaded checkpoint.
    Raises:
        CheckpointMismatchError: listing missing keys, unexpected keys and shape
            mismatches, and which variant the file looks like with the overrides to use.
    """
    name = source if isinstance(source, str) else 'checkpoint'
    state = model_state(read_checkpoint(source) if isinstance(source, str) else source)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [f'{k}: file {tuple(state[k].shape)}, model {tuple(expected[k].shape)}'
                  for k in sorted(set(state) & set(expected)) if state[k].shape != expected[k].shape]
    if missing or unexpected or mismatched:
        found, built = describe_variant(state), describe_variant(expected)
        lines = [f'{name} does not fit the model built from the config:']
        for title, items in (('missing keys', missing), ('unexpected keys', unexpected),
                             ('shape mismatches', mismatched)):
            if items:
                shown = ', '.join(items[:10]) + (f', ... ({len(items)} in all)' if len(items) > 10 else '')
                lines.append(f'  {title}: {shown}')
        lines.append(f'  this is a {variant_name(found)} checkpoint; the config builds a '
                     f'{variant_name(built)} model')
        fix = config_fix(found, built)
        if fix:
            lines.append('  add: ' + '; '.join(fix))
        raise CheckpointMismatchError('\n'.join(lines))
    model.load_state_dict(state, strict=True)
    logger.info('loaded %d tensors from %s (%s)', len(state), name,
                variant_name(describe_variant(state)))


def load_pretrained(model, path, load_stage=0):
    """Initialise ``model`` from HRNet weights (MODEL.PRETRAINED, MODEL.LOAD_STAGE).

    LOAD_STAGE 0 takes every tensor whose key the model has; 1 strips a ``model.``
    prefix and skips the exit heads; 2 strips the prefix and takes everything that
    matches. Keys the model lacks (e.g. the ImageNet classifier) are skipped and counted.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'MODEL.PRETRAINED file not found: {path} (set MODEL.PRETRAINED '
                                f"'' for a random initialisation)")
    if load_stage not in (0, 1, 2):
        raise ValueError(f'MODEL.LOAD_STAGE must be 0, 1 or 2, got {load_stage}')
    state = read_checkpoint(path)
    state = state.get('state_dict', state)
    if load_stage > 0:
        state = {k[len('model.'):] if k.startswith('model.') else k: v for k, v in state.items()}
    own = model.state_dict()
    taken = {k: v for k, v in state.items() if k in own}
    if load_stage == 1:
        taken = {k: v for k, v in taken.items() if not k.startswith('exit')}
    wrong = [f'{k}: file {tuple(v.shape)}, model {tuple(own[k].shape)}'
             for k, v in taken.items() if v.shape != own[k].shape]
    if wrong:
        raise CheckpointMismatchError(f'{path} does not fit the model (MODEL.EXTRA differs?): '
                                      + ', '.join(wrong[:10]))
    model.load_state_dict(taken, strict=False)
    logger.info('MODEL.PRETRAINED %s (LOAD_STAGE %d): took %d tensors, skipped %d of the file, '
                '%d of the model keep their random init', path, load_stage, len(taken),
                len(state) - len(taken), len(own) - len(taken))
