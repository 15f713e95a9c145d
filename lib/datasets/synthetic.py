"""A small synthetic data set in the exact Cityscapes layout, for tests and quick runs.

Each image is a street scene drawn from simple shapes: sky above a horizon, buildings,
walls, fences and trees along it, a road in perspective between sidewalks and terrain,
poles carrying signs and lights, and vehicles, people and riders standing on the ground
with sizes that grow towards the bottom of the image. Every labelId has its own colour
(the Cityscapes palette, moved apart where two classes would be close) and texture
(stripes, checks, grids, windows, gradients or grain), with per-image colour jitter,
brightness changes and pixel noise. All 19 evaluated classes get enough pixels, at
sizes a network that predicts at a quarter of the resolution can resolve, so a small
network learns every class in a few CPU minutes. Void labelIds appear as in real
data: the ego vehicle (1) at the bottom, and patches of unlabeled (0), static (4) and
parking (9) pixels, all of which map to the ignore label.

The labelIds files hold real Cityscapes labelIds, so the data go through the same
label mapping as real Cityscapes. For a given seed, every image is the same whatever
the number of images requested: image ``i`` of a split uses its own random stream.
"""
import glob
import os
import shutil

import cv2
import numpy as np

from utils.errors import ConfigError, DataError
from utils.io import atomic_write_png, atomic_write_text
from utils.logger import progress as show_progress
from .lists import (IMAGE_DIR, IMAGE_SUFFIX, LABEL_DIR, LABEL_SUFFIX, LABELLED_SPLITS,
                    LIST_DIR, SPLITS, write_cityscapes_lists)

# Real Cityscapes city names, disjoint between splits as in the real data set.
CITIES = {
    'train': ('aachen', 'bochum', 'bremen', 'cologne'),
    'val': ('frankfurt', 'lindau', 'munster'),
    'test': ('berlin', 'bielefeld', 'bonn'),
}
FRAME = 19  # the annotated frame of each Cityscapes sequence snippet

# Written beside the data so that a later run may replace a synthetic tree, never real data.
MARKER = 'SYNTHETIC.txt'

# labelId → (RGB colour, texture, texture period in pixels). Colours of the evaluated
# classes follow the Cityscapes palette where it keeps classes apart; where two classes
# would be close (car, truck and bus; person and rider; pole and fence; light and sign)
# one of them moves, so that every pair differs by more than 75 units of RGB distance.
STYLES = {
    0: ((0, 0, 0), 'random', 0),  # unlabeled: uniform colour noise
    1: ((25, 25, 30), 'flat', 0),  # ego vehicle
    4: ((111, 74, 0), 'checker', 6),  # static
    7: ((128, 64, 128), 'grain', 0),  # road
    8: ((244, 35, 232), 'grid', 12),  # sidewalk
    9: ((250, 170, 160), 'grid', 6),  # parking
    11: ((70, 70, 70), 'windows', 12),  # building
    12: ((90, 90, 200), 'hstripes', 6),  # wall
    13: ((230, 190, 120), 'vstripes', 4),  # fence
    17: ((160, 160, 160), 'flat', 0),  # pole
    19: ((250, 150, 0), 'flat', 0),  # traffic light
    20: ((255, 255, 0), 'flat', 0),  # traffic sign
    21: ((107, 142, 35), 'grain', 0),  # vegetation
    22: ((152, 251, 152), 'hstripes', 4),  # terrain
    23: ((70, 160, 230), 'gradient', 0),  # sky
    24: ((220, 20, 60), 'flat', 0),  # person
    25: ((120, 0, 0), 'hstripes', 4),  # rider
    26: ((0, 0, 142), 'flat', 0),  # car
    27: ((0, 140, 140), 'vstripes', 8),  # truck
    28: ((0, 80, 30), 'windows', 10),  # bus
    31: ((120, 0, 220), 'hstripes', 8),  # train
    32: ((0, 60, 255), 'checker', 4),  # motorcycle
    33: ((255, 120, 200), 'checker', 4),  # bicycle
}
TEXTURE_AMPLITUDE = 25.0  # brightness swing of a texture, in 0…255 units
COLOUR_JITTER = 10  # per-image, per-class colour shift, in 0…255 units per channel
BRIGHTNESS = (0.9, 1.1)  # range of the per-image illumination factor
PIXEL_NOISE = 6.0  # standard deviation of the per-pixel Gaussian noise

# Vehicles: labelId → (relative frequency, width / W, height / H) at the image bottom.
# Frequencies are near uniform so that every class gets enough pixels to be learned.
VEHICLES = {26: (2.0, 0.30, 0.26), 27: (1.0, 0.32, 0.40), 28: (1.0, 0.38, 0.42),
            31: (1.0, 0.50, 0.40), 32: (1.0, 0.22, 0.30), 33: (1.0, 0.22, 0.30)}
# An object at depth d (0 at the horizon, 1 at the image bottom) has 1 - FAR_SHRINK *
# (1 - d) times its size at the bottom: far objects stay large enough to be resolved at
# a quarter of the image resolution, where the network predicts.
FAR_SHRINK = 0.5

ROAD, SIDEWALK, PARKING, TERRAIN, SKY = 7, 8, 9, 22, 23
UNLABELED, EGO_VEHICLE, STATIC = 0, 1, 4
BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEGETATION = 11, 12, 13, 17, 19, 20, 21
PERSON, RIDER, CAR, MOTORCYCLE, BICYCLE = 24, 25, 26, 32, 33


def render_scene(height, width, rng):
    """Draw one synthetic street scene and its labelIds.

    Args:
        height (int): image height in pixels (at least 32).
        width (int): image width in pixels (at least 32).
        rng (np.random.Generator): source of every random choice.

    Returns:
        tuple: (image H×W×3 ``uint8`` in BGR order, ready for ``cv2.imwrite``;
        labelIds H×W ``uint8``).
    """
    if height < 32 or width < 32:
        raise ConfigError(f'synthetic images must be at least 32x32, got {width}x{height}: '
                          'pass a larger --height/--width')
    label = _draw_layout(height, width, rng)
    return _paint(label, rng), label


def _draw_layout(H, W, rng):
    """Paint labelIds back to front: sky, skyline, ground, objects, void regions."""
    label = np.full((H, W), SKY, dtype=np.uint8)
    horizon = int(H * rng.uniform(0.4, 0.5))

    # Skyline: a row of buildings with occasional gaps of sky, then walls, fences and
    # trees in front of them along the horizon.
    x = 0
    while x < W:
        block = max(4, int(W * rng.uniform(0.12, 0.3)))
        if rng.random() > 0.15:
            top = int(horizon * rng.uniform(0.05, 0.6))
            _rect(label, x, top, x + block, horizon + H * 0.03, BUILDING)
        x += block
    for label_id in (WALL, FENCE):
        if rng.random() < 0.75:
            x0 = W * rng.uniform(0, 0.75)
            _rect(label, x0, horizon - H * rng.uniform(0.12, 0.22),
                  x0 + W * rng.uniform(0.2, 0.4), horizon + H * 0.04, label_id)
    for _ in range(rng.integers(1, 4)):
        centre = (W * rng.uniform(0, 1), horizon - H * rng.uniform(0.05, 0.2))
        axes = (W * rng.uniform(0.06, 0.14), H * rng.uniform(0.1, 0.2))
        _ellipse(label, centre, axes, VEGETATION)

    # Ground: sidewalk, terrain verges in the lower corners, then a road in perspective
    # towards a vanishing point on the horizon, covering the inner part of the verges.
    label[horizon:] = SIDEWALK
    for corner in (0, W):
        if rng.random() < 0.75:
            verge_top = horizon + (H - horizon) * rng.uniform(0.1, 0.4)
            reach = W * rng.uniform(0.2, 0.4)
            _polygon(label, [(corner, verge_top), (abs(corner - reach), H), (corner, H)],
                     TERRAIN)
    vanish, half_top = W * rng.uniform(0.4, 0.6), W * 0.03
    left, right = W * rng.uniform(0.0, 0.2), W * rng.uniform(0.8, 1.0)
    _polygon(label, [(vanish - half_top, horizon), (vanish + half_top, horizon),
                     (right, H), (left, H)], ROAD)

    def road_x(y, offset):  # x on the road at row y; offset 0 = left edge, 1 = right edge
        t = (y - horizon) / (H - horizon)
        lo = vanish - half_top + (left - vanish + half_top) * t
        hi = vanish + half_top + (right - vanish - half_top) * t
        return lo + (hi - lo) * offset

    if rng.random() < 0.4:  # a parking lot beside the road
        y0 = horizon + (H - horizon) * rng.uniform(0.2, 0.6)
        x0 = road_x(y0, 1) if rng.random() < 0.5 else road_x(y0, 0) - W * 0.2
        _rect(label, x0, y0, x0 + W * 0.2, y0 + H * 0.12, PARKING)

    # Objects standing on the ground, drawn far (small) to near (large).
    objects = []
    vehicle_ids = list(VEHICLES)
    frequencies = np.array([VEHICLES[i][0] for i in vehicle_ids])
    for _ in range(rng.integers(2, 4)):
        kind = vehicle_ids[rng.choice(len(vehicle_ids), p=frequencies / frequencies.sum())]
        objects.append((rng.uniform(0.2, 0.95), 'vehicle', kind))
    for _ in range(rng.integers(0, 4)):
        objects.append((rng.uniform(0.2, 0.95), 'person', PERSON))
    for _ in range(rng.integers(1, 3)):
        objects.append((rng.uniform(0.2, 0.9), 'pole', POLE))
    for depth, kind, label_id in sorted(objects, key=lambda item: item[0]):
        y = horizon + (H - horizon) * depth
        scale = 1 - FAR_SHRINK * (1 - depth)
        if kind == 'vehicle':
            _, rel_w, rel_h = VEHICLES[label_id]
            x = road_x(y, rng.uniform(0.2, 0.8))
            _draw_vehicle(label, x, y, W * rel_w * scale, H * rel_h * scale, label_id, rng)
        else:  # on the ground left or right of the road
            if rng.random() < 0.5:
                x = road_x(y, 0) * rng.uniform(0.3, 0.9)
            else:
                x = road_x(y, 1) + (W - road_x(y, 1)) * rng.uniform(0.1, 0.7)
            if kind == 'person':
                _draw_person(label, x, y, H * 0.5 * scale, PERSON)
            else:
                _draw_pole(label, x, y, H * (0.35 + 0.35 * scale), W * 0.03 * scale, rng)

    # Void regions, mapped to the ignore label like in the real annotations.
    for label_id in (STATIC, UNLABELED):
        for _ in range(rng.integers(0, 3)):
            x0, y0 = W * rng.uniform(0, 0.9), H * rng.uniform(0.2, 0.9)
            _rect(label, x0, y0, x0 + W * rng.uniform(0.02, 0.08),
                  y0 + H * rng.uniform(0.02, 0.08), label_id)
    _ellipse(label, (W / 2, H), (W * 0.6, H * rng.uniform(0.05, 0.1)), EGO_VEHICLE)
    return label


def _draw_vehicle(label, x, y, w, h, label_id, rng):
    if label_id == CAR:  # body plus a narrower cabin on top
        _rect(label, x - w / 2, y - h * 0.6, x + w / 2, y, CAR)
        _rect(label, x - w * 0.3, y - h, x + w * 0.3, y - h * 0.6, CAR)
    elif label_id in (MOTORCYCLE, BICYCLE):  # two wheels and a frame, often ridden
        radius = w * 0.28
        for cx in (x - w / 2 + radius, x + w / 2 - radius):
            _ellipse(label, (cx, y - radius), (radius, radius), label_id)
        _rect(label, x - w / 2 + radius, y - h * 0.6, x + w / 2 - radius, y - radius,
              label_id)
        if rng.random() < 0.7:
            _draw_person(label, x, y - h * 0.5, h * 1.4, RIDER)
    else:  # truck, bus, train: boxes
        _rect(label, x - w / 2, y - h, x + w / 2, y, label_id)


def _draw_person(label, x, y, h, label_id):
    w = h * 0.35
    _rect(label, x - w / 2, y - h * 0.8, x + w / 2, y, label_id)
    _ellipse(label, (x, y - h * 0.88), (w * 0.4, h * 0.12), label_id)


def _draw_pole(label, x, y, h, w, rng):
    _rect(label, x - w / 2, y - h, x + w / 2, y, POLE)
    if rng.random() < 0.5:  # a sign, wider than the pole
        _rect(label, x - 2 * w, y - h, x + 2 * w, y - h + 3 * w, SIGN)
    else:  # a traffic light, taller than wide
        _rect(label, x - 1.25 * w, y - h, x + 1.25 * w, y - h + 4 * w, LIGHT)


def _rect(label, x0, y0, x1, y1, label_id):
    cv2.rectangle(label, (int(round(x0)), int(round(y0))),
                  (int(round(x1)) - 1, int(round(y1)) - 1), int(label_id), thickness=-1)


def _ellipse(label, centre, axes, label_id):
    cv2.ellipse(label, (int(round(centre[0])), int(round(centre[1]))),
                (max(1, int(round(axes[0]))), max(1, int(round(axes[1])))),
                0, 0, 360, int(label_id), thickness=-1)


def _polygon(label, points, label_id):
    cv2.fillPoly(label, [np.round(np.array(points)).astype(np.int32)], int(label_id))


def _texture(kind, period, ys, xs, height, rng):
    """Brightness modulation in [−1, 1] of the pixels at rows ``ys`` and columns ``xs``."""
    half = max(1, period // 2)
    if kind == 'flat':
        return np.zeros(len(ys))
    if kind == 'grain':
        return np.clip(rng.normal(0.0, 0.5, len(ys)), -1, 1)
    if kind == 'gradient':  # lighter towards the horizon, as a clear sky is
        return ys / height * 2 - 1
    if kind == 'hstripes':
        return (ys // half) % 2 * 2.0 - 1
    if kind == 'vstripes':
        return (xs // half) % 2 * 2.0 - 1
    if kind == 'checker':
        return (ys // half + xs // half) % 2 * 2.0 - 1
    if kind == 'grid':  # dark 2-pixel joints between lighter tiles
        return np.where((ys % period < 2) | (xs % period < 2), -1.0, 0.3)
    if kind == 'windows':  # dark windows in a lighter facade
        inside = ((ys % period) >= period // 4) & ((ys % period) < 3 * period // 4) & \
                 ((xs % period) >= period // 4) & ((xs % period) < 3 * period // 4)
        return np.where(inside, -1.0, 0.4)
    raise ValueError(f'unknown texture {kind!r}')


def _paint(label, rng):
    height, width = label.shape
    image = np.zeros((height, width, 3), dtype=np.float64)  # RGB
    for label_id in np.unique(label):
        ys, xs = np.nonzero(label == label_id)
        colour, kind, period = STYLES[int(label_id)]
        if kind == 'random':
            image[ys, xs] = rng.uniform(0, 255, (len(ys), 3))
            continue
        colour = np.asarray(colour) + rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, 3)
        modulation = _texture(kind, period, ys, xs, height, rng)
        image[ys, xs] = colour + TEXTURE_AMPLITUDE * modulation[:, None]
    image *= rng.uniform(*BRIGHTNESS)  # global illumination
    image += rng.normal(0.0, PIXEL_NOISE, image.shape)
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image[:, :, ::-1])  # RGB → BGR for cv2.imwrite


def generate_synthetic_cityscapes(root, *, num_train=24, num_val=8, num_test=4,
                                  height=256, width=512, seed=0, progress=False):
    """Write a synthetic data set under ``root`` in the Cityscapes layout, with its lists.

    Files: ``root/cityscapes/leftImg8bit/SPLIT/CITY/CITY_SEQ_000019_leftImg8bit.png``,
    for train and val also ``root/cityscapes/gtFine/SPLIT/CITY/..._gtFine_labelIds.png``,
    and ``root/list/cityscapes/{train,val,trainval,test}.lst``. Images are spread over
    the cities of each split in turn; ``SEQ`` counts the images of a city.

    Args:
        root (str): data root to create (DATASET.ROOT of a run on these data).
        num_train (int): training images. Default 24.
        num_val (int): validation images. Default 8.
        num_test (int): test images (no labels are listed). Default 4.
        height (int): image height. Default 256.
        width (int): image width. Default 512.
        seed (int): random seed; the same seed always gives the same images. Default 0.
        progress (bool): show a progress bar (on a terminal). Default False.

    Returns:
        dict[str, int]: number of samples per list name.

    Raises:
        DataError: ``root/cityscapes`` exists, is not empty and was not made by
            this generator, or ``root/list/cityscapes`` holds lists of other data (real
            data and their lists, e.g. those shipped in data/, are never overwritten).
    """
    base = os.path.join(root, 'cityscapes')
    synthetic = os.path.isfile(os.path.join(base, MARKER))
    if os.path.isdir(base) and os.listdir(base) and not synthetic:
        raise DataError(f'{base} already holds data that this generator did not '
                        'write; choose another --root.')
    list_dir = os.path.join(root, LIST_DIR)
    if not synthetic and glob.glob(os.path.join(list_dir, '*.lst')):
        raise DataError(f'{list_dir} holds list files that this generator did not write; '
                        'choose another --root, e.g. data/synthetic.')
    if synthetic:
        shutil.rmtree(base)  # an earlier synthetic set: replace it as a whole
    os.makedirs(base, exist_ok=True)
    atomic_write_text(os.path.join(base, MARKER),
                      f'Synthetic Cityscapes-like data: train {num_train}, val {num_val}, '
                      f'test {num_test}, {width}x{height}, seed {seed}.\n')

    counts = {'train': num_train, 'val': num_val, 'test': num_test}
    samples = {split: [] for split in SPLITS}
    todo = [(split_index, split, index) for split_index, split in enumerate(SPLITS)
            for index in range(counts[split])]
    for split_index, split, index in show_progress(todo, 'synthetic cityscapes', progress):
        rng = np.random.default_rng([seed, split_index, index])
        image, label_ids = render_scene(height, width, rng)
        samples[split].append(_write_sample(base, split, index, image, label_ids))
    for split in SPLITS:
        samples[split].sort()
    return write_cityscapes_lists(root, samples)


def _write_sample(base, split, index, image, label_ids):
    cities = CITIES[split]
    city = cities[index % len(cities)]
    stem = f'{city}_{index // len(cities):06d}_{FRAME:06d}'
    image_path = f'{IMAGE_DIR}/{split}/{city}/{stem}{IMAGE_SUFFIX}'
    _imwrite(os.path.join(base, image_path), image)
    if split not in LABELLED_SPLITS:
        return (image_path,)
    label_path = f'{LABEL_DIR}/{split}/{city}/{stem}{LABEL_SUFFIX}'
    _imwrite(os.path.join(base, label_path), label_ids)
    return (image_path, label_path)


def _imwrite(path, array):
    atomic_write_png(path, array)
