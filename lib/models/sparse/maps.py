"""Feature maps as the sparse engine holds them between layers: computed in full
(``FullMap``), known only at the active pixels (``ActiveRows``), or not yet computed
(``LazyMap``: resampled branches concatenated, as an exit head's input, sampled at the
active pixels only)."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .geometry import resample_matrix
from .kernels import channels_last, flat_rows, from_rows, resample_rows, sum_dtype


class LazyMap:
    """A map defined as resampled sources concatenated along channels, not yet computed.

    Exit heads start from the concatenation of all branches upsampled to branch 0's size
    (720 channels at 1/4 resolution for W48) and often pool it right away; a sparse head
    only needs that map at its active pixels, which ``rows`` samples directly.
    """

    def __init__(self, sources):
        """``sources`` resized (bilinear) to the first one's size and concatenated."""
        self.sources = [(x, [], tuple(x.shape[-2:])) for x in sources]
        self.size = self.sources[0][2]
        self.batch = sources[0].shape[0]
        self._wide_rows = {}  # source index -> its rows in sum_dtype, for resampling
        self.resize(self.size)

    def resize(self, size):
        """Bilinear resize (align_corners False) of every source to ``size``."""
        size = tuple(size)
        self.sources = [(x, ops if now == size else ops + [('resize', size)], size)
                        for x, ops, now in self.sources]
        self.size = size

    def pool2(self):
        """2x2 average pooling with stride 2."""
        self.sources = [(x, ops + [('pool2',)], (now[0] // 2, now[1] // 2))
                        for x, ops, now in self.sources]
        self.size = (self.size[0] // 2, self.size[1] // 2)

    def materialise(self):
        maps = []
        for x, ops, _ in self.sources:
            for op in ops:
                if op[0] == 'pool2':
                    x = F.avg_pool2d(x, 2, 2)
                elif tuple(x.shape[-2:]) != op[1]:
                    x = F.interpolate(x, size=op[1], mode='bilinear', align_corners=False)
            maps.append(x)
        out = maps[0] if len(maps) == 1 else torch.cat(maps, dim=1)
        return channels_last(out)

    def record(self, module):
        """Record ``module`` if it is a 2x2 average pooling or a 2x bilinear upsampling;
        False if it is neither."""
        if isinstance(module, nn.AvgPool2d) and module.kernel_size in (2, (2, 2)) \
                and module.stride in (2, (2, 2)) and module.padding in (0, (0, 0)) \
                and not module.ceil_mode:
            self.pool2()
            return True
        if isinstance(module, nn.Upsample) and module.mode == 'bilinear' \
                and not module.align_corners and module.size is None \
                and module.scale_factor in (2, 2.0, (2, 2), (2.0, 2.0)):
            self.resize((self.size[0] * 2, self.size[1] * 2))
            return True
        return False

    def at_active(self, geom, start, stop):
        """The map at active pixels ``start:stop`` of ``geom`` (this size)."""
        return self.rows(geom.active[start:stop])

    def rows(self, rows):
        """The map at flat ``rows`` only: n x C."""
        parts = []
        for i, (x, ops, _) in enumerate(self.sources):
            if not ops and tuple(x.shape[-2:]) == self.size:
                parts.append(flat_rows(channels_last(x)).index_select(0, rows))
                continue
            wide = self._wide_rows.get(i)
            if wide is None:  # widened once, not once per block of rows
                wide = self._wide_rows[i] = flat_rows(channels_last(x)).to(sum_dtype(x.dtype))
            matrix = resample_matrix(rows, self.size, self.batch, tuple(x.shape[-2:]), ops,
                                     wide.dtype)
            parts.append(resample_rows(matrix, wide).to(x.dtype))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


class FullMap:
    """A computed channels-last map, read like a ``LazyMap``."""

    def __init__(self, x):
        self.x = x
        self.size = tuple(x.shape[-2:])

    def at_active(self, geom, start, stop):
        return flat_rows(self.x).index_select(0, geom.active[start:stop])

    def materialise(self):
        return self.x


class ActiveRows:
    """A map known only at the active pixels of ``geom`` (rows in ``active`` order), all
    that a reader of the active pixels needs; zeros elsewhere once materialised."""

    def __init__(self, values, geom):
        self.values, self.geom = values, geom
        self.size = geom.size

    def at_active(self, geom, start, stop):
        assert geom is self.geom, 'active rows are read with the mask they were made with'
        return self.values[start:stop]

    def materialise(self):
        rows = self.values.new_zeros(self.geom.numel, self.values.shape[1])
        rows.index_copy_(0, self.geom.active, self.values)
        return from_rows(rows, self.geom.batch, self.size)
