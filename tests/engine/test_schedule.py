import pytest
import torch

from engine.epoch import train_one_epoch
from engine.schedule import iterations_per_epoch, poly_lr, set_lr
from engine.criterion import FullModel, MultiExitLoss
from standin import StandIn
from utils.distributed import DistContext
from utils.errors import LaunchError


def test_poly_lr_values():
    assert poly_lr(0.01, 0, 100) == 0.01
    assert poly_lr(0.01, 50, 100) == pytest.approx(0.01 * 0.5 ** 0.9)
    assert poly_lr(0.01, 100, 100) == 0.0
    assert poly_lr(0.01, 120, 100) == 0.0  # never negative (or complex) past the end


def test_iterations_follow_effective_batch():
    # Cityscapes train (2975 images), 3 per GPU on 4 GPUs: 247 iterations per epoch.
    assert iterations_per_epoch(2975, 3, 4) == 247
    assert iterations_per_epoch(2975, 3, 1) == 991
    with pytest.raises(LaunchError, match="BATCH_SIZE_PER_GPU"):
        iterations_per_epoch(3, 2, 2)


def test_set_lr_sets_every_group():
    p, q = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{'params': [p]}, {'params': [q], 'lr': 5.0}], lr=1.0)
    set_lr(opt, 0.25)
    assert [g['lr'] for g in opt.param_groups] == [0.25, 0.25]


def _lrs_seen_by_steps(first_it, n_batches=3, base=0.1, max_it=10):
    torch.manual_seed(0)
    model = FullModel(StandIn(), MultiExitLoss([1] * 4, 3))
    opt = torch.optim.SGD(model.parameters(), lr=123.0)  # overwritten by the epoch
    seen = []
    opt.register_step_pre_hook(lambda o, args, kwargs: seen.append(o.param_groups[0]['lr']))
    batches = [(torch.randn(2, 3, 16, 16), torch.randint(0, 3, (2, 16, 16)), ['a', 'b'])
               for _ in range(n_batches)]
    train_one_epoch(model, batches, opt, epoch=0, base_lr=base, max_it=max_it,
                    first_it=first_it, ctx=DistContext())
    return seen, opt.param_groups[0]['lr']


def test_lr_is_set_after_every_step_from_the_schedule_iteration():
    seen, last = _lrs_seen_by_steps(first_it=0)
    # The first step uses the base lr; after step `it` the lr becomes poly(it).
    assert seen == pytest.approx([0.1, poly_lr(0.1, 0, 10), poly_lr(0.1, 1, 10)])
    assert last == pytest.approx(poly_lr(0.1, 2, 10))


def test_an_epoch_starts_where_the_schedule_left_off():
    # Epoch 2 of 3-iteration epochs: as if steps 0..5 had just run (e.g. after a resume).
    seen, _ = _lrs_seen_by_steps(first_it=6)
    assert seen == pytest.approx([poly_lr(0.1, 5, 10), poly_lr(0.1, 6, 10), poly_lr(0.1, 7, 10)])
