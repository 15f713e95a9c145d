import random

import numpy as np
import pytest

from datasets.transforms import (IMAGENET_MEAN, IMAGENET_STD, eval_sample, normalize,
                                 pad_to_size, random_crop, resize_long_side, train_sample)

IGNORE = 255
U = 2.0 ** -24  # unit roundoff of float32


class ScriptedRng:
    """Stands in for the `random` module: replays given draws and records randint ranges."""

    def __init__(self, randints=(), randoms=()):
        self.randints, self.randoms, self.ranges = list(randints), list(randoms), []

    def randint(self, low, high):
        self.ranges.append((low, high))
        value = self.randints.pop(0)
        assert low <= value <= high
        return value

    def random(self):
        return self.randoms.pop(0)


def make_sample(height, width, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    label = rng.choice(np.array([0, 5, 10, 18, IGNORE]), size=(height, width)).astype(np.int64)
    return image, label


@pytest.mark.parametrize('shape, long_size, expected', [
    ((30, 40), 60, (45, 60)),  # landscape: width becomes the long side
    ((40, 30), 60, (60, 45)),  # portrait: height becomes the long side
    ((27, 40), 60, (41, 60)),  # 40.5 rounds half up, as in the original
])
def test_resize_long_side(shape, long_size, expected):
    image, label = make_sample(*shape)
    image, label = resize_long_side(image, label, long_size)
    assert image.shape == expected + (3,) and label.shape == expected
    assert label.dtype == np.int64
    assert set(np.unique(label)) <= {0, 5, 10, 18, IGNORE}  # nearest: no blended values


def test_pad_uses_zero_image_and_ignore_label():
    image, label = make_sample(3, 4)
    padded_image, padded_label = pad_to_size(image, label, (5, 6), IGNORE)
    assert padded_image.shape == (5, 6, 3) and padded_label.shape == (5, 6)
    assert (padded_image[:3, :4] == image).all() and (padded_label[:3, :4] == label).all()
    assert (padded_image[3:] == 0).all() and (padded_image[:, 4:] == 0).all()
    assert (padded_label[3:] == IGNORE).all() and (padded_label[:, 4:] == IGNORE).all()
    same_image, same_label = pad_to_size(image, label, (2, 2), IGNORE)
    assert same_image is image and same_label is label


def test_random_crop_takes_the_drawn_window():
    image, label = make_sample(10, 12)
    rng = ScriptedRng(randints=[3, 2])  # x (column) first, then y (row)
    crop_image, crop_label = random_crop(image, label, (4, 5), IGNORE, rng)
    assert rng.ranges == [(0, 12 - 5), (0, 10 - 4)]
    assert (crop_image == image[2:6, 3:8]).all() and (crop_label == label[2:6, 3:8]).all()


def test_normalize_converts_bgr_to_normalised_rgb():
    image = np.zeros((2, 3, 3), dtype=np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 10, 128, 250  # B, G, R
    out = normalize(image)
    assert out.shape == (3, 2, 3) and out.dtype == np.float32
    for channel, value in enumerate((250, 128, 10)):  # R, G, B
        centred = value / 255.0 - IMAGENET_MEAN[channel]
        expected = centred / IMAGENET_STD[channel]
        # Three float32 roundings (u each): of value/255, of the centred value, then of
        # the result; the first two are divided by the std.
        bound = U * ((value / 255.0 + abs(centred)) / IMAGENET_STD[channel] + abs(expected))
        assert np.abs(out[channel] - expected).max() <= bound


@pytest.mark.parametrize('seed', range(5))
def test_train_sample_shapes_and_label_values(seed):
    image, label = make_sample(40, 80, seed)
    out_image, out_label = train_sample(image, label, base_size=80, crop_size=(24, 32),
                                        ignore_label=IGNORE, scale_factor=16,
                                        rng=random.Random(seed))
    assert out_image.shape == (3, 24, 32) and out_image.dtype == np.float32
    assert out_label.shape == (24, 32) and out_label.dtype == np.int64
    assert set(np.unique(out_label)) <= set(range(19)) | {IGNORE}


def test_downsample_rate_shrinks_the_label_only():
    image, label = make_sample(40, 80)
    out_image, out_label = train_sample(image, label, base_size=80, crop_size=(24, 32),
                                        ignore_label=IGNORE, downsample_rate=2,
                                        rng=random.Random(0))
    assert out_image.shape == (3, 24, 32) and out_label.shape == (12, 16)


def test_padding_when_scaled_image_is_smaller_than_the_crop():
    image, label = make_sample(20, 40)
    label[:] = 5
    # scale 0.5 + 0/10: long side 20, so the 10x20 image is padded to the 16x32 crop.
    rng = ScriptedRng(randints=[0, 0, 0], randoms=[0.9])
    out_image, out_label = train_sample(image, label, base_size=40, crop_size=(16, 32),
                                        ignore_label=IGNORE, rng=rng)
    assert rng.ranges[0] == (0, 16)  # randint(0, SCALE_FACTOR), both ends included
    assert (out_label[:10, :20] == 5).all()
    assert (out_label[10:] == IGNORE).all() and (out_label[:, 20:] == IGNORE).all()
    padded_pixel = normalize(np.zeros((1, 1, 3), dtype=np.uint8))[:, 0, 0]
    assert out_image[:, 10:, :] == pytest.approx(
        np.broadcast_to(padded_pixel[:, None, None], (3, 6, 32)))


def test_flip_mirrors_image_and_label_together():
    image, label = make_sample(30, 60)
    kwargs = dict(base_size=60, crop_size=(20, 20), ignore_label=IGNORE)
    plain = train_sample(image, label, rng=ScriptedRng([5, 7, 3], [0.9]), **kwargs)
    flipped = train_sample(image, label, rng=ScriptedRng([5, 7, 3], [0.1]), **kwargs)
    assert not (plain[1] == plain[1][:, ::-1]).all()  # the test needs an asymmetric crop
    assert (flipped[0] == plain[0][:, :, ::-1]).all()
    assert (flipped[1] == plain[1][:, ::-1]).all()


def test_flip_happens_about_half_of_the_time():
    image = np.zeros((4, 8, 3), dtype=np.uint8)
    label = np.zeros((4, 8), dtype=np.int64)
    label[:, 0] = 1  # marks the left edge
    rng = random.Random(0)
    flips = sum(train_sample(image, label, base_size=8, crop_size=(4, 8), ignore_label=IGNORE,
                             multi_scale=False, rng=rng)[1][0, -1] == 1 for _ in range(400))
    assert 150 < flips < 250


def test_scales_cover_randint_range_inclusively():
    image = np.zeros((20, 40, 3), dtype=np.uint8)
    label = np.zeros((20, 40), dtype=np.int64)
    rng = random.Random(0)
    widths = set()
    for _ in range(100):  # scale_factor 2: scales 0.5, 0.6, 0.7 -> long sides 20, 24, 28
        _, out = train_sample(image, label, base_size=40, crop_size=(40, 40),
                              ignore_label=IGNORE, scale_factor=2, flip=False, rng=rng)
        widths.add(int((out[0] != IGNORE).sum()))
    assert widths == {20, 24, 28}


def test_without_multi_scale_the_image_keeps_its_size():
    image, label = make_sample(30, 50)
    out_image, out_label = train_sample(image, label, base_size=100, crop_size=(8, 8),
                                        ignore_label=IGNORE, multi_scale=False, flip=False)
    assert out_image.shape == (3, 30, 50) and (out_label == label).all()


def test_eval_sample_is_the_whole_image():
    image, label = make_sample(30, 50)
    out_image, out_label = eval_sample(image, label)
    assert (out_image == normalize(image)).all() and (out_label == label).all()
