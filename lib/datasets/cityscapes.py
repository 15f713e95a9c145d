"""The Cityscapes semantic segmentation data set (ADP-C spec, section 4).

A `ListDataset` whose listed paths start at ``ROOT/cityscapes`` and whose samples are
named without the ``_leftImg8bit`` suffix; labelIds are mapped to the 19 trainIds by the
Cityscapes `DatasetSpec` (see `datasets.labels`).
"""
from dataclasses import replace

from .labels import CITYSCAPES_CLASS_WEIGHTS, CITYSCAPES_CLASSES
from .list_dataset import ListDataset
from .lists import LIST_TOOLS_HINT, sample_name
from .spec import CITYSCAPES

__all__ = ['Cityscapes', 'CITYSCAPES_CLASS_WEIGHTS', 'CITYSCAPES_CLASSES']


class Cityscapes(ListDataset):
    """Cityscapes images and fine labels as ``(image, label, name)`` items.

    ``image`` is a ``float32`` tensor 3×H×W (RGB, ImageNet-normalised), ``label`` an
    ``int64`` tensor H×W of trainIds 0…18 or ``ignore_label`` (all ``ignore_label`` for
    an image-only list such as the test split), ``name`` the image file's stem without
    ``_leftImg8bit`` (e.g. ``frankfurt_000000_000294``).

    Args:
        root (str): data root holding ``cityscapes/`` and ``list/`` (DATASET.ROOT).
        list_path (str): list file relative to ``root`` (DATASET.TRAIN_SET / TEST_SET).
        spec (DatasetSpec or None): the Cityscapes description (``dataset_spec(cfg)``);
            None: the Cityscapes one with ``ignore_label``.
        num_classes (int): number of trainIds; Cityscapes has 19. Default 19.
        ignore_label (int): label of void and padded pixels when ``spec`` is None.
            Default 255.
        **options: ``train`` and the options of `ListDataset`.

    Raises:
        FileNotFoundError: ``root``, the list file or a listed file does not exist.
        ValueError: ``num_classes`` is not 19, or ``train`` is set for an image-only list.
    """

    folder = 'cityscapes'
    list_hint = LIST_TOOLS_HINT

    def __init__(self, root, list_path, spec=None, *, num_classes=19, ignore_label=255,
                 **options):
        if num_classes != len(CITYSCAPES_CLASSES):
            raise ValueError(f'Cityscapes has {len(CITYSCAPES_CLASSES)} trainIds, got '
                             f'num_classes={num_classes} (DATASET.NUM_CLASSES).')
        spec = spec or replace(CITYSCAPES, ignore_label=ignore_label)
        super().__init__(root, list_path, spec, **options)

    def sample_name(self, image):
        return sample_name(image)
