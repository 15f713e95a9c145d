"""Latency profiles: how long each part of an anytime network takes on one machine.

A profile holds, for one model architecture, input shape, device, thread count, TF32
flags and MASK.EXECUTION, the time of exit 1 (stem, layer1, exit 1), of each later
segment as a function of its mask density, and of turning exit logits into labels at
input resolution. :class:`anytime.predictor.AnytimePredictor` reads it to decide, before
each segment, whether the segment fits in what is left of a time budget.

    profile = measure_profile(model, (1, 3, 512, 1024))     # noise masks of chosen density
    profile.save('profile.json')
    profile = LatencyProfile.load('profile.json')
    profile.check(model, x)                                  # ProfileMismatchError if not made for them

The JSON file is small (a few lists of milliseconds) and holds no code.
"""
import hashlib
import json
import os
import statistics
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from models.layout import to_inference
from models.model_anytime import NUM_EXITS
from models.sparse.noise_masks import SmoothNoiseMasks
from utils.errors import UserError
from utils.io import atomic_write_text
from utils.logger import progress as show_progress
from utils.runtime import device_name, sync, tf32_flags
from models.resize import upsample_to

FORMAT = 'adpc-latency-profile/1'
DENSITIES = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)
HIGH_QUANTILE = 0.9  # the predictor plans with this quantile of the timed rounds


class ProfileMismatchError(UserError):
    """A latency profile was measured for another model, input shape, device, thread
    count, TF32 flags or MASK.EXECUTION than the one it is used with, or is not a
    profile at all."""


def model_fingerprint(model):
    """What the network's speed depends on besides its input: the name and shape of
    every parameter and buffer and whether it is masked (weights' values do not count).

    Returns:
        tuple[str, int]: a 12-digit hash, and the number of parameters.
    """
    items = [(name, tuple(t.shape)) for name, t in model.state_dict().items()]
    items.append(('use_masks', bool(getattr(model, 'use_masks', False))))
    items.append(('aggregation', getattr(model, 'aggregation', None)))
    digest = hashlib.sha256(repr(items).encode()).hexdigest()[:12]
    return digest, sum(p.numel() for p in model.parameters())


def finish(logits, size):
    """Logits at input resolution and their labels: N x C x H x W and N x H x W."""
    logits = upsample_to(logits, size)
    return logits, logits.argmax(dim=1)


@dataclass
class Timing:
    """Milliseconds of one part: the median and the HIGH_QUANTILE of the timed rounds."""
    ms: float
    high_ms: float

    @classmethod
    def of(cls, seconds):
        ms = [s * 1000 for s in seconds]
        return cls(statistics.median(ms), float(np.quantile(ms, HIGH_QUANTILE)))


@dataclass
class LatencyProfile:
    """Measured times of an anytime network's parts on one machine (see module doc).

    Args:
        model (dict): ``fingerprint`` and ``parameters`` of :func:`model_fingerprint`,
            ``masked``, and ``config`` (where it came from, for messages).
        execution (str): MASK.EXECUTION the times were measured with.
        input_shape (list[int]): [N, 3, H, W].
        device (dict): ``type`` ('cpu' or 'cuda'), ``name``, ``threads`` (CPU threads),
            ``tf32`` (``utils.runtime.tf32_flags`` while measuring; older profiles lack it).
        densities (list[float]): mask densities of the segment times, increasing.
        exit1 (Timing): stem, layer1 and exit 1.
        segments (list[list[Timing]]): segments 1-3 (after exits 1-3), one Timing per
            density.
        finish (Timing): upsampling the logits to input size and taking the argmax.
        torch_version (str): for the record.
        repeats (int): timed rounds per figure.
    """
    model: dict
    execution: str
    input_shape: list
    device: dict
    densities: list
    exit1: Timing
    segments: list
    finish: Timing
    torch_version: str = torch.__version__
    repeats: int = 0
    format: str = FORMAT
    comment: str = field(default='')

    def segment_ms(self, segment, density, high=True):
        """Predicted milliseconds of ``segment`` (1-3) at mask ``density``: linear
        interpolation between the measured densities (the high quantile by default)."""
        times = [t.high_ms if high else t.ms for t in self.segments[segment - 1]]
        return float(np.interp(density, self.densities, times))

    def exit_ms(self, densities=(1.0, 1.0, 1.0), high=False):
        """Predicted milliseconds until each exit's labels, at the given densities."""
        total = self.exit1.high_ms if high else self.exit1.ms
        end = self.finish.high_ms if high else self.finish.ms
        times = [total + end]
        for j, d in enumerate(densities, start=1):
            total += self.segment_ms(j, d, high)
            times.append(total + end)
        return times

    def check(self, model, x):
        """Raise ProfileMismatchError unless this profile was measured for ``model``
        (architecture, MASK.EXECUTION), ``x``'s shape and device, and the current
        number of CPU threads (on the CPU) or TF32 flags (on CUDA)."""
        fingerprint, parameters = model_fingerprint(model)
        fix = ('measure a profile for it with tools/profile_latency.py (same --cfg, '
               '--shape, --device and --threads as the run)')
        if fingerprint != self.model['fingerprint']:
            raise ProfileMismatchError(
                f"the latency profile was measured for another model ({self.model['config']}: "
                f"{self.model['parameters']:,} parameters, fingerprint "
                f"{self.model['fingerprint']}); this model has {parameters:,} parameters, "
                f'fingerprint {fingerprint}: {fix}')
        execution = getattr(model, 'execution', self.execution)
        if self.model['masked'] and execution != self.execution:
            raise ProfileMismatchError(
                f'the latency profile was measured with MASK.EXECUTION {self.execution}, '
                f'the model runs {execution}: {fix}')
        if list(x.shape) != list(self.input_shape):
            raise ProfileMismatchError(
                f'the latency profile was measured for input shape {list(self.input_shape)} '
                f'(N, C, H, W), this input is {list(x.shape)}: {fix}')
        here = {'type': x.device.type, 'name': device_name(x.device)}
        for key, value in here.items():
            if self.device[key] != value:
                raise ProfileMismatchError(
                    f"the latency profile was measured on device {self.device['type']} "
                    f"({self.device['name']}), this input is on {here['type']} "
                    f"({here['name']}): {fix}")
        measured_tf32 = self.device.get('tf32')
        if x.device.type == 'cuda' and measured_tf32 not in (None, tf32_flags()):
            raise ProfileMismatchError(
                f'the latency profile was measured with TF32 {measured_tf32}, this process '
                f'runs with {tf32_flags()} (CUDNN.ALLOW_TF32): use the same setting, or {fix}')
        if x.device.type == 'cpu' and self.device['threads'] != torch.get_num_threads():
            raise ProfileMismatchError(
                f"the latency profile was measured with {self.device['threads']} CPU threads, "
                f'torch now uses {torch.get_num_threads()}: set the threads '
                f"(torch.set_num_threads({self.device['threads']}), --threads) or {fix}")

    def save(self, path):
        """Write the profile as JSON (atomically)."""
        atomic_write_text(path, json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path):
        """Read a profile written by :meth:`save`.

        Raises:
            ProfileMismatchError: the file is missing or is not a latency profile.
        """
        if not os.path.isfile(path):
            raise ProfileMismatchError(f'latency profile {path} does not exist: write one '
                                       'with tools/profile_latency.py --out ' + path)
        try:
            with open(path) as f:
                data = json.load(f)
            if data.get('format') != FORMAT:
                raise ValueError(f"format {data.get('format')!r}")
            data['exit1'] = Timing(**data['exit1'])
            data['finish'] = Timing(**data['finish'])
            data['segments'] = [[Timing(**t) for t in seg] for seg in data['segments']]
            return cls(**data)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ProfileMismatchError(f'{path} is not a latency profile of '
                                       f'tools/profile_latency.py ({FORMAT}): {e}') from None


def _timed(fn, device):
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - start


@torch.no_grad()
def measure_profile(model, input_shape, densities=DENSITIES, repeats=5, warmup=1,
                    smoothness=16, config='', device=None, progress=True):
    """Time ``model``'s parts on random inputs; segments under smooth-noise masks of each
    density (as ``tools/benchmark.py`` does), so random weights can be profiled.

    The rounds interleave the densities, so that a change of machine load hits them
    alike.

    Args:
        model (AnytimeHRNet): the network, in eval mode, on ``device``.
        input_shape (sequence[int]): (N, 3, H, W) of the inputs it will get.
        densities (sequence[float]): mask densities to time (an unmasked model is timed
            at density 1 only).
        repeats, warmup (int): timed and untimed rounds.
        smoothness (int): correlation length of the noise masks, at logits resolution.
        config (str): where the model came from, kept for error messages.
        device (torch.device or None): default: the model's.
        progress (bool): show a progress bar.

    Returns:
        LatencyProfile
    """
    device = device or next(model.parameters()).device
    to_inference(model)
    masked = bool(model.use_masks)
    densities = sorted(set(float(d) for d in densities)) if masked else [1.0]
    x = torch.randn(*input_shape, device=device)
    n, _, h, w = input_shape
    state = model.first_exit(x)
    size = tuple(state.logits.shape[-2:])
    full = SmoothNoiseMasks(n, size, 1.0).to(device)
    starts = [state]
    for _ in range(NUM_EXITS - 2):  # states after exits 1..3, reached at full density
        starts.append(model.next_exit(starts[-1], full))
    masks = [[SmoothNoiseMasks(n, size, d, smoothness, seed=j * 100 + i).to(device)
              for i, d in enumerate(densities)] for j in range(1, NUM_EXITS)]
    exit1, finished = [], []
    segments = [[[] for _ in densities] for _ in range(NUM_EXITS - 1)]
    rounds = show_progress(range(warmup + repeats), 'profile', is_main=progress)
    for round_ in rounds:
        state, t1 = _timed(lambda: model.first_exit(x), device)
        _, tf = _timed(lambda: finish(state.logits, (h, w)), device)
        times = []
        for j in range(1, NUM_EXITS):
            for i in range(len(densities)):
                _, t = _timed(lambda: model.next_exit(starts[j - 1], masks[j - 1][i]), device)
                times.append((j, i, t))
        if round_ < warmup:
            continue
        exit1.append(t1)
        finished.append(tf)
        for j, i, t in times:
            segments[j - 1][i].append(t)
    fingerprint, parameters = model_fingerprint(model)
    return LatencyProfile(
        model={'fingerprint': fingerprint, 'parameters': parameters, 'masked': masked,
               'config': config},
        execution=model.execution,
        input_shape=list(input_shape),
        device={'type': device.type, 'name': device_name(device),
                'threads': torch.get_num_threads() if device.type == 'cpu' else None,
                'tf32': tf32_flags()},
        densities=densities,
        exit1=Timing.of(exit1),
        segments=[[Timing.of(t) for t in seg] for seg in segments],
        finish=Timing.of(finished),
        repeats=repeats)


def profile_table(profile):
    """Markdown table of a profile's median (and high-quantile) milliseconds."""
    lines = ['| part | ' + ' | '.join(f'density {d:g}' for d in profile.densities) + ' |',
             '|---|' + '---|' * len(profile.densities)]
    for j, seg in enumerate(profile.segments, start=1):
        lines.append(f'| segment {j} | ' + ' | '.join(f'{t.ms:.0f} ({t.high_ms:.0f})'
                                                     for t in seg) + ' |')
    return '\n'.join([f'exit 1: {profile.exit1.ms:.0f} ms ({profile.exit1.high_ms:.0f}), '
                      f'labels at input size: {profile.finish.ms:.0f} ms '
                      f'({profile.finish.high_ms:.0f}); median (90th percentile) ms'] + lines)
