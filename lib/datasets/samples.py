"""Reading one listed sample's files as a data set's rules say, with every problem a
`DataError` that names the file: a truncated PNG or a label value that is neither a class
nor ignored stops training with one line, not a traceback in the middle of an epoch.

Shared by the data set classes (each sample, as it is read) and `datasets.inspection`
(every sample, before training).
"""
import cv2
import numpy as np

from utils.errors import DataError

from .images import read_image_file, read_label_file


def read_image(path, hint='make the lists again'):
    """H x W x 3 BGR ``uint8`` image of a listed file.

    Raises:
        DataError: the file is missing, unreadable or not an image OpenCV decodes.
    """
    return _decoded(path, 'image', hint, read_image_file, cv2.IMREAD_COLOR)


def read_raw_label(path, hint='make the lists again'):
    """H x W integer array of a label file's raw values (8 or 16 bits; a palette PNG's
    palette indices, see `datasets.images.read_label_file`).

    Raises:
        DataError: the file is missing or undecodable, or it is a colour picture (labels
            are single-channel class values: a colour mask must first be turned into
            one, e.g. with the palette's colour -> index table).
    """
    return _decoded(path, 'label', hint, read_label_file)


def stray_values(train_ids, num_classes, ignore_label):
    """Sorted values of a train-id map that are neither a class (0..num_classes-1) nor
    the ignore label."""
    values = np.unique(train_ids)
    return [int(v) for v in values if not (0 <= v < num_classes or v == ignore_label)]


def stray_values_advice(num_classes, ignore_label):
    """How to fix label values that are neither a class nor ignored."""
    return (f'values must be a class 0..{num_classes - 1} or TRAIN.IGNORE_LABEL '
            f'{ignore_label}: fix the file, map the values with DATASET.LABEL_MAP, or set '
            'DATASET.NUM_CLASSES / DATASET.CLASSES')


def read_train_ids(path, spec, hint='make the lists again'):
    """``int64`` H x W train ids of a label file under ``spec``'s rules
    (`datasets.spec.DatasetSpec.to_train_ids`).

    Raises:
        DataError: as :func:`read_raw_label`, or a value is neither a class nor the
            ignore label.
    """
    train_ids = spec.to_train_ids(read_raw_label(path, hint))
    stray = stray_values(train_ids, spec.num_classes, spec.ignore_label)
    if stray:
        raise DataError(f'{path} holds label values {_shown(stray)} after the label rules; '
                        + stray_values_advice(spec.num_classes, spec.ignore_label))
    return train_ids


def _shown(values, limit=5):
    text = ', '.join(str(v) for v in values[:limit])
    return text + (f', ... ({len(values)} in all)' if len(values) > limit else '')


def _decoded(path, what, hint, reader, *args):
    try:
        array = reader(path, *args)
    except FileNotFoundError:
        raise DataError(f'{what} {path} does not exist (listed in the data set\'s list '
                        f'file): {hint}') from None
    except OSError as e:
        raise DataError(f'{what} {path} cannot be read ({e.strerror})') from None
    except ValueError as e:  # a colour picture where class values belong
        raise DataError(f'{e}: convert the colour mask to class values first') from None
    if array is None:
        raise DataError(f'{what} {path} cannot be decoded (empty, truncated or not an image '
                        'file): copy it again or remove it from the list')
    return array
