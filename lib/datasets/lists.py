"""Cityscapes list files: finding the images of each split, writing and reading ``.lst`` files.

Layout under a data root ``ROOT`` (ADP-C spec, section 4)::

    ROOT/cityscapes/leftImg8bit/{train,val,test}/CITY/CITY_SEQ_FRAME_leftImg8bit.png
    ROOT/cityscapes/gtFine/{train,val,test}/CITY/CITY_SEQ_FRAME_gtFine_labelIds.png
    ROOT/list/cityscapes/{train,val,trainval,test}.lst

A list file has one sample per line, ``image<TAB>label``, both relative to
``ROOT/cityscapes``; the test list holds the image only, since its labels are withheld.
Lines are sorted by path within each split and end with ``\n``: for the complete
Cityscapes, the lists of the original release, which data/list/cityscapes/ ships.
"""
import glob
import os

from utils.io import atomic_write_text

IMAGE_DIR = 'leftImg8bit'
LABEL_DIR = 'gtFine'
IMAGE_SUFFIX = '_leftImg8bit.png'
LABEL_SUFFIX = '_gtFine_labelIds.png'
LIST_DIR = os.path.join('list', 'cityscapes')
SPLITS = ('train', 'val', 'test')
LABELLED_SPLITS = ('train', 'val')
LIST_NAMES = ('train', 'val', 'trainval', 'test')

# Appended to "file not found" errors: the lists are shipped or generated, never written
# by hand.
LIST_TOOLS_HINT = ('The Cityscapes lists ship in data/list/cityscapes/ for the data set in '
                   'data/cityscapes/ (see data/README.md); make lists of other data with '
                   'tools/make_cityscapes_lists.py --root DIR, or generate a small synthetic '
                   'data set with its lists with tools/make_synthetic_cityscapes.py --root DIR.')


def label_path_for(image_path):
    """Return the ``gtFine`` labelIds path that belongs to a ``leftImg8bit`` image path.

    Args:
        image_path (str): path relative to ``ROOT/cityscapes``, e.g.
            ``leftImg8bit/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png``.

    Returns:
        str: e.g. ``gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelIds.png``.
    """
    parts = image_path.split('/')
    if parts[0] != IMAGE_DIR or not parts[-1].endswith(IMAGE_SUFFIX):
        raise ValueError(f'{image_path!r} is not a Cityscapes image path '
                         f'({IMAGE_DIR}/SPLIT/CITY/*{IMAGE_SUFFIX})')
    parts[0] = LABEL_DIR
    parts[-1] = parts[-1][:-len(IMAGE_SUFFIX)] + LABEL_SUFFIX
    return '/'.join(parts)


def sample_name(image_path):
    """Name of a sample: the image file's stem without the ``_leftImg8bit`` suffix.

    Args:
        image_path (str): image path, e.g. ``.../frankfurt_000000_000294_leftImg8bit.png``.

    Returns:
        str: e.g. ``frankfurt_000000_000294``.
    """
    stem = os.path.splitext(os.path.basename(image_path))[0]
    suffix = os.path.splitext(IMAGE_SUFFIX)[0]
    return stem[:-len(suffix)] if stem.endswith(suffix) else stem


def find_cityscapes_samples(root):
    """Find the samples of every split in a Cityscapes folder.

    Args:
        root (str): data root that contains ``cityscapes/``.

    Returns:
        dict[str, list[tuple]]: for 'train' and 'val', sorted ``(image, label)`` pairs;
        for 'test', sorted ``(image,)`` tuples; paths relative to ``root/cityscapes``
        with '/' separators. A split whose folder is absent has no samples.

    Raises:
        FileNotFoundError: ``root/cityscapes/leftImg8bit`` is missing or holds no images,
            or a train/val image has no labelIds file.
    """
    base = os.path.join(root, 'cityscapes')
    image_root = os.path.join(base, IMAGE_DIR)
    if not os.path.isdir(image_root):
        raise FileNotFoundError(f'No Cityscapes images folder at {image_root}: the data '
                                f'root must contain cityscapes/{IMAGE_DIR}/ and '
                                f'cityscapes/{LABEL_DIR}/.')
    samples = {}
    for split in SPLITS:
        pattern = os.path.join(image_root, split, '*', '*' + IMAGE_SUFFIX)
        images = sorted(os.path.relpath(path, base).replace(os.sep, '/')
                        for path in glob.glob(pattern))
        if split not in LABELLED_SPLITS:
            samples[split] = [(image,) for image in images]
            continue
        pairs = []
        for image in images:
            label = label_path_for(image)
            if not os.path.isfile(os.path.join(base, label)):
                raise FileNotFoundError(f'Label file {os.path.join(base, label)} of '
                                        f'image {os.path.join(base, image)} is missing.')
            pairs.append((image, label))
        samples[split] = pairs
    if not any(samples.values()):
        raise FileNotFoundError(f'No *{IMAGE_SUFFIX} images under '
                                f'{os.path.join(image_root, "{train,val,test}", "CITY")}.')
    return samples


def write_cityscapes_lists(root, samples):
    """Write ``train``, ``val``, ``trainval`` and ``test`` list files under ``root/list/cityscapes``.

    ``trainval`` is the train list followed by the val list.

    Args:
        root (str): data root.
        samples (dict[str, list[tuple]]): 'train', 'val' and 'test' entries as returned
            by `find_cityscapes_samples`; each entry is written in the given order.

    Returns:
        dict[str, int]: number of lines written per list name.
    """
    lists = {
        'train': samples['train'],
        'val': samples['val'],
        'trainval': list(samples['train']) + list(samples['val']),
        'test': samples['test'],
    }
    list_dir = os.path.join(root, LIST_DIR)
    for name, entries in lists.items():
        atomic_write_text(os.path.join(list_dir, name + '.lst'),
                          ''.join('\t'.join(entry) + '\n' for entry in entries))
    return {name: len(entries) for name, entries in lists.items()}


def make_cityscapes_lists(root):
    """Scan a Cityscapes folder and write its four list files (sorted within each split).

    Args:
        root (str): data root that contains ``cityscapes/``; lists go to
            ``root/list/cityscapes``.

    Returns:
        dict[str, int]: number of samples per list name.
    """
    return write_cityscapes_lists(root, find_cityscapes_samples(root))


def read_list(root, list_path, hint=LIST_TOOLS_HINT):
    """Read a list file.

    Args:
        root (str): data root.
        list_path (str): list file relative to ``root``, e.g. ``list/cityscapes/val.lst``.
        hint (str): how to make the lists, appended to the message of a missing file.

    Returns:
        list[tuple[str, str or None]]: ``(image, label)`` per line, as written (relative
        to the data set's folder, e.g. ``root/cityscapes``); label is None for image-only
        (test) lists.

    Raises:
        FileNotFoundError: ``root`` or the list file does not exist.
        ValueError: a line has neither one nor two fields, or the list mixes labelled
            and unlabelled lines.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f'Data root {root} (DATASET.ROOT) does not exist. ' + hint)
    path = os.path.join(root, list_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'List file {path} does not exist. ' + hint)
    entries = []
    with open(path) as handle:
        for number, line in enumerate(handle, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) > 2:
                raise ValueError(f'{path}:{number}: expected "image<TAB>label" or "image", '
                                 f'found {len(fields)} fields.')
            entries.append((fields[0], fields[1] if len(fields) == 2 else None))
    if len({label is None for _, label in entries}) > 1:
        raise ValueError(f'{path} mixes lines with and without a label.')
    return entries
