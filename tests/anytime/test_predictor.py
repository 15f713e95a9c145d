"""The anytime predictor: it never starts a part its profile says will not fit, its
unlimited output is the model's, and profiles made for something else are refused."""
import os
import sys
import time

import pytest
import torch

from anytime.predictor import AnytimePredictor, budget_grid, evaluate_predictor
from anytime.latency import LatencyProfile, ProfileMismatchError, Timing, measure_profile, \
    model_fingerprint
from models.model_anytime import NUM_EXITS
from models.sparse.noise_masks import SmoothNoiseMasks
from utils.errors import UserError
from utils.runtime import device_name

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'models'))
from tiny import tiny_model  # noqa: E402

SHAPE = (1, 3, 32, 64)
# Planned times, far above what the tiny model takes even on a crowded machine, so that
# the plan alone decides.
EXIT1_MS, FINISH_MS = 100e3, 10e3
SEGMENT_MS = {0.0: 10e3, 1.0: 210e3}  # linear in the density


def fake_profile(model, shape=SHAPE):
    fingerprint, parameters = model_fingerprint(model)
    seg = [Timing(SEGMENT_MS[d], SEGMENT_MS[d]) for d in (0.0, 1.0)]
    return LatencyProfile(
        model={'fingerprint': fingerprint, 'parameters': parameters,
               'masked': model.use_masks, 'config': 'tiny'},
        execution=model.execution, input_shape=list(shape),
        device={'type': 'cpu', 'name': device_name(torch.device('cpu')),
                'threads': torch.get_num_threads()},
        densities=[0.0, 1.0], exit1=Timing(EXIT1_MS, EXIT1_MS), segments=[seg] * 3,
        finish=Timing(FINISH_MS, FINISH_MS))


def segments_run(model, call):
    """``call()``'s result and the segments it ran (model.next_exit calls)."""
    ran, next_exit = [], model.next_exit

    def recording(state, masks=None):
        ran.append(state.exit)
        return next_exit(state, masks)
    model.next_exit = recording
    try:
        return call(), ran
    finally:
        del model.next_exit


@pytest.mark.parametrize('variant', ['adpc', 'rh'])
def test_never_starts_a_segment_that_the_profile_says_will_not_fit(variant):
    torch.manual_seed(0)
    model = tiny_model(variant).eval()
    x = torch.randn(SHAPE)
    densities = (0.5, 0.25, 0.75) if model.use_masks else (1.0, 1.0, 1.0)
    masks = [SmoothNoiseMasks(1, (8, 16), d, 4, seed=j) for j, d in enumerate(densities)]
    predictor = AnytimePredictor(model, fake_profile(model))
    # Planned end of each exit: exit 1 plus the segments so far, plus the final upsampling.
    ends, total = [], EXIT1_MS
    for k in range(NUM_EXITS):
        if k:
            total += SEGMENT_MS[0.0] + densities[k - 1] * (SEGMENT_MS[1.0] - SEGMENT_MS[0.0])
        ends.append(total + FINISH_MS)
    for budget in [50e3, ends[0] - 1, ends[0], ends[1] - 1, ends[1] + 1, ends[2] + 1,
                   ends[3] - 1, ends[3], 1e6]:
        result, ran = segments_run(model, lambda: predictor(x, budget, masks))
        fitting = sum(end <= budget for end in ends)
        assert result.exit == fitting, (budget, ends)
        assert ran == list(range(1, fitting))  # no segment beyond the last exit
        assert result.predicted_ms == pytest.approx(ends[:fitting])
        if fitting:
            assert result.labels.shape == (1, 32, 64)
            assert result.logits.shape == (1, 19, 32, 64)
        else:
            assert result.labels is None
        assert result.elapsed_ms < EXIT1_MS  # the tiny model is far faster than the plan


@pytest.mark.parametrize('variant', ['adpc', 'ee'])
def test_unlimited_budget_equals_the_models_last_output(variant):
    model = tiny_model(variant).eval()
    x = torch.randn(SHAPE)
    result = AnytimePredictor(model, fake_profile(model))(x)
    with torch.no_grad():
        last = torch.nn.functional.interpolate(model(x)[-1], size=SHAPE[-2:], mode='bilinear',
                                               align_corners=False)
    assert result.exit == NUM_EXITS
    assert torch.equal(result.logits, last)
    assert torch.equal(result.labels, last.argmax(1))


def test_the_clock_stops_a_call_that_fell_behind_its_plan():
    """A machine slower than when profiled: exit 1 takes over 300 ms against 1 ms
    planned. By the plan, segment 1 (60 ms) would end at 62 ms, well inside 350 ms; by
    the clock it would end after 361 ms, so it must not start."""
    model = tiny_model('adpc').eval()
    profile = fake_profile(model)
    profile.exit1 = profile.finish = Timing(1.0, 1.0)
    profile.segments = [[Timing(60.0, 60.0), Timing(60.0, 60.0)]] * 3
    model.exit1.register_forward_hook(lambda *a: time.sleep(0.3))
    result, ran = segments_run(model, lambda: AnytimePredictor(model, profile)(
        torch.randn(SHAPE), 350))
    assert (result.exit, ran) == (1, [])


def test_profiles_made_for_another_shape_model_or_thread_count_are_refused(tmp_path):
    model = tiny_model('adpc').eval()
    profile = fake_profile(model)
    path = str(tmp_path / 'profile.json')
    profile.save(path)
    profile = LatencyProfile.load(path)
    predictor = AnytimePredictor(model, profile)
    with pytest.raises(ProfileMismatchError, match=r'input shape \[1, 3, 32, 64\].*\[1, 3, 64, 64\]'):
        predictor(torch.randn(1, 3, 64, 64))
    with pytest.raises(ProfileMismatchError, match='another model'):
        AnytimePredictor(tiny_model('ca').eval(), profile)(torch.randn(SHAPE))
    model.execution = 'dense'
    with pytest.raises(ProfileMismatchError, match='MASK.EXECUTION auto'):
        predictor(torch.randn(SHAPE))
    model.execution = 'auto'
    profile.device['threads'] += 1
    with pytest.raises(ProfileMismatchError, match='CPU threads'):
        predictor(torch.randn(SHAPE))
    (tmp_path / 'other.json').write_text('{"results": []}')
    with pytest.raises(UserError, match='not a latency profile'):
        LatencyProfile.load(str(tmp_path / 'other.json'))


def test_measured_profile_round_trips_and_drives_the_evaluation(tmp_path):
    torch.set_num_threads(1)
    model = tiny_model('adpc').eval()
    profile = measure_profile(model, SHAPE, densities=(0.0, 0.5, 1.0), repeats=2,
                              progress=False)
    assert profile.densities == [0.0, 0.5, 1.0]
    assert len(profile.segments) == 3 and all(len(s) == 3 for s in profile.segments)
    assert all(t.high_ms >= t.ms > 0 for s in profile.segments for t in s)
    profile.save(str(tmp_path / 'p.json'))
    loaded = LatencyProfile.load(str(tmp_path / 'p.json'))
    assert loaded == profile
    budgets = budget_grid(loaded, 5)
    report = evaluate_predictor(AnytimePredictor(model, loaded), torch.randn(SHAPE), budgets,
                                [(0.5, 0.5, 0.5)])
    assert len(report['calls']) == 5
    assert report['full_equal'] == [True]
    assert report['calls'][0]['exit'] == 0  # half of exit 1's time: nothing fits
