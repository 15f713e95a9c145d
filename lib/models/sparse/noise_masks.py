"""Masks of chosen density for benchmarks and tests of confidence-masked models.

Random weights make every exit unconfident (all masks ones), so measuring or testing
sparse execution needs masks of controlled density. Thresholded smooth noise gives the
spatially coherent blobs that real confidence masks have (ADP-C Sec. 3.3, Fig. 4).
"""
import torch
import torch.nn.functional as F


class SmoothNoiseMasks:
    """A mask provider (``at(size)``, like ``ConfidenceMasks``) of a given density.

    The mask at the logits' resolution is smooth noise thresholded at its per-image
    quantile; masks at other sizes are its nearest-neighbour resizes, as confidence
    masks are nearest resizes of the logits.

    Args:
        batch (int): N, each image gets its own noise.
        size (tuple[int, int]): (h, w) of the base mask (the logits: input size / 4).
        density (float): fraction of ones, 0 to 1.
        smoothness (int): noise correlation length in pixels of the base mask.
        seed (int): random seed.
    """

    def __init__(self, batch, size, density, smoothness=8, seed=0):
        if not 0 <= density <= 1:
            raise ValueError(f'density must be in [0, 1], got {density}')
        h, w = size
        g = torch.Generator().manual_seed(seed)
        coarse = torch.randn(batch, 1, h // smoothness + 2, w // smoothness + 2, generator=g)
        noise = F.interpolate(coarse, size=(h, w), mode='bicubic', align_corners=False)
        flat = noise.flatten(1)  # N x h*w
        keep = round(density * h * w)
        order = flat.argsort(dim=1, descending=True)
        mask = torch.zeros_like(flat)
        mask.scatter_(1, order[:, :keep], 1.0)  # exactly ``keep`` ones per image
        self.base = mask.view(batch, 1, h, w)
        self.density = density
        self._by_size = {}

    def to(self, device):
        self.base = self.base.to(device)
        self._by_size = {}
        return self

    def at(self, size):
        size = tuple(int(s) for s in size)
        if size not in self._by_size:
            self._by_size[size] = F.interpolate(self.base, size=size, mode='nearest')
        return self._by_size[size]
