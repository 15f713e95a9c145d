"""TRAIN.AMP / TEST.AMP: autocast steps, the gradient scaler and its checkpoint state,
and what a run under AMP skips and when it stops."""
import copy
import math
import re

import pytest
import torch

from engine.amp import MAX_NON_FINITE_RUN, MIN_LOSS_SCALE, MixedPrecision, MixedPrecisionError
from engine.schedule import poly_lr
from utils.errors import UserError
from utils.runtime import amp_dtype, autocast
from engine.criterion import FullModel, MultiExitLoss
from engine.epoch import NonFiniteLossError, train_one_epoch
from engine.checkpoints import TrainState, load_checkpoint, save_checkpoint
from standin import StandIn
from test_epoch import batches
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


class InfiniteInputAt(StandIn):
    """A stand-in whose input is infinite on the given forward calls (1-based): the
    stem overflows, BatchNorm's batch statistics and hence its running statistics
    become NaN, and so does every exit's loss."""

    def __init__(self, bad_calls):
        super().__init__()
        self.calls, self.bad_calls = 0, set(bad_calls)

    def forward(self, x, stop_at=4):
        self.calls += 1
        return super().forward(x * float('inf') if self.calls in self.bad_calls else x,
                               stop_at)


def step_lrs(optimizer):
    """The learning rate of every optimiser step taken, as it happens."""
    lrs = []
    optimizer.register_step_pre_hook(lambda opt, a, k: lrs.append(opt.param_groups[0]['lr']))
    return lrs


def test_one_non_finite_loss_under_amp_is_skipped_counted_and_logged(caplog):
    torch.manual_seed(0)
    net = InfiniteInputAt(bad_calls=[2])
    reference = StandIn()
    reference.load_state_dict(net.state_dict())
    full, ref = (FullModel(m, MultiExitLoss([1] * 4, 3)) for m in (net, reference))
    data = batches(3)
    opt = torch.optim.SGD(full.parameters(), lr=0.1)
    lrs = step_lrs(opt)
    with caplog.at_level('INFO', logger='engine.epoch'):
        stats = train_one_epoch(full, data, opt, epoch=0, base_lr=0.1, max_it=100,
                                first_it=0, ctx=DistContext(), print_freq=1,
                                precision=MixedPrecision(CPU, enabled=True))
    assert stats['non_finite_steps'] == 1 and stats['skipped_steps'] == 0
    assert stats['global_step'] == 3 and math.isfinite(stats['loss'])
    # The schedule counts the skipped step: the third batch trains at poly(1), not poly(0).
    assert lrs == pytest.approx([0.1, poly_lr(0.1, 1, 100)])
    skipped = [r.message for r in caplog.records if r.levelname == 'WARNING']
    assert len(skipped) == 1 and 'iteration 1 of the epoch' in skipped[0]
    assert 'exit 1 is nan' in skipped[0] and '1 in a row' in skipped[0]
    iters = [r.message for r in caplog.records if 'Iter [' in r.message]
    assert 'skipped' not in iters[0] and 'skipped 1 ' in iters[1] and 'skipped 1 ' in iters[2]

    # Nothing of the skipped step remains, BatchNorm's running statistics included: the
    # result is that of the two good steps alone, bit for bit (same operations, same
    # order, on the CPU).
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    for first_it, batch in ((0, data[0]), (2, data[2])):
        train_one_epoch(ref, [batch], ref_opt, epoch=0, base_lr=0.1, max_it=100,
                        first_it=first_it, ctx=DistContext(),
                        precision=MixedPrecision(CPU, enabled=True))
    for (name, a), b in zip(full.state_dict().items(), ref.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize('bad_calls,stops', [
    (range(2, 12), True),  # 10 in a row, from iteration 1 on
    (list(range(2, 11)) + [12], False),  # 9 in a row, then a finite loss ends the run
])
def test_a_run_of_non_finite_losses_stops_training_naming_its_first_iteration(bad_calls,
                                                                             stops):
    torch.manual_seed(0)
    full = FullModel(InfiniteInputAt(bad_calls), MultiExitLoss([1] * 4, 3))
    precision = MixedPrecision(CPU, enabled=True)
    if not stops:
        assert run_epoch(full, batches(13), precision)['non_finite_steps'] == 10
        return
    with pytest.raises(NonFiniteLossError) as error:
        run_epoch(full, batches(13), precision)
    message = str(error.value)
    assert f'{MAX_NON_FINITE_RUN} steps in a row' in message and '\n' not in message
    assert 'the first at epoch 1, iteration 1 of the epoch (schedule iteration 1)' in message


def test_a_run_of_non_finite_losses_spans_epochs():
    torch.manual_seed(0)
    full = FullModel(InfiniteInputAt(range(6, 16)), MultiExitLoss([1] * 4, 3))
    precision = MixedPrecision(CPU, enabled=True)
    opt = torch.optim.SGD(full.parameters(), lr=0.1)
    first = train_one_epoch(full, batches(10), opt, epoch=0, base_lr=0.1, max_it=100,
                            first_it=0, ctx=DistContext(), precision=precision)
    assert first['non_finite_steps'] == 5
    with pytest.raises(NonFiniteLossError, match=r'first at epoch 1, iteration 5 '):
        train_one_epoch(full, batches(10), opt, epoch=1, base_lr=0.1, max_it=100,
                        first_it=10, ctx=DistContext(), precision=precision)


def always_infinite_gradients(module):
    module.exit3.weight.register_hook(lambda grad: grad * float('inf'))


def test_an_epoch_the_scaler_skipped_entirely_stops_with_one_line():
    torch.manual_seed(0)
    full = FullModel(StandIn(), MultiExitLoss([1] * 4, 3))
    always_infinite_gradients(full.model)
    before = copy.deepcopy(list(full.parameters()))
    with pytest.raises(MixedPrecisionError) as error:
        run_epoch(full, batches(3), MixedPrecision(CPU, enabled=True, scaler=True))
    message = str(error.value)
    assert isinstance(error.value, UserError) and '\n' not in message
    assert message.startswith('epoch 1: all 3 steps were skipped')
    assert '3 by the gradient scaler' in message and 'TRAIN.LR' in message
    # No step was applied (the finite forwards did move BatchNorm's statistics, as with
    # any skipped step of the scaler).
    assert all(torch.equal(a, b) for a, b in zip(full.parameters(), before))


def test_a_scale_below_the_floor_stops_training():
    torch.manual_seed(0)
    full = FullModel(StandIn(), MultiExitLoss([1] * 4, 3))
    calls = []
    # Gradients overflow from the second step on; the scale starts at the floor, which
    # is allowed, and the first skip halves it below.
    full.model.exit3.weight.register_hook(
        lambda grad: calls.append(1) or (grad * float('inf') if len(calls) >= 2 else grad))
    precision = MixedPrecision(CPU, enabled=True, scaler=True)
    precision.scaler = torch.amp.GradScaler('cpu', init_scale=MIN_LOSS_SCALE)
    with pytest.raises(MixedPrecisionError) as error:
        run_epoch(full, batches(4), precision)
    message = str(error.value)
    assert message.startswith('epoch 1, iteration 1: the gradient scaler skipped 1 step')
    assert f'fell to {MIN_LOSS_SCALE / 2:g}' in message and 'TRAIN.AMP' in message


class Scalars:
    """Stands in for TensorBoard's writer."""

    def __init__(self):
        self.tags = {}

    def add_scalar(self, tag, value, step):
        self.tags.setdefault(tag, []).append((step, value))


def test_the_loss_scale_is_logged_with_the_learning_rate(caplog):
    torch.manual_seed(0)
    full = FullModel(StandIn(), MultiExitLoss([1] * 4, 3))
    writer = Scalars()
    with caplog.at_level('INFO', logger='engine.epoch'):
        train_one_epoch(full, batches(2), torch.optim.SGD(full.parameters(), lr=0.1), epoch=0,
                        base_lr=0.1, max_it=100, first_it=0, ctx=DistContext(), writer=writer,
                        print_freq=1, precision=MixedPrecision(CPU, enabled=True, scaler=True))
    iters = [r.message for r in caplog.records if 'Iter [' in r.message]
    assert len(iters) == 2 and all(re.search(r'lr 0\.\d+ scale 65536 loss', m) for m in iters)
    assert writer.tags['train/loss_scale'] == [(0, 65536.0), (1, 65536.0)]
    writer = Scalars()
    train_one_epoch(full, batches(1), torch.optim.SGD(full.parameters(), lr=0.1), epoch=0,
                    base_lr=0.1, max_it=100, first_it=0, ctx=DistContext(), writer=writer,
                    precision=MixedPrecision(CPU, enabled=True))
    assert 'train/loss_scale' not in writer.tags  # bfloat16: no scaler, no scale


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
