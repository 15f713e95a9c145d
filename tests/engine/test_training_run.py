"""The wiring of a whole training run (engine.train.train), in process on a tiny model
and a tiny synthetic Cityscapes: learning rate of every step, data order per epoch,
class weights, best.pth, the extra phase and TensorBoard; and validation's eval mode."""
import os
import sys

import pytest
import torch

import engine.train as training
from engine.schedule import poly_lr
from engine.train import validate
from datasets.labels import CITYSCAPES_CLASS_WEIGHTS
from datasets.synthetic import generate_synthetic_cityscapes
from standin import StandIn
from utils.distributed import DistContext

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'models'))
from tiny import tiny_cfg  # noqa: E402

TRAIN_IMAGES = 6  # batch 2: 3 steps per epoch


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('synthetic'))
    generate_synthetic_cityscapes(root, num_train=TRAIN_IMAGES, num_val=4, num_test=1,
                                  height=32, width=64, seed=3)
    return root


class Recorder:
    """What a run did: learning rate of every optimiser step, training indices read per
    dataset, TensorBoard scalars, the weights at every validation."""

    def __init__(self):
        self.optimizer = None
        self.step_lrs = []
        self.reads = []  # (list path, index) of training samples, in reading order
        self.scalars = []  # (tag, value, step, optimiser lr when logged)
        self.validated = []  # state dicts at each validation


class Recorded(torch.utils.data.Dataset):
    """A data set that notes (list path, index) of every sample read."""

    def __init__(self, dataset, list_path, reads):
        self.dataset, self.list_path, self.reads = dataset, list_path, reads

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):  # (index, augmentation seed), from the training loader
        self.reads.append((self.list_path, key[0]))
        return self.dataset[key]


class RecordingWriter:
    """Stands in for TensorBoard's writer: notes every scalar with the optimiser's lr."""

    def __init__(self, recorder):
        self.recorder = recorder

    def add_scalar(self, tag, value, step):
        lr = self.recorder.optimizer.param_groups[0]['lr']
        self.recorder.scalars.append((tag, value, step, lr))

    def flush(self):
        pass

    def close(self):
        pass


def run(root, out, monkeypatch, *opts, mious=None):
    """``train`` on the tiny EE model for the config ``opts``; returns (Recorder, run
    directory). ``mious``: validation results to return in turn instead of measuring."""
    rec = Recorder()
    cfg = tiny_cfg('ee', 'DATASET.ROOT', root, 'OUTPUT_DIR', out, 'WORKERS', 0,
                   'TRAIN.BATCH_SIZE_PER_GPU', 2, 'TRAIN.IMAGE_SIZE', [64, 32],
                   'TRAIN.BASE_SIZE', 64, 'TRAIN.MULTI_SCALE', False, 'TRAIN.FLIP', False,
                   'TRAIN.END_EPOCH', 2, 'TRAIN.EVAL_INTERVAL', 1, 'TRAIN.LR', 0.01,
                   'TEST.IMAGE_SIZE', [64, 32], 'TEST.BASE_SIZE', 64, 'PRINT_FREQ', 1,
                   'MODEL.EXTRA.STAGE4.NUM_MODULES', 1, *opts)

    def build_optimizer(cfg, model, base_lr):
        rec.optimizer = real_build_optimizer(cfg, model, base_lr)
        rec.optimizer.register_step_pre_hook(
            lambda opt, args, kwargs: rec.step_lrs.append(opt.param_groups[0]['lr']))
        return rec.optimizer

    def build_dataset(cfg, list_path, train):
        dataset = real_build_dataset(cfg, list_path, train)
        return Recorded(dataset, list_path, rec.reads) if train else dataset

    real_build_optimizer = training.build_optimizer
    real_build_dataset = training.datasets.build_dataset
    monkeypatch.setattr(training, 'build_optimizer', build_optimizer)
    monkeypatch.setattr(training.datasets, 'build_dataset', build_dataset)
    monkeypatch.setattr(training, 'tensorboard_writer', lambda *a, **k: RecordingWriter(rec))
    if mious is not None:
        results = iter(mious)

        def fake_validate(model, *args, **kwargs):
            rec.validated.append({k: v.clone() for k, v in model.state_dict().items()})
            return next(results)
        monkeypatch.setattr(training, 'validate', fake_validate)
    training.train(cfg, os.path.join(out, 'run.yaml'), DistContext())
    return rec, os.path.join(out, 'cityscapes', 'run')


def epochs_of(reads, steps_per_epoch, batch=2):
    """The training indices read, split into epochs."""
    size = steps_per_epoch * batch
    return [[i for _, i in reads[k:k + size]] for k in range(0, len(reads), size)]


def test_global_poly_schedule_shuffle_per_epoch_class_weights(data_root, tmp_path,
                                                              monkeypatch):
    rec, out = run(data_root, str(tmp_path), monkeypatch)
    # 2 epochs of 3 steps, one schedule: step i runs at poly(i - 1), the first at LR.
    assert rec.step_lrs == pytest.approx([0.01] + [poly_lr(0.01, i - 1, 6) for i in range(1, 6)])
    # TensorBoard's lr is the optimiser's, as set after each step: poly(step).
    logged = [(step, value, lr) for tag, value, step, lr in rec.scalars if tag == 'train/lr']
    assert [step for step, _, _ in logged] == list(range(6))
    for step, value, lr in logged:
        assert value == pytest.approx(lr) and value == pytest.approx(poly_lr(0.01, step, 6))
    first, second = epochs_of(rec.reads, 3)
    assert sorted(first) == sorted(second) == list(range(TRAIN_IMAGES))
    assert first != second  # the sampler reshuffles every epoch
    final = torch.load(os.path.join(out, 'final_state.pth'), weights_only=True)
    assert final['loss.criterion.weight'].tolist() == pytest.approx(CITYSCAPES_CLASS_WEIGHTS)


def test_without_shuffle_and_class_balance(data_root, tmp_path, monkeypatch):
    rec, out = run(data_root, str(tmp_path), monkeypatch, 'TRAIN.SHUFFLE', False,
                   'LOSS.CLASS_BALANCE', False)
    assert epochs_of(rec.reads, 3) == [list(range(TRAIN_IMAGES))] * 2
    final = torch.load(os.path.join(out, 'final_state.pth'), weights_only=True)
    assert torch.equal(final['loss.criterion.weight'], torch.ones(19))


def test_extra_phase_trains_on_its_list_at_extra_lr_with_its_own_schedule(
        data_root, tmp_path, monkeypatch):
    rec, _ = run(data_root, str(tmp_path), monkeypatch, 'TRAIN.END_EPOCH', 1,
                 'TRAIN.EXTRA_EPOCH', 2, 'TRAIN.EXTRA_LR', 0.001,
                 'DATASET.EXTRA_TRAIN_SET', 'list/cityscapes/val.lst')
    main = [0.01, 0.01, poly_lr(0.01, 1, 3)]  # 1 epoch of 3 steps
    extra = [0.001, 0.001, poly_lr(0.001, 1, 4), poly_lr(0.001, 2, 4)]  # 2 epochs of 2 steps
    assert rec.step_lrs == pytest.approx(main + extra)
    lists = [path for path, _ in rec.reads]
    assert lists == ['list/cityscapes/train.lst'] * 6 + ['list/cityscapes/val.lst'] * 8


# Exit fine-tuning (TRAIN.EE_ONLY / ALLE_ONLY) as the original release ran it: its
# optimiser groups start at EXTRA_LR, and after every optimiser step at schedule iteration
# `it` its adjust_learning_rate sets every group to TRAIN.LR * (1 - it / max_it) ** 0.9.
LR, EXTRA_LR, MAX_IT = 0.01, 0.001, 6  # 2 epochs of 3 steps


def original_fine_tuning_lr(step):
    """The original's learning rate of optimiser step ``step`` (0-based)."""
    return EXTRA_LR if step == 0 else LR * (1 - (step - 1) / MAX_IT) ** 0.9


FINE_TUNING = ['TRAIN.LR', LR, 'TRAIN.EXTRA_LR', EXTRA_LR, 'TRAIN.EVAL_INTERVAL', 0]


@pytest.mark.parametrize('key', ['TRAIN.EE_ONLY', 'TRAIN.ALLE_ONLY'])
def test_exit_fine_tuning_runs_at_extra_lr_once_then_at_lr_times_poly(
        data_root, tmp_path, monkeypatch, key):
    rec, _ = run(data_root, str(tmp_path), monkeypatch, key, True, *FINE_TUNING)
    assert rec.step_lrs[:4] == pytest.approx([0.001, 0.01, 0.01 * (5 / 6) ** 0.9,
                                              0.01 * (4 / 6) ** 0.9])
    assert rec.step_lrs == pytest.approx([original_fine_tuning_lr(i) for i in range(MAX_IT)])


def test_exit_fine_tuning_at_extra_lr_throughout_on_request(data_root, tmp_path, monkeypatch):
    rec, _ = run(data_root, str(tmp_path), monkeypatch, 'TRAIN.EE_ONLY', True,
                 'TRAIN.EE_ONLY_LR', 'extra', *FINE_TUNING)
    assert rec.step_lrs == pytest.approx(
        [EXTRA_LR] + [EXTRA_LR * (1 - i / MAX_IT) ** 0.9 for i in range(MAX_IT - 1)])


class Interrupted(Exception):
    """Stands for a run killed right after its first checkpoint."""


def test_resumed_exit_fine_tuning_continues_at_lr_times_poly(data_root, tmp_path, monkeypatch):
    real_save = training.save_checkpoint

    def save_then_stop(path, state, *args, **kwargs):
        real_save(path, state, *args, **kwargs)
        raise Interrupted

    monkeypatch.setattr(training, 'save_checkpoint', save_then_stop)
    opts = ['TRAIN.EE_ONLY', True, 'AUTO_RESUME', True, *FINE_TUNING]
    with pytest.raises(Interrupted):
        run(data_root, str(tmp_path), monkeypatch, *opts)
    monkeypatch.setattr(training, 'save_checkpoint', real_save)
    out = os.path.join(str(tmp_path), 'cityscapes', 'run')
    checkpoint = torch.load(os.path.join(out, 'checkpoint.pth.tar'), weights_only=True)
    assert checkpoint['epoch'] == 1
    # The original resumed from its saved optimiser, whose lr is the last one its
    # schedule set: LR * poly(2), after the third step. The first step after the resume
    # runs at that rate, not at EXTRA_LR, and the run goes on as if never stopped.
    assert checkpoint['optimizer']['param_groups'][0]['lr'] == pytest.approx(
        original_fine_tuning_lr(3))
    rec, _ = run(data_root, str(tmp_path), monkeypatch, *opts)
    assert rec.step_lrs == pytest.approx([original_fine_tuning_lr(i) for i in (3, 4, 5)])


def test_best_pth_holds_the_best_validated_epoch(data_root, tmp_path, monkeypatch):
    rec, out = run(data_root, str(tmp_path), monkeypatch, 'TRAIN.END_EPOCH', 3,
                   mious=[0.2, 0.5, 0.3])
    best = torch.load(os.path.join(out, 'best.pth'), weights_only=True)
    second = rec.validated[1]
    assert set(best) == {'model.' + k for k in second} | {'loss.criterion.weight'}
    for key, value in second.items():
        assert torch.equal(best['model.' + key], value), key
    assert not torch.equal(best['model.last_layer.3.weight'], rec.validated[2]['last_layer.3.weight'])
    checkpoint = torch.load(os.path.join(out, 'checkpoint.pth.tar'), weights_only=True)
    assert checkpoint['best_mIoU'] == 0.5 and checkpoint['epoch'] == 3


def test_validation_runs_in_eval_mode_and_keeps_batch_norm_statistics():
    torch.manual_seed(0)
    model = StandIn().train()
    modes = []
    model.register_forward_pre_hook(lambda m, args: modes.append(m.bn.training))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    loader = [(torch.randn(2, 3, 16, 16, generator=g) * 3 + 1,
               torch.randint(0, 3, (2, 16, 16), generator=g), ['a', 'b']) for _ in range(2)]
    cfg = tiny_cfg('ee', 'DATASET.NUM_CLASSES', 3)
    mean = validate(model, loader, cfg, DistContext())
    assert modes == [False, False]
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert model.training and model.bn.training  # the caller's mode is back
    assert 0 <= mean <= 1
