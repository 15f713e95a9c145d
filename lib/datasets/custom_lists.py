"""List files of one's own data: an images folder and a labels folder, paired by file
name, split into ``train.lst`` and ``val.lst`` (the format `datasets.list_dataset.ListDataset` reads).

    images/a.jpg  labels/a.png   ->   list/train.lst: "images/a.jpg labels/a.png"

Files pair by their path below the two folders without the extension
(``images/city/a.jpg`` with ``labels/city/a.png``); a file without its partner is refused
by name rather than silently left out.
"""
import os
import random

from utils.errors import DataError
from utils.io import atomic_write_text

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
LABEL_EXTENSIONS = ('.png', '.bmp', '.tif', '.tiff')
SHOWN = 5  # file names quoted per problem


def _files_by_stem(folder, extensions, what):
    """{path below ``folder`` without extension: path below ``folder``} of its files."""
    if not os.path.isdir(folder):
        raise DataError(f'{what} folder {folder} does not exist')
    found = {}
    for directory, _, names in os.walk(folder):
        for name in names:
            if os.path.splitext(name)[1].lower() not in extensions:
                continue
            relative = os.path.relpath(os.path.join(directory, name), folder).replace(os.sep, '/')
            stem = os.path.splitext(relative)[0]
            if stem in found:
                raise DataError(f'{what} folder {folder} holds two files named {stem}.*: '
                                f'{found[stem]} and {relative}; keep one')
            found[stem] = relative
    if not found:
        raise DataError(f'{what} folder {folder} holds no {"/".join(extensions)} files')
    return found


def _listed(names):
    names = sorted(names)
    return ', '.join(names[:SHOWN]) + (f', ... ({len(names)} in all)' if len(names) > SHOWN else '')


def pair_files(images, labels):
    """Pair the files of an images folder with those of a labels folder by stem.

    Args:
        images (str): folder of images (any of IMAGE_EXTENSIONS, searched recursively).
        labels (str): folder of label files (LABEL_EXTENSIONS).
    Returns:
        list[tuple[str, str]]: sorted (image, label) paths, as given plus the part below.
    Raises:
        DataError: a folder is missing or empty, two files share a stem, or a file has
            no partner (each kind names the files).
    """
    image_files = _files_by_stem(images, IMAGE_EXTENSIONS, 'images')
    label_files = _files_by_stem(labels, LABEL_EXTENSIONS, 'labels')
    lonely_images = set(image_files) - set(label_files)
    lonely_labels = set(label_files) - set(image_files)
    problems = []
    if lonely_images:
        problems.append(f'{len(lonely_images)} image(s) in {images} have no label of the same '
                        f'name in {labels}: {_listed(image_files[s] for s in lonely_images)}')
    if lonely_labels:
        problems.append(f'{len(lonely_labels)} label(s) in {labels} have no image of the same '
                        f'name in {images}: {_listed(label_files[s] for s in lonely_labels)}')
    if problems:
        raise DataError('; '.join(problems) + ': give every image its label file, named '
                        'alike (a.jpg with a.png), or move the others out of the folders')
    return [(os.path.join(images, image_files[s]), os.path.join(labels, label_files[s]))
            for s in sorted(image_files)]


def split_pairs(pairs, val, seed=0):
    """Split ``pairs`` into training and validation samples, each sorted.

    Args:
        pairs (list): samples.
        val (float): a fraction (0 <= val < 1) or a number (>= 1) of validation samples.
        seed (int): seed of the random choice of the validation samples.
    Returns:
        tuple[list, list]: (train, val).
    """
    count = int(val) if val >= 1 else round(len(pairs) * val)
    if val > 0 and count == 0:
        count = 1
    if count >= len(pairs):
        raise DataError(f'--val {val:g} leaves no training sample of {len(pairs)}: ask for '
                        'fewer validation samples')
    chosen = set(random.Random(seed).sample(range(len(pairs)), count))
    return ([p for i, p in enumerate(pairs) if i not in chosen],
            [p for i, p in enumerate(pairs) if i in chosen])


def make_custom_lists(root, images, labels, out, val=0.1, seed=0):
    """Write ``out/train.lst`` and ``out/val.lst`` (when there are validation samples)
    of the pairs of ``images`` and ``labels``, paths relative to ``root``.

    Args:
        root (str): DATASET.ROOT; both folders must lie below it.
        images (str): images folder.
        labels (str): labels folder.
        out (str): folder of the list files.
        val (float): see :func:`split_pairs`.
        seed (int): see :func:`split_pairs`.
    Returns:
        dict[str, int]: list file path -> samples written.
    Raises:
        DataError: see :func:`pair_files`; a folder outside ``root``, a path with
            spaces, or a list file that exists with other content (never overwritten).
    """
    root = os.path.abspath(root)
    for folder in (images, labels):
        if os.path.commonpath([root, os.path.abspath(folder)]) != root:
            raise DataError(f'{folder} is not inside the data root {root}: the lists name '
                            'files relative to it (DATASET.ROOT); give --root a folder '
                            'holding both')
    pairs = [tuple(os.path.relpath(os.path.abspath(p), root).replace(os.sep, '/')
                   for p in pair) for pair in pair_files(images, labels)]
    spaced = [p for pair in pairs for p in pair if any(c.isspace() for c in p)]
    if spaced:
        raise DataError(f'list files separate fields by spaces, so file names must have '
                        f'none: rename {_listed(spaced)}')
    train, validation = split_pairs(pairs, val, seed)
    contents = {os.path.join(out, 'train.lst'): train}
    if validation:
        contents[os.path.join(out, 'val.lst')] = validation
    texts = {path: ''.join(f'{image} {label}\n' for image, label in entries)
             for path, entries in contents.items()}
    for path, text in texts.items():
        if os.path.exists(path) and open(path).read() != text:
            raise DataError(f'{path} exists with other samples and is not overwritten: '
                            'give --out another folder or move it away')
    try:
        os.makedirs(out, exist_ok=True)
        for path, text in texts.items():
            atomic_write_text(path, text)
    except OSError as e:
        raise DataError(f'cannot write the lists into {out} ({e.strerror}): give --out a '
                        'folder you can write') from None
    return {path: len(entries) for path, entries in contents.items()}
