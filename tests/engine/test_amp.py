"""TRAIN.AMP / TEST.AMP: autocast steps, the gradient scaler and its checkpoint state."""
import pytest
import torch

from engine.amp import MixedPrecision
from utils.runtime import amp_dtype, autocast
from engine.criterion import FullModel, MultiExitLoss
from engine.epoch import NonFiniteLossError, train_one_epoch
from engine.checkpoints import TrainState, load_checkpoint, save_checkpoint
from standin import StandIn
from test_epoch import NaNAtExit2, batches
from utils.distributed import DistContext

CPU = torch.device('cpu')


def run_epoch(full, data, precision):
    opt = torch.optim.SGD(full.parameters(), lr=0.1)
    return train_one_epoch(full, data, opt, epoch=0, base_lr=0.1, max_it=100, first_it=0,
                           ctx=DistContext(), precision=precision)


def test_dtypes_and_scaler_per_device():
    assert amp_dtype(torch.device('cuda')) == torch.float16
    assert amp_dtype(CPU) == torch.bfloat16
    assert MixedPrecision(CPU, enabled=True).scaler is None  # bf16 needs none
    assert MixedPrecision(CPU, enabled=False, scaler=True).scaler is None
    with autocast(CPU, True):
        assert torch.is_autocast_enabled('cpu')
    with autocast(CPU, False):
        assert not torch.is_autocast_enabled('cpu')


def test_amp_epoch_computes_in_bfloat16_and_trains():
    torch.manual_seed(0)
    full = FullModel(StandIn(), MultiExitLoss([1] * 4, 3))
    dtypes = []
    full.model.stem.register_forward_hook(lambda m, i, out: dtypes.append(out.dtype))
    data = batches(4)
    first = run_epoch(full, data, MixedPrecision(CPU, enabled=True))
    for _ in range(4):
        last = run_epoch(full, data, MixedPrecision(CPU, enabled=True))
    assert set(dtypes) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in full.parameters())
    assert last['loss'] < first['loss'] and first['skipped_steps'] == 0


def test_scaler_skips_a_step_with_infinite_gradients_without_error():
    torch.manual_seed(0)
    full = FullModel(StandIn(), MultiExitLoss([1] * 4, 3))
    calls = []

    def infinite_on_second_step(grad):
        calls.append(1)
        return grad * float('inf') if len(calls) == 2 else grad

    full.model.exit3.weight.register_hook(infinite_on_second_step)
    precision = MixedPrecision(CPU, enabled=True, scaler=True)
    start = precision.scaler.get_scale()
    stats = run_epoch(full, batches(3), precision)
    assert stats['skipped_steps'] == 1 and stats['global_step'] == 3
    assert precision.scaler.get_scale() == start * 0.5
    assert all(torch.isfinite(p).all() for p in full.parameters())


def test_non_finite_loss_stays_an_error_under_amp():
    full = FullModel(NaNAtExit2(bad_call=2), MultiExitLoss([1] * 4, 3))
    with pytest.raises(NonFiniteLossError, match='exit 2'):
        run_epoch(full, batches(3), MixedPrecision(CPU, enabled=True, scaler=True))


def test_scaler_state_is_saved_and_restored_with_the_run(tmp_path):
    torch.manual_seed(0)
    full = FullModel(StandIn(), MultiExitLoss([1] * 4, 3))
    opt = torch.optim.SGD(full.parameters(), lr=0.1, momentum=0.9)
    precision = MixedPrecision(CPU, enabled=True, scaler=True)
    precision.scaler.scale(torch.ones(()))  # the scaler starts lazily
    precision.scaler.update(1024.0)  # a scale the run reached
    path = str(tmp_path / 'checkpoint.pth.tar')
    save_checkpoint(path, TrainState(epoch=1), full, opt, precision)
    saved = torch.load(path, weights_only=True)  # plain numbers only
    assert saved['scaler']['scale'] == 1024.0

    fresh = MixedPrecision(CPU, enabled=True, scaler=True)
    load_checkpoint(path, full, torch.optim.SGD(full.parameters(), lr=0.1, momentum=0.9),
                    fresh)
    assert fresh.scaler.get_scale() == 1024.0

    save_checkpoint(path, TrainState(epoch=1), full, opt, MixedPrecision(CPU, enabled=True))
    assert 'scaler' not in torch.load(path, weights_only=True)  # bf16: nothing to keep
