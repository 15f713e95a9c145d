import copy
import re

import pytest
import torch

import engine.epoch
from engine.criterion import FullModel, MultiExitLoss
from engine.epoch import EpochInterrupted, NonFiniteLossError, train_one_epoch
from engine.train import RunProgress, select_trainable
from standin import StandIn
from utils.distributed import DistContext
from utils.logger import setup_logger


def batches(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(2, 3, 16, 16, generator=g), torch.randint(0, 3, (2, 16, 16), generator=g),
             ['a', 'b']) for _ in range(n)]


def run_epoch(full, data, lr=0.1):
    opt = torch.optim.SGD([p for p in full.parameters() if p.requires_grad], lr=lr)
    return train_one_epoch(full, data, opt, epoch=0, base_lr=lr, max_it=100, first_it=0,
                           ctx=DistContext())


def test_epoch_trains_and_reports_mean_losses():
    torch.manual_seed(0)
    full = FullModel(StandIn(), MultiExitLoss([1, 1, 1, 1], 3))
    data = batches(4)
    first = run_epoch(full, data)
    for _ in range(5):
        last = run_epoch(full, data)
    assert len(first['exit_losses']) == 4 and first['global_step'] == 4
    assert first['loss'] == pytest.approx(sum(first['exit_losses']), rel=1e-5)
    assert last['loss'] < first['loss']


class NaNAtExit2(StandIn):
    def __init__(self, bad_call):
        super().__init__()
        self.calls, self.bad_call = 0, bad_call

    def forward(self, x, stop_at=4):
        outs = super().forward(x, stop_at)
        self.calls += 1
        if self.calls == self.bad_call:
            outs[1] = outs[1] * float('nan')
        return outs


def test_non_finite_loss_names_exit_and_iteration_and_skips_the_step():
    torch.manual_seed(0)
    net = NaNAtExit2(bad_call=2)
    full = FullModel(net, MultiExitLoss([1, 1, 1, 1], 3))
    data = batches(3)
    reference = FullModel(copy.deepcopy(StandIn()), MultiExitLoss([1, 1, 1, 1], 3))
    reference.model.load_state_dict(net.state_dict())
    with pytest.raises(NonFiniteLossError, match=r'exit 2 .*iteration 1 .*TRAIN\.LR'):
        run_epoch(full, data)
    run_epoch(reference, data[:1])  # the one good step
    for a, b in zip(full.parameters(), reference.parameters()):
        assert torch.equal(a, b)


class CtrlCAtBatch(list):
    """Batches whose ``n``-th (0-based) is never delivered: Ctrl-C comes first."""

    def __init__(self, data, n):
        super().__init__(data)
        self.n = n

    def __iter__(self):
        for i, batch in enumerate(list.__iter__(self)):
            if i == self.n:
                raise KeyboardInterrupt
            yield batch


def test_ctrl_c_in_an_epoch_says_how_many_steps_it_had_taken():
    full = FullModel(StandIn(), MultiExitLoss([1, 1, 1, 1], 3))
    with pytest.raises(EpochInterrupted) as info:
        run_epoch(full, CtrlCAtBatch(batches(4), 2))
    assert (info.value.steps, info.value.total) == (2, 4)
    assert isinstance(info.value, KeyboardInterrupt)  # still stops whatever catches it


def test_the_interruption_message_names_the_place_and_the_checkpoint_kept():
    progress = RunProgress('out/checkpoint.pth.tar')
    progress.stage = 'epoch 1/12'
    assert progress.interrupted(EpochInterrupted(3, 24)) == \
        'training interrupted in epoch 1/12 after 3 of its 24 iterations; last checkpoint: none'
    progress.stage, progress.saved_epochs = 'the validation after epoch 4/12', 4
    assert progress.interrupted(KeyboardInterrupt()) == (
        'training interrupted in the validation after epoch 4/12; last checkpoint: '
        'out/checkpoint.pth.tar (4 epoch(s) done)')


@pytest.mark.parametrize('alle', [False, True])
def test_ee_only_trains_exits_and_freezes_the_rest_in_eval_mode(alle):
    torch.manual_seed(0)
    net = StandIn()
    before = copy.deepcopy(net.state_dict())
    trainable = select_trainable(net, ee_only=not alle, alle_only=alle)
    full = FullModel(net, MultiExitLoss([1, 1, 1, 1], 3))
    opt = torch.optim.SGD([p for p in full.parameters() if p.requires_grad], lr=0.1)
    train_one_epoch(full, batches(2), opt, epoch=0, base_lr=0.1, max_it=10, first_it=0,
                    ctx=DistContext(), trainable=trainable)
    after = net.state_dict()
    frozen = ['stem.weight', 'bn.weight', 'bn.running_mean', 'bn.running_var']
    for key in frozen:
        assert torch.equal(before[key], after[key]), key
    assert not torch.equal(before['exit1.weight'], after['exit1.weight'])
    assert not torch.equal(before['exit3.weight'], after['exit3.weight'])
    # Exits train in train mode: their BatchNorm statistics move.
    assert not torch.equal(before['exit2.1.running_mean'], after['exit2.1.running_mean'])
    assert torch.equal(before['last_layer.weight'], after['last_layer.weight']) != alle
    assert not net.bn.training and net.exit2.training


class Clock:
    """A clock that only moves when a batch is loaded (one second each)."""

    def __init__(self):
        self.now = 1000.0

    def time(self):
        return self.now


class SlowLoader(list):
    def __init__(self, batches, clock):
        super().__init__(batches)
        self.clock = clock

    def __iter__(self):
        for batch in list.__iter__(self):
            self.clock.now += 1.0
            yield batch


def test_iter_lines_give_time_per_iteration_and_no_bar_when_redirected(tmp_path, capsys,
                                                                       monkeypatch):
    clock = Clock()
    monkeypatch.setattr(engine.epoch, 'time', clock)
    setup_logger(str(tmp_path), 'tiny', 'train')
    loader = SlowLoader(batches(8), clock)
    full = FullModel(StandIn(), MultiExitLoss([1, 1, 1, 1], 3))
    opt = torch.optim.SGD(full.parameters(), lr=0.1)
    train_one_epoch(full, loader, opt, epoch=0, base_lr=0.1, max_it=100, first_it=0,
                    ctx=DistContext(), print_freq=3)
    out, err = capsys.readouterr()
    times = re.findall(r'Iter \[(\d+)/8\] time (\d+\.\d+)s/it', out)
    assert [int(i) for i, _ in times] == [0, 3, 6]
    assert [float(t) for _, t in times] == [1.0, 1.0, 1.0]  # not 1, 4, 7 (a running total)
    assert 'epoch 1' not in err and '\r' not in err  # no tqdm bar on captured output
