"""One-time conversion of a trusted checkpoint to a file that loads with
``torch.load(weights_only=True)`` (``tools/convert_checkpoint.py``).

Older files, such as the original's ``checkpoint.pth.tar`` with a numpy ``best_mIoU``,
may hold Python objects that only full unpickling reads, and full unpickling can run
any code a file holds. The conversion does it once, only when the user says the file is
trusted, and keeps what a checkpoint of this project holds: the model's tensors, and the
optimiser state and counters of a resume checkpoint.
"""
import logging
import os

import numpy as np
import torch

from .checkpoint import UnsafeCheckpointError, read_checkpoint
from .errors import CheckpointError
from .io import atomic_torch_save, check_writable

logger = logging.getLogger(__name__)

RESUME_KEYS = ('state_dict', 'optimizer', 'epoch', 'iteration', 'best_mIoU')


def plain(value, where):
    """``value`` as tensors, numbers, strings, lists, tuples and dicts only.

    Args:
        value: a loaded entry of a checkpoint.
        where (str): its place in the checkpoint, for messages.
    Raises:
        CheckpointError: ``value`` holds another kind of object.
    """
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()  # a Parameter becomes a plain tensor
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v, f'{where}[{i}]') for i, v in enumerate(value))
    if isinstance(value, dict):
        return {k: plain(v, f'{where}[{k!r}]') for k, v in value.items()}
    raise CheckpointError(f'{where} is a {type(value).__name__}, which a checkpoint of this '
                          'project never holds: this file cannot be converted')


def project_content(checkpoint, name):
    """What a checkpoint of this project holds, in plain types.

    A resume checkpoint (a dict with 'state_dict') keeps 'state_dict', 'optimizer',
    'epoch', 'iteration' and 'best_mIoU'; a state dict keeps its tensors.

    Args:
        checkpoint: the fully unpickled file.
        name (str): the file, for messages.
    """
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f'{name} holds a {type(checkpoint).__name__}, not a checkpoint')
    if 'state_dict' in checkpoint:
        kept = {k: plain(checkpoint[k], f'{name}[{k!r}]') for k in RESUME_KEYS if k in checkpoint}
    else:
        kept = {k: plain(v, f'{name}[{k!r}]') for k, v in checkpoint.items()
                if isinstance(v, torch.Tensor)}
    dropped = sorted(str(k) for k in checkpoint if k not in kept)
    if dropped:
        logger.info('left out entries of %s that a checkpoint of this project does not hold: %s',
                    name, ', '.join(dropped))
    return kept


def convert_checkpoint(src, dst, trust=False):
    """Write ``dst``, a file that loads with ``weights_only=True``, from checkpoint ``src``.

    A file that already loads that way is read so; any other is unpickled fully, which
    can run code, and only when ``trust`` is given.

    Args:
        src (str): the checkpoint to convert.
        dst (str): the new file; it must not exist yet.
        trust (bool): the user trusts ``src`` (the ``--trust`` flag).
    Raises:
        CheckpointError: ``src`` is unsafe and ``trust`` is False, ``dst`` exists, or
            ``src`` is missing, damaged or holds objects no checkpoint holds.
    """
    if os.path.exists(dst):
        raise CheckpointError(f'{dst} exists: give another output file (nothing is overwritten)')
    check_writable(dst, 'OUT', is_file=True)
    try:
        checkpoint = read_checkpoint(src)
    except UnsafeCheckpointError:
        if not trust:
            raise CheckpointError(
                f'{src} holds Python objects beyond tensors: converting it means unpickling '
                'it fully, which runs any code the file holds. Add --trust only if you trust '
                'where the file comes from (e.g. you wrote it, or it is a release of its '
                'authors).') from None
        logger.warning('unpickling %s fully (--trust)', src)
        checkpoint = torch.load(src, map_location='cpu', weights_only=False)
    content = project_content(checkpoint, src)
    atomic_torch_save(content, dst)
    read_checkpoint(dst)  # what was written must load safely
    resume = [k for k in RESUME_KEYS[1:] if k in content] if 'state_dict' in content else []
    kept = [f"{len(content.get('state_dict', content))} model tensors"] + resume
    logger.info('wrote %s: %s; it loads with weights_only=True', dst, ', '.join(kept))
    return content
