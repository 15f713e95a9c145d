"""A tiny data set of one's own: bright blobs ('person') on a dark background, as an
images folder of JPEGs and a labels folder of single-channel PNGs (0 background,
1 person)."""
import os

import cv2
import numpy as np

CLASSES = ['background', 'person']


def make_blob_folder(root, count=12, height=64, width=64, seed=0):
    """Write ``root/images/blob_NNN.jpg`` and ``root/labels/blob_NNN.png``.

    Returns:
        tuple[str, str]: the images and labels folders.
    """
    rng = np.random.default_rng(seed)
    images, labels = os.path.join(root, 'images'), os.path.join(root, 'labels')
    os.makedirs(images, exist_ok=True)
    os.makedirs(labels, exist_ok=True)
    for i in range(count):
        label = np.zeros((height, width), np.uint8)
        for _ in range(rng.integers(1, 4)):
            centre = (int(rng.integers(8, width - 8)), int(rng.integers(8, height - 8)))
            axes = (int(rng.integers(4, width // 4)), int(rng.integers(4, height // 4)))
            cv2.ellipse(label, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        noise = rng.integers(0, 40, (height, width, 3))
        image = np.where(label[..., None] == 1, 190 + noise, 20 + noise).astype(np.uint8)
        cv2.imwrite(os.path.join(images, f'blob_{i:03d}.jpg'), image)
        cv2.imwrite(os.path.join(labels, f'blob_{i:03d}.png'), label)
    return images, labels
