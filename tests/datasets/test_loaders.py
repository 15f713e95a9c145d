"""Training and evaluation loaders: workers kept across epochs, and batches of an epoch
that depend on the epoch only (not on the workers, their number or their history)."""
import torch

from datasets.cityscapes import Cityscapes
from datasets.loaders import eval_loader, train_loader
from utils.distributed import DistContext
from utils.runtime import seed_everything

TRAIN = 'list/cityscapes/train.lst'
VAL = 'list/cityscapes/val.lst'


def augmented(root):
    """The training set with every random augmentation: rescale, crop and flip."""
    return Cityscapes(root, TRAIN, train=True, base_size=96, crop_size=(24, 40),
                      multi_scale=True, flip=True)


def epoch_batches(loader, epoch):
    """The batches of ``epoch``, started as a training run starts an epoch."""
    seed_everything(epoch * 123)  # the run seeds every epoch; the loader must not need it
    loader.sampler.set_epoch(epoch)
    return [batch for batch in loader]


def same(a, b):
    return len(a) == len(b) and all(
        torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) and x[2] == y[2]
        for x, y in zip(a, b))


def test_workers_are_kept_across_epochs_when_there_are_any(synthetic_root):
    ctx = DistContext()
    val = Cityscapes(synthetic_root, VAL, train=False)
    for workers in (0, 2):
        loaders = [train_loader(augmented(synthetic_root), 2, ctx, workers=workers),
                   eval_loader(val, 1, ctx, workers=workers)]
        for loader in loaders:
            assert loader.persistent_workers == (workers > 0)
        first, second = (epoch_batches(loaders[0], e) for e in (0, 1))
        assert len(first) == len(second) == 2  # 5 images: two full batches of 2
        assert [b[2] for b in loaders[1]] == [[n] for n in (val.files[i]['name']
                                                           for i in range(len(val)))]


def test_an_epoch_gives_the_same_batches_from_kept_rebuilt_or_no_workers(synthetic_root):
    ctx = DistContext()
    kept = train_loader(augmented(synthetic_root), 2, ctx, workers=2)
    epochs = [epoch_batches(kept, e) for e in (0, 1)]
    rebuilt = train_loader(augmented(synthetic_root), 2, ctx, workers=2)  # a resumed run
    assert same(epoch_batches(rebuilt, 1), epochs[1])
    in_process = train_loader(augmented(synthetic_root), 2, ctx, workers=0)
    assert same(epoch_batches(in_process, 1), epochs[1])
    assert same(epoch_batches(in_process, 0), epochs[0])


def test_the_augmentation_changes_with_the_epoch(synthetic_root):
    loader = train_loader(augmented(synthetic_root), 2, DistContext(), shuffle=False,
                          workers=2)
    first, second = (epoch_batches(loader, e) for e in (0, 1))
    assert [b[2] for b in first] == [b[2] for b in second]  # same samples, same order
    assert not same(first, second)  # augmented anew
