"""A data set as training reads it, summed up before training: samples and image sizes of
each list, class frequencies, classes never seen, and every problem by kind (missing,
undecodable or colour label files, label values that are neither a class nor ignored,
labels of another size than their image). ``tools/check_dataset.py`` prints it.

Unlike `datasets.checks`, which reads only file headers before every run, this decodes
every listed image and label, as an epoch would.
"""
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from utils.errors import DataError
from utils.logger import progress

from .build import data_dir, lists_hint
from .lists import read_list
from .samples import read_image, read_raw_label, stray_values, stray_values_advice
from .spec import dataset_spec

SHOWN = 3  # file names quoted per problem
MISSING = 'missing file(s)'
FREQUENT = 10  # class frequencies shown in full up to this many classes


@dataclass
class ListReport:
    """What one list file holds."""
    list_path: str
    samples: int = 0
    sizes: Counter = field(default_factory=Counter)  # (width, height) -> images
    pixels: np.ndarray = None  # per class
    ignored: int = 0


@dataclass
class Inspection:
    """The summary lines and the problems (kind -> messages) of a data set."""
    lines: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    problems: dict = field(default_factory=lambda: defaultdict(list))
    stray: dict = field(default_factory=lambda: defaultdict(list))  # value -> label files
    hint: str = ''  # how the lists are made, added to missing files

    def errors(self, spec):
        """One line per kind of problem, each naming up to SHOWN files."""
        lines = []
        for kind, messages in self.problems.items():
            shown = '; '.join(messages[:SHOWN])
            more = f' (and {len(messages) - SHOWN} more)' if len(messages) > SHOWN else ''
            hint = f'. {self.hint}' if kind == MISSING and self.hint else ''
            lines.append(f'{len(messages)} {kind}: {shown}{more}{hint}')
        if self.stray:
            values = ', '.join(
                f'{value} in {len(files)} file(s) ({", ".join(files[:SHOWN])}'
                f'{", ..." if len(files) > SHOWN else ""})'
                for value, files in sorted(self.stray.items()))
            lines.append(f'label values neither a class nor ignored: {values}; '
                         + stray_values_advice(spec.num_classes, spec.ignore_label))
        return lines


def _sizes_text(sizes):
    if len(sizes) <= 3:
        return ', '.join(f'{w}x{h} ({n})' for (w, h), n in sizes.most_common())
    areas = sorted(sizes, key=lambda s: s[0] * s[1])
    return (f'{len(sizes)} sizes from {areas[0][0]}x{areas[0][1]} to '
            f'{areas[-1][0]}x{areas[-1][1]}')


def _frequencies_text(pixels, ignored, classes):
    total = pixels.sum() + ignored
    if total == 0:
        return 'no labelled pixel'
    order = list(range(len(classes)))
    if len(classes) > FREQUENT:  # the most and the least frequent
        order = list(np.argsort(-pixels, kind='stable'))
        order = order[:FREQUENT // 2] + order[-FREQUENT // 2:]
    parts = [f'{classes[c]} {pixels[c] / total * 100:.1f}%' for c in order]
    if len(classes) > FREQUENT:
        parts.insert(FREQUENT // 2, '...')
    return ', '.join(parts) + f' (ignored {ignored / total * 100:.1f}%)'


def _read(path, reader, found, what):
    """``reader(path)``, or None with the problem noted under its kind."""
    if not os.path.isfile(path):
        found.problems[MISSING].append(f'{what} {path}')
        return None
    try:
        return reader(path)
    except DataError as e:
        if 'colour image' in str(e):
            found.problems['colour label image(s) (a label holds one class value per pixel: '
                           'convert colour masks to class values)'].append(path)
        else:
            found.problems[f'undecodable {what}(s) (empty or truncated)'].append(path)
        return None


def _inspect_sample(base, image, label, spec, report, found):
    picture = _read(os.path.join(base, image), read_image, found, 'image')
    if picture is not None:
        report.sizes[picture.shape[1], picture.shape[0]] += 1
    label_path = None if label is None else os.path.join(base, label)
    raw = None if label is None else _read(label_path, read_raw_label, found, 'label')
    if raw is None:
        return
    if picture is not None and raw.shape != picture.shape[:2]:
        found.problems['label(s) of another size than their image'].append(
            f'{label_path} is {raw.shape[1]}x{raw.shape[0]}, its image '
            f'{picture.shape[1]}x{picture.shape[0]}')
    train_ids = spec.to_train_ids(raw)
    for value in stray_values(train_ids, spec.num_classes, spec.ignore_label):
        found.stray[value].append(label_path)
    known = (train_ids >= 0) & (train_ids < spec.num_classes)
    report.pixels += np.bincount(train_ids[known], minlength=spec.num_classes)[:spec.num_classes]
    report.ignored += int((train_ids == spec.ignore_label).sum())


def inspect_list(cfg, list_path, num_samples, spec, found):
    """Read every sample of one list file into a `ListReport`, problems into ``found``."""
    report = ListReport(list_path, pixels=np.zeros(spec.num_classes, dtype=np.int64))
    try:
        entries = read_list(cfg.DATASET.ROOT, list_path)
    except (OSError, ValueError) as e:
        found.problems['list file(s) missing or malformed'].append(str(e).split('. ')[0])
        return None
    if num_samples > 0:
        entries = entries[:num_samples]
    report.samples = len(entries)
    if not entries:
        found.problems['empty list file(s)'].append(os.path.join(cfg.DATASET.ROOT, list_path))
    base = data_dir(cfg)
    for image, label in progress(entries, os.path.basename(list_path)):
        _inspect_sample(base, image, label, spec, report, found)
    return report


def inspect_dataset(cfg):
    """Read the configuration's training and evaluation lists (DATASET.TRAIN_SET and
    DATASET.TEST_SET, the first TRAIN/TEST.NUM_SAMPLES) as training and evaluation do.

    Args:
        cfg (CfgNode): the merged config.
    Returns:
        tuple[Inspection, DatasetSpec]: the summary (``lines``, ``warnings``) and the
        problems (``errors(spec)``: one line per kind; none when the data set is usable).
    """
    spec = dataset_spec(cfg)
    found = Inspection(hint=lists_hint(cfg))
    names = ', '.join(spec.classes[:FREQUENT]) + (', ...' if spec.num_classes > FREQUENT else '')
    found.lines.append(f'{spec.name} data in {data_dir(cfg)}: {spec.num_classes} classes '
                       f'({names}), ignore label {spec.ignore_label}')
    if not os.path.isdir(cfg.DATASET.ROOT):
        found.problems['missing data root(s)'].append(
            f'DATASET.ROOT {cfg.DATASET.ROOT} does not exist')
        return found, spec
    lists = {cfg.DATASET.TRAIN_SET: ('train', cfg.TRAIN.NUM_SAMPLES)}
    lists.setdefault(cfg.DATASET.TEST_SET, ('test', cfg.TEST.NUM_SAMPLES))
    reports = {}
    for list_path, (role, num_samples) in lists.items():
        report = inspect_list(cfg, list_path, num_samples, spec, found)
        if report is None:
            continue
        reports[role] = report
        found.lines.append(f'{role} {list_path}: {report.samples} samples, images '
                           f'{_sizes_text(report.sizes) or "none readable"}')
    train = reports.get('train')
    if train is not None and train.samples:
        found.lines.append('class pixels (train): '
                           + _frequencies_text(train.pixels, train.ignored, spec.classes))
        unseen = [f'{c} {spec.classes[c]}' for c in range(spec.num_classes)
                  if train.pixels[c] == 0]
        if unseen:
            found.warnings.append(f'classes never seen in {train.list_path}: '
                                  + ', '.join(unseen[:FREQUENT])
                                  + (', ...' if len(unseen) > FREQUENT else '')
                                  + ' (the network cannot learn them)')
    return found, spec
