"""Checks of a run's data before training starts, so that a missing, unreadable or
mis-sized file stops the run at once and not after the last epoch.

Only file headers are read (a PNG's size is in the IHDR chunk, the first 24 bytes; other
formats' through Pillow, which reads no pixels either): checking Cityscapes' 3,475
labelled images takes seconds. `datasets.inspection` reads the labels' values too.
"""
import os
import struct

from utils.errors import DataError

from .build import data_dir, lists_hint
from .lists import read_list

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
MAX_PROBLEMS = 20


def png_size(path):
    """(height, width) of a PNG file, from its header.

    Args:
        path (str): the file.
    Returns:
        tuple[int, int] or str: the size, or what is wrong with the file.
    """
    try:
        with open(path, 'rb') as f:
            head = f.read(24)
    except FileNotFoundError:
        return 'does not exist'
    except OSError as e:
        return f'cannot be read ({e.strerror})'
    # Signature, then the IHDR chunk: length (4 bytes), type, width and height (big-endian).
    if len(head) < 24 or head[:8] != PNG_SIGNATURE or head[12:16] != b'IHDR':
        return 'is not a PNG file (or is truncated)'
    width, height = struct.unpack('>II', head[16:24])
    return height, width


def image_size(path):
    """(height, width) of an image file of any format Pillow knows (JPEG, PNG, ...),
    from its header; or what is wrong with the file, as :func:`png_size`."""
    try:
        with open(path, 'rb') as f:
            is_png = f.read(8) == PNG_SIGNATURE
    except OSError:
        is_png = True  # png_size says what is wrong with it
    if is_png:
        return png_size(path)
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError, ValueError):
        return 'is not a PNG or other image file (or is truncated)'
    return height, width


def list_problems(root, list_path, num_samples=0, base=None):
    """Problems of the samples of one list file: missing or unreadable images and
    labels, and labels whose size differs from their image's.

    Args:
        root (str): DATASET.ROOT.
        list_path (str): list file relative to ``root``.
        num_samples (int): only the first N samples are used; 0 for all.
        base (str or None): the folder the listed paths are relative to; None:
            ``root/cityscapes``.
    Returns:
        list[str]: one line per problem, naming the file (the advice on making lists is
        left to the caller, to give once).
    """
    if not os.path.isdir(root):
        return [f'data root {root} (DATASET.ROOT) does not exist']
    if not os.path.isfile(os.path.join(root, list_path)):
        return [f'list file {os.path.join(root, list_path)} does not exist']
    try:
        entries = read_list(root, list_path)
    except (OSError, ValueError) as e:
        return [str(e)]
    if not entries:  # nothing to train on or evaluate: say so before any work
        return [f'list file {os.path.join(root, list_path)} lists no samples']
    if num_samples > 0:
        entries = entries[:num_samples]
    base = os.path.join(root, 'cityscapes') if base is None else base
    if entries and not os.path.isdir(base):  # one line, not one per listed file
        return [f'{base} does not exist: unpack Cityscapes there or link a copy '
                f'(ln -s /path/to/cityscapes {base})']
    problems = []
    for image, label in entries:
        image_path = os.path.join(base, image)
        size = image_size(image_path)
        if isinstance(size, str):
            problems.append(f'{image_path} {size}')
        if label is None:
            continue
        label_path = os.path.join(base, label)
        label_size = image_size(label_path)
        if isinstance(label_size, str):
            problems.append(f'{label_path} {label_size}')
        elif not isinstance(size, str) and label_size != size:
            problems.append(f'{label_path} is {label_size[1]}x{label_size[0]} but its image '
                            f'{image_path} is {size[1]}x{size[0]}')
    return problems


def check_training_inputs(cfg, stride=32):
    """Check every list file that a training run reads (DATASET.TRAIN_SET, the
    EXTRA_TRAIN_SET when EXTRA_EPOCH > 0, and DATASET.TEST_SET for validation and the
    final evaluation), each listed image and label, and TRAIN.IMAGE_SIZE against the
    network's stride.

    Args:
        cfg (CfgNode): the merged config.
        stride (int): the network's stride; crops must be multiples of it.
    Raises:
        DataError: listing up to 20 problems, with file names.
    """
    problems = []
    width, height = cfg.TRAIN.IMAGE_SIZE
    if width % stride or height % stride:
        problems.append(f'TRAIN.IMAGE_SIZE [{width}, {height}] (width, height) must be '
                        f"multiples of the network's stride {stride}")
    lists = [(cfg.DATASET.TRAIN_SET, cfg.TRAIN.NUM_SAMPLES)]
    if cfg.TRAIN.EXTRA_EPOCH > 0 and cfg.DATASET.EXTRA_TRAIN_SET:
        lists.append((cfg.DATASET.EXTRA_TRAIN_SET, cfg.TRAIN.NUM_SAMPLES))
    lists.append((cfg.DATASET.TEST_SET, cfg.TEST.NUM_SAMPLES))
    for list_path, num_samples in dict.fromkeys(lists):
        problems += list_problems(cfg.DATASET.ROOT, list_path, num_samples, data_dir(cfg))
    _refuse(problems, cfg, 'nothing was trained')


def check_evaluation_inputs(cfg):
    """Check DATASET.TEST_SET and each image and label it lists (the first
    TEST.NUM_SAMPLES), before an evaluation writes anything.

    Args:
        cfg (CfgNode): the merged config.
    Raises:
        DataError: listing up to 20 problems, with file names.
    """
    problems = list_problems(cfg.DATASET.ROOT, cfg.DATASET.TEST_SET, cfg.TEST.NUM_SAMPLES,
                             data_dir(cfg))
    _refuse(problems, cfg, 'nothing was evaluated')


def _refuse(problems, cfg, outcome):
    """Raise one DataError listing ``problems`` (if any), with the advice on making the
    data given once."""
    problems = list(dict.fromkeys(problems))  # a missing root is a problem of every list
    if not problems:
        return
    shown = problems[:MAX_PROBLEMS]
    more = len(problems) - len(shown)
    raise DataError(f'{len(problems)} problem(s) in the data of this run (DATASET.ROOT '
                    f'{cfg.DATASET.ROOT}); {outcome}:\n  ' + '\n  '.join(shown)
                    + (f'\n  ... and {more} more' if more else '') + f'\n{lists_hint(cfg)}')
