"""Sample preparation for segmentation: multi-scale resize, pad, crop, normalise, flip.

All functions work on numpy arrays: images are H×W×3 ``uint8`` in OpenCV's BGR order
(as ``cv2.imread`` returns them), labels are H×W integer arrays of trainIds. The
training pipeline (`train_sample`) applies the steps in the order of the original
release (ADP-C spec, section 4), so that a given random draw produces the same sample:

    scale = 0.5 + randint(0, scale_factor) / 10      (randint inclusive of both ends)
    resize so that the long side is base_size · scale (image bilinear, label nearest)
    pad bottom/right up to the crop (image 0, label ignore), random crop
    BGR → RGB, / 255, ImageNet mean/std, H×W×3 → 3×H×W
    horizontal flip with probability 1/2
    label downsampling by downsample_rate (nearest)

Randomness comes from an ``rng`` argument with the interface of Python's ``random``
module (``randint``, ``random``); it defaults to that module, which PyTorch's
DataLoader seeds differently in every worker process.
"""
import random

import cv2
import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB
IMAGENET_STD = (0.229, 0.224, 0.225)  # RGB


def resize_long_side(image, label, long_size):
    """Resize an image (bilinear) and its label (nearest) so the longer side is ``long_size``.

    The shorter side keeps the aspect ratio, rounded half up as in the original release.

    Args:
        image (np.ndarray): H×W×3 image.
        label (np.ndarray or None): H×W integer label, or None to resize the image only.
        long_size (int): target length of the longer side, in pixels.

    Returns:
        tuple: (image, label) resized; label is None if it was None.
    """
    height, width = image.shape[:2]
    if height > width:
        new_h, new_w = long_size, int(width * long_size / height + 0.5)
    else:
        new_h, new_w = int(height * long_size / width + 0.5), long_size
    image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    if label is not None:
        label = _resize_nearest(label, (new_w, new_h))
    return image, label


def _resize_nearest(label, size_wh, fx=0.0, fy=0.0):
    # cv2.resize has no int64 support; int32 holds every trainId and ignore value.
    resized = cv2.resize(label.astype(np.int32), size_wh, fx=fx, fy=fy,
                         interpolation=cv2.INTER_NEAREST)
    return resized.astype(label.dtype)


def pad_to_size(image, label, crop_size, ignore_label):
    """Pad an image with 0 and its label with ``ignore_label`` (bottom and right) up to a size.

    Sides already at least as large as the crop are left as they are.

    Args:
        image (np.ndarray): H×W×3 image.
        label (np.ndarray): H×W integer label.
        crop_size (tuple[int, int]): minimum (height, width).
        ignore_label (int): label value of padded pixels, so they count in no loss.

    Returns:
        tuple: (image, label), each at least ``crop_size``.
    """
    height, width = label.shape
    pad_h = max(crop_size[0] - height, 0)
    pad_w = max(crop_size[1] - width, 0)
    if pad_h == 0 and pad_w == 0:
        return image, label
    image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), constant_values=0)
    label = np.pad(label, ((0, pad_h), (0, pad_w)), constant_values=ignore_label)
    return image, label


def random_crop(image, label, crop_size, ignore_label, rng=random):
    """Pad to ``crop_size`` if needed (see `pad_to_size`), then crop a random window.

    Args:
        image (np.ndarray): H×W×3 image.
        label (np.ndarray): H×W integer label.
        crop_size (tuple[int, int]): (height, width) of the crop.
        ignore_label (int): label value of padded pixels.
        rng: source of ``randint``; default the ``random`` module.

    Returns:
        tuple: (image, label) of exactly ``crop_size``.
    """
    image, label = pad_to_size(image, label, crop_size, ignore_label)
    height, width = label.shape
    crop_h, crop_w = crop_size
    # The original draws the column before the row; keep that order for equal samples.
    x = rng.randint(0, width - crop_w)
    y = rng.randint(0, height - crop_h)
    return image[y:y + crop_h, x:x + crop_w], label[y:y + crop_h, x:x + crop_w]


def normalize(image):
    """Turn a BGR ``uint8`` image into the network's input.

    Args:
        image (np.ndarray): H×W×3 image in BGR order, values 0…255.

    Returns:
        np.ndarray: 3×H×W ``float32`` RGB image, scaled to [0, 1] then standardised
        with the ImageNet mean and std.
    """
    rgb = image[:, :, ::-1].astype(np.float32) / 255.0
    # Subtract and divide in float64 and round after each step, as the original did.
    rgb = (rgb - np.asarray(IMAGENET_MEAN)).astype(np.float32)
    rgb = (rgb / np.asarray(IMAGENET_STD)).astype(np.float32)
    return np.ascontiguousarray(rgb.transpose(2, 0, 1))


def downsample_label(label, downsample_rate):
    """Shrink a label map by ``downsample_rate`` with nearest-neighbour sampling.

    Args:
        label (np.ndarray): H×W integer label.
        downsample_rate (float): 1 keeps the label as it is; 2 halves each side, etc.

    Returns:
        np.ndarray: the resized label, same dtype.
    """
    if downsample_rate == 1:
        return label
    return _resize_nearest(label, None, fx=1.0 / downsample_rate, fy=1.0 / downsample_rate)


def flip_classes(label, permutation):
    """The classes of a mirrored label: class c becomes ``permutation[c]`` (left and
    right swapped, e.g. LIP's arms); other values (the ignore label) stay."""
    known = (label >= 0) & (label < len(permutation))
    return np.where(known, permutation[np.where(known, label, 0)], label).astype(label.dtype)


def train_sample(image, label, *, base_size, crop_size, ignore_label, multi_scale=True,
                 scale_factor=16, flip=True, downsample_rate=1, rng=random,
                 flip_permutation=None):
    """Build one augmented training sample (ADP-C spec, section 4).

    Args:
        image (np.ndarray): H×W×3 ``uint8`` BGR image.
        label (np.ndarray): H×W integer trainId label.
        base_size (int): long side at scale 1.
        crop_size (tuple[int, int]): (height, width) of the crop.
        ignore_label (int): label value of padded pixels.
        multi_scale (bool): rescale by 0.5 + randint(0, scale_factor) / 10 and take a
            random crop. As in the original release, without it the image keeps its
            own size and is not cropped. Default True.
        scale_factor (int): largest tenth added to the minimum scale 0.5. Default 16.
        flip (bool): mirror image and label left-right with probability 1/2. Default True.
        downsample_rate (float): label downsampling rate. Default 1.
        rng: source of ``randint`` and ``random``; default the ``random`` module.
        flip_permutation (np.ndarray or None): a flip turns class c into class
            ``flip_permutation[c]`` (`DatasetSpec.flip_permutation`); None keeps classes.

    Returns:
        tuple: (image 3×h×w ``float32`` normalised RGB, label h'×w' of label's dtype).
    """
    if multi_scale:
        scale = 0.5 + rng.randint(0, scale_factor) / 10.0
        image, label = resize_long_side(image, label, int(base_size * scale + 0.5))
        image, label = random_crop(image, label, crop_size, ignore_label, rng)
    image = normalize(image)  # 3×h×w
    if flip and rng.random() < 0.5:
        image = np.ascontiguousarray(image[:, :, ::-1])
        label = np.ascontiguousarray(label[:, ::-1])
        if flip_permutation is not None:
            label = flip_classes(label, flip_permutation)
    return image, downsample_label(label, downsample_rate)


def eval_sample(image, label, *, downsample_rate=1):
    """Build one evaluation sample: the whole image, normalised, without augmentation.

    Args:
        image (np.ndarray): H×W×3 ``uint8`` BGR image.
        label (np.ndarray): H×W integer trainId label.
        downsample_rate (float): label downsampling rate. Default 1.

    Returns:
        tuple: (image 3×H×W ``float32`` normalised RGB, label of label's dtype).
    """
    return normalize(image), downsample_label(label, downsample_rate)
