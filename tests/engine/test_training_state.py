"""Resume logic: checkpoints, phases of a run, frozen parts."""
import types

import numpy as np
import pytest
import torch

from config import config
from engine.criterion import FullModel, MultiExitLoss
from engine.checkpoints import TrainState, load_checkpoint, save_checkpoint
from engine.train import plan_phases
from standin import StandIn
from utils.distributed import DistContext
from utils.errors import CheckpointError, ConfigError


def trained_pair(seed=0):
    torch.manual_seed(seed)
    full = FullModel(StandIn(), MultiExitLoss([1] * 4, 3, class_weights=[1.0, 2.0, 3.0]))
    opt = torch.optim.SGD(full.parameters(), lr=0.1, momentum=0.9)
    total, _, _ = full(torch.randn(2, 3, 16, 16), torch.randint(0, 3, (2, 16, 16)))
    total.backward()
    opt.step()
    return full, opt


def test_checkpoint_round_trip_restores_everything(tmp_path):
    full, opt = trained_pair(0)
    path = str(tmp_path / 'checkpoint.pth.tar')
    save_checkpoint(path, TrainState(epoch=3, iteration=42, best_miou=0.5), full, opt)
    saved = torch.load(path, weights_only=True)
    assert set(saved) == {'epoch', 'iteration', 'best_mIoU', 'state_dict', 'optimizer'}
    assert 'loss.criterion.weight' in saved['state_dict']

    fresh, fresh_opt = trained_pair(1)
    state = load_checkpoint(path, fresh, fresh_opt)
    assert state == TrainState(epoch=3, iteration=42, best_miou=0.5)
    for key, value in full.state_dict().items():
        assert torch.equal(value, fresh.state_dict()[key]), key
    momentum = [fresh_opt.state[p]['momentum_buffer'] for p in fresh.parameters()]
    expected = [opt.state[p]['momentum_buffer'] for p in full.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(momentum, expected))


def test_checkpoint_with_numpy_counters_loads_with_weights_only(tmp_path):
    full, opt = trained_pair()
    path = str(tmp_path / 'checkpoint.pth.tar')
    # Counters as numpy may hand them over (a mean of IoUs, a step count).
    state = TrainState(epoch=np.int64(2), iteration=np.int64(12), best_miou=np.float64(0.25))
    save_checkpoint(path, state, full, opt)
    saved = torch.load(path, weights_only=True)
    assert [type(saved[k]) for k in ('epoch', 'iteration', 'best_mIoU')] == [int, int, float]
    assert load_checkpoint(path, trained_pair(1)[0]) == TrainState(2, 12, 0.25)


def test_checkpoint_of_another_model_is_a_clear_error(tmp_path):
    full, opt = trained_pair()
    path = str(tmp_path / 'checkpoint.pth.tar')
    save_checkpoint(path, TrainState(), full, opt)
    other = FullModel(StandIn(classes=5), MultiExitLoss([1] * 4, 5))
    with pytest.raises(CheckpointError, match=r'checkpoint\.pth\.tar does not fit .*AUTO_RESUME'):
        load_checkpoint(path, other)


@pytest.mark.parametrize('change', ['extra', 'missing'])
def test_resuming_refuses_a_checkpoint_with_an_extra_or_a_missing_key(tmp_path, change):
    full, opt = trained_pair()
    path = str(tmp_path / 'checkpoint.pth.tar')
    save_checkpoint(path, TrainState(), full, opt)
    checkpoint = torch.load(path, weights_only=True)
    if change == 'extra':
        checkpoint['state_dict']['model.exit4.weight'] = torch.zeros(1)
    else:
        del checkpoint['state_dict']['model.bn.running_var']
    torch.save(checkpoint, path)
    fresh, _ = trained_pair(1)
    problem = 'Unexpected key' if change == 'extra' else 'Missing key'
    with pytest.raises(CheckpointError, match=r'(?s)does not fit .*' + problem):
        load_checkpoint(path, fresh)


def test_optimizer_of_another_parameter_set_is_a_clear_error(tmp_path):
    full, opt = trained_pair()
    path = str(tmp_path / 'checkpoint.pth.tar')
    save_checkpoint(path, TrainState(), full, opt)
    fresh, _ = trained_pair(1)
    exits_only = torch.optim.SGD(fresh.model.exit1.parameters(), lr=0.1)
    with pytest.raises(CheckpointError, match='EE_ONLY'):
        load_checkpoint(path, fresh, exits_only)


def fake_loader(size):
    return types.SimpleNamespace(dataset=list(range(size)))


def phases_cfg(**train):
    cfg = config.clone()
    cfg.defrost()
    cfg.TRAIN.BATCH_SIZE_PER_GPU = 2
    for key, value in train.items():
        cfg.TRAIN[key] = value
    return cfg


def test_phases_main_then_extra_set_at_extra_lr():
    cfg = phases_cfg(END_EPOCH=4, EXTRA_EPOCH=2, LR=0.01, EXTRA_LR=0.001)
    cfg.DATASET.EXTRA_TRAIN_SET = 'list/cityscapes/trainval.lst'
    sizes = {cfg.DATASET.TRAIN_SET: 20, cfg.DATASET.EXTRA_TRAIN_SET: 28}
    main, extra = plan_phases(cfg, DistContext(world_size=2), lambda p: fake_loader(sizes[p]))
    assert (main.first_epoch, main.end_epoch, main.base_lr, main.epoch_iters) == (0, 4, 0.01, 5)
    assert main.first_lr == 0.01 and extra.first_lr == 0.001
    assert main.max_it == 20
    assert (extra.first_epoch, extra.end_epoch, extra.base_lr, extra.epoch_iters) == (4, 6, 0.001, 7)
    assert extra.max_it == 14


@pytest.mark.parametrize('key', ['EE_ONLY', 'ALLE_ONLY'])
def test_exit_fine_tuning_starts_at_extra_lr_then_follows_lr_as_the_original(key):
    cfg = phases_cfg(END_EPOCH=2, LR=0.01, EXTRA_LR=0.003, **{key: True})
    (main,) = plan_phases(cfg, DistContext(), lambda p: fake_loader(8))
    assert (main.first_lr, main.base_lr) == (0.003, 0.01)
    cfg.TRAIN.EE_ONLY_LR = 'extra'
    (main,) = plan_phases(cfg, DistContext(), lambda p: fake_loader(8))
    assert (main.first_lr, main.base_lr) == (0.003, 0.003)


def test_extra_phase_of_exit_fine_tuning_keeps_extra_lr():
    cfg = phases_cfg(END_EPOCH=2, EXTRA_EPOCH=1, EE_ONLY=True, LR=0.01, EXTRA_LR=0.003)
    cfg.DATASET.EXTRA_TRAIN_SET = 'list/cityscapes/trainval.lst'
    _, extra = plan_phases(cfg, DistContext(), lambda p: fake_loader(8))
    assert (extra.first_lr, extra.base_lr) == (0.003, 0.003)


def test_extra_epochs_without_extra_set_name_both_keys():
    cfg = phases_cfg(END_EPOCH=2, EXTRA_EPOCH=1)
    with pytest.raises(ConfigError, match=r'EXTRA_EPOCH.*EXTRA_TRAIN_SET'):
        plan_phases(cfg, DistContext(), lambda p: fake_loader(8))


def test_a_resume_before_any_validation_reports_no_best_miou():
    assert TrainState(epoch=2, iteration=8).summary() == \
        '2 epoch(s) done, 8 steps, no validation mIoU measured yet'
    assert TrainState(epoch=2, iteration=8, best_miou=0.4567).summary() == \
        '2 epoch(s) done, 8 steps, best mean mIoU 45.67'
