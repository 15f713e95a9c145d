"""Where the named data sets' files lie after unpacking their downloads, and their lists.

Under a data root ``ROOT`` (DATASET.ROOT)::

    ade20k/ADEChallengeData2016/{images,annotations}/{training,validation}/*.{jpg,png}
    lip/TrainVal_images/{train,val}_images/*.jpg
    lip/TrainVal_parsing_annotations/{train,val}_segmentations/*.png
    pascal_ctx/VOCdevkit/VOC2010/JPEGImages/*.jpg
    pascal_ctx/VOCdevkit/VOC2010/SegmentationClassContext/*.png  (labels as PNG, 0..59)
    pascal_ctx/VOCdevkit/VOC2010/ImageSets/SegmentationContext/{train,val}.txt
    cocostuff/images/{train,val}2017/*.jpg
    cocostuff/annotations/{train,val}2017/*.png  (stuffthingmaps: COCO id - 1, 255 void)

`make_lists` writes ``ROOT/list/NAME/<split list>``, one ``image<TAB>label`` line per
sample, paths relative to ``ROOT``, sorted; Cityscapes keeps its own tool and format
(`datasets.lists`).
"""
import glob
import os
from dataclasses import dataclass

from utils.io import atomic_write_text

from .lists import make_cityscapes_lists


@dataclass(frozen=True)
class Layout:
    """A named data set's files under the data root.

    Args:
        name (str): DATASET.DATASET; the lists go to ``ROOT/list/<name>/``.
        image (str): an image's path relative to the root, with ``{split}`` and ``{stem}``.
        label (str): its label's path, with the same fields.
        splits (dict[str, str]): list file name -> the ``{split}`` of its samples.
        stems (str): with ``{split}``: a file naming one stem per line (the split's
            samples); '' takes every image found.
    """
    name: str
    image: str
    label: str
    splits: dict
    stems: str = ''

    def find_stems(self, root, split):
        """The sorted stems of a split; none where its folder or file is absent."""
        if self.stems:
            path = os.path.join(root, self.stems.format(split=split))
            if not os.path.isfile(path):
                return []
            with open(path) as handle:
                return sorted({line.strip() for line in handle if line.strip()})
        pattern = os.path.join(root, self.image.format(split=split, stem='*'))
        prefix, suffix = self.image.format(split=split, stem='\0').split('\0')
        return sorted(os.path.relpath(path, root).replace(os.sep, '/')[len(prefix):-len(suffix)]
                      for path in glob.glob(pattern))

    def samples(self, root):
        """``{list file name: [(image, label), ...]}`` of every split found under ``root``.

        Raises:
            FileNotFoundError: no split has any sample (naming where images were looked
                for), or an image has no label (naming the missing file).
        """
        found = {}
        for list_name, split in self.splits.items():
            pairs = []
            for stem in self.find_stems(root, split):
                image, label = (template.format(split=split, stem=stem)
                                for template in (self.image, self.label))
                for path in (image, label):
                    if not os.path.isfile(os.path.join(root, path)):
                        raise FileNotFoundError(f'{os.path.join(root, path)} of {self.name} '
                                                f'sample {stem} ({split}) is missing.')
                pairs.append((image, label))
            if pairs:
                found[list_name] = pairs
        if not found:
            where = self.stems or self.image
            raise FileNotFoundError(
                f'No {self.name} samples under {root}: expected ' +
                ', '.join(os.path.join(root, where.format(split=s, stem='*'))
                          for s in self.splits.values()) +
                ' (the layout of the unpacked downloads; see docs/datasets.md).')
        return found


LAYOUTS = {layout.name: layout for layout in (
    Layout('ade20k',
           image='ade20k/ADEChallengeData2016/images/{split}/{stem}.jpg',
           label='ade20k/ADEChallengeData2016/annotations/{split}/{stem}.png',
           splits={'train.lst': 'training', 'val.lst': 'validation'}),
    Layout('lip',
           image='lip/TrainVal_images/{split}_images/{stem}.jpg',
           label='lip/TrainVal_parsing_annotations/{split}_segmentations/{stem}.png',
           splits={'trainList.txt': 'train', 'valList.txt': 'val'}),
    Layout('pascal_ctx',
           image='pascal_ctx/VOCdevkit/VOC2010/JPEGImages/{stem}.jpg',
           label='pascal_ctx/VOCdevkit/VOC2010/SegmentationClassContext/{stem}.png',
           splits={'train.lst': 'train', 'val.lst': 'val'},
           stems='pascal_ctx/VOCdevkit/VOC2010/ImageSets/SegmentationContext/{split}.txt'),
    Layout('cocostuff',
           image='cocostuff/images/{split}2017/{stem}.jpg',
           label='cocostuff/annotations/{split}2017/{stem}.png',
           splits={'train.lst': 'train', 'val.lst': 'val'}),
)}


def make_lists(name, root):
    """Scan ``root`` in the layout of data set ``name`` and write its list files.

    Args:
        name (str): 'cityscapes' or a name of `LAYOUTS`.
        root (str): the data root (DATASET.ROOT).

    Returns:
        dict[str, int]: list file path (relative to ``root``) -> number of samples.

    Raises:
        FileNotFoundError: see `Layout.samples`.
    """
    if name == 'cityscapes':
        counts = make_cityscapes_lists(root)
        return {f'list/cityscapes/{split}.lst': count for split, count in counts.items()}
    lists = LAYOUTS[name].samples(root)
    list_dir = os.path.join(root, 'list', name)
    os.makedirs(list_dir, exist_ok=True)
    counts = {}
    for list_name, pairs in lists.items():
        atomic_write_text(os.path.join(list_dir, list_name),
                          ''.join(f'{image}\t{label}\n' for image, label in pairs))
        counts[f'list/{name}/{list_name}'] = len(pairs)
    return counts
