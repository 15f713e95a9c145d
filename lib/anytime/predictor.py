"""Inference under a time budget: run the segments that fit, return the last exit.

    profile = LatencyProfile.load('profile.json')        # tools/profile_latency.py
    predictor = AnytimePredictor(model, profile)
    result = predictor(image, budget_ms=120)
    result.labels, result.exit, result.elapsed_ms, result.logits

Before each part of the network the predictor predicts its time from the profile (for a
masked segment, at the density of the mask the previous exit produced) and runs it only
if it fits in what is left of the budget, with the time to turn the logits into labels
at input resolution reserved. It plans with the profile's 90th-percentile times; the
clock decides instead where the call has already fallen behind that plan (a machine
slower than when profiled), so that the deadline is kept. While the machine runs as fast
as when profiled, the decision depends only on the budget and the masks, so a larger
budget never reaches an earlier exit.
"""
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from models.layout import to_inference
from models.model_anytime import NUM_EXITS
from utils.runtime import sync
from .latency import finish


@dataclass
class AnytimeResult:
    """What an anytime call returns.

    Attributes:
        exit (int): the last exit that finished, 1-4; 0 when not even exit 1 fitted.
        labels (Tensor or None): N x H x W train ids at input resolution.
        logits (Tensor or None): N x C x H x W logits of that exit at input resolution.
        elapsed_ms (float): wall-clock time of the call.
        densities (list[float]): mask density of each segment that ran (1.0 unmasked).
        predicted_ms (list[float]): planned time until each exit that ran.
    """
    exit: int
    labels: torch.Tensor = None
    logits: torch.Tensor = None
    elapsed_ms: float = 0.0
    densities: list = field(default_factory=list)
    predicted_ms: list = field(default_factory=list)


class AnytimePredictor:
    """Runs an anytime network within a time budget (see module doc).

    Args:
        model (AnytimeHRNet): the network, in eval mode, on the device of the profile.
        profile (LatencyProfile): measured for this model, input shape, device and
            threads; checked at every call (:class:`anytime.latency.ProfileMismatchError`).
    """

    def __init__(self, model, profile):
        self.model = to_inference(model)
        self.profile = profile

    @torch.no_grad()
    def __call__(self, image, budget_ms=None, masks=None):
        """Predict ``image`` (N x 3 x H x W, normalised) within ``budget_ms``.

        Args:
            image (Tensor): the input, on the model's device.
            budget_ms (float or None): time budget; None runs every exit.
            masks (list or None): benchmarks and tests: mask providers of segments 1-3
                that replace the confidence masks (see ``AnytimeHRNet.iter_exits``).

        Returns:
            AnytimeResult
        """
        self.profile.check(self.model, image)
        budget = np.inf if budget_ms is None else float(budget_ms)
        profile = self.profile
        start = time.perf_counter()

        def elapsed_ms():
            sync(image.device)
            return (time.perf_counter() - start) * 1000

        reserve = profile.finish.high_ms
        planned = profile.exit1.high_ms
        if planned + reserve > budget:
            return AnytimeResult(0, elapsed_ms=elapsed_ms())
        state = self.model.first_exit(image)
        predicted, densities = [planned + reserve], []
        while state.exit < NUM_EXITS:
            segment = state.exit
            seg_masks = masks[segment - 1] if masks is not None else \
                self.model.segment_masks(state.logits)
            density = 1.0 if seg_masks is None or not self.model.use_masks else \
                seg_masks.at(state.logits.shape[-2:]).mean().item()
            cost = profile.segment_ms(segment, density)
            if max(planned, elapsed_ms()) + cost + reserve > budget:
                break
            state = self.model.next_exit(state, seg_masks)
            planned += cost
            predicted.append(planned + reserve)
            densities.append(density)
        logits, labels = finish(state.logits, image.shape[-2:])
        return AnytimeResult(state.exit, labels, logits, elapsed_ms(), densities, predicted)


def budget_grid(profile, count=24, density_sets=((1.0, 1.0, 1.0),), low=0.5, high=1.3):
    """``count`` budgets (ms), geometrically spaced from ``low`` x the predicted time of
    exit 1 to ``high`` x the planned time of the full network at the slowest of
    ``density_sets`` (the predictor plans with the profile's high quantile)."""
    full = max(profile.exit_ms(d, high=True)[-1] for d in density_sets)
    return np.geomspace(low * profile.exit_ms()[0], high * full, count).tolist()


@torch.no_grad()
def evaluate_predictor(predictor, image, budgets, density_sets, smoothness=16, lateness=0.1,
                       progress=None):
    """Run ``predictor`` at every budget under noise masks of each density set and check
    the three promises of a deadline predictor.

    Args:
        predictor (AnytimePredictor): on a masked or unmasked model.
        image (Tensor): N x 3 x H x W input of the profile's shape.
        budgets (list[float]): budgets in ms, increasing.
        density_sets (list[tuple]): mask densities of segments 1-3 per set.
        smoothness (int): correlation length of the noise masks.
        lateness (float): a call is late when it takes more than budget x (1 + this).
        progress (callable or None): called with each call's row.

    Returns:
        dict: ``calls`` (one row per call: densities, budget, exit, elapsed, late),
        ``late_fraction``, ``monotonic`` (the exit never decreases with the budget, per
        density set), ``full_equal`` and ``full_max_abs_diff`` (an unlimited call
        against the model's last output at input size, per density set).
    """
    from models.sparse.noise_masks import SmoothNoiseMasks
    model = predictor.model
    n = image.shape[0]
    size = model.first_exit(image).logits.shape[-2:]
    calls, monotonic, full_equal, full_diff = [], [], [], []
    for densities in density_sets:
        masks = [SmoothNoiseMasks(n, size, d, smoothness, seed=j).to(image.device)
                 for j, d in enumerate(densities, start=1)]
        exits = []
        for budget in budgets:
            result = predictor(image, budget, masks)
            row = {'densities': list(densities), 'budget_ms': budget, 'exit': result.exit,
                   'elapsed_ms': result.elapsed_ms,
                   'late': result.elapsed_ms > budget * (1 + lateness)}
            calls.append(row)
            exits.append(result.exit)
            if progress:
                progress(row)
        monotonic.append(all(a <= b for a, b in zip(exits, exits[1:])))
        result = predictor(image, None, masks)
        reference, _ = finish(model(image, masks=masks)[-1], image.shape[-2:])
        full_equal.append(result.exit == NUM_EXITS and torch.equal(result.logits, reference))
        full_diff.append((result.logits - reference).abs().max().item())
    return {'calls': calls, 'late_fraction': sum(c['late'] for c in calls) / len(calls),
            'monotonic': monotonic, 'full_equal': full_equal, 'full_max_abs_diff': full_diff}
