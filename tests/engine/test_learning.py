"""End to end in process: a short training of a tiny confidence-adaptive model really
learns, its exits become confident, the later segments skip pixels (GFLOPs below the
unmasked figure) and sparse inference on the trained masks equals dense inference.

The data is a learnable toy in the Cityscapes layout: 16 x 16 blocks of the 19 classes,
each in its Cityscapes palette colour with noise, so that a few dozen steps suffice.
"""
import os
import sys

import cv2
import numpy as np
import pytest
import torch

import engine.train as training
import models
from evaluation.loop import evaluate
from datasets.loaders import eval_loader
from datasets import build_dataset
from utils.distributed import DistContext
from models.flops import anytime_flops

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'models'))
from tiny import tiny_cfg  # noqa: E402

PALETTE = [(128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
           (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
           (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70),
           (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32)]  # trainId order
LABEL_IDS = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]
HEIGHT, WIDTH, BLOCK = 64, 128, 16
# Chance: a constant prediction scores about 1/19 IoU on one class, 0.3% mIoU.
MIOU_FLOOR = 0.5


def write_blocks(root, splits, seed=0):
    """Images of random class blocks and their labelIds, with train/val lists."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, 'list', 'cityscapes'))
    for split, count in splits.items():
        lines = []
        for i in range(count):
            classes = rng.integers(0, 19, (HEIGHT // BLOCK, WIDTH // BLOCK))
            train_ids = np.kron(classes, np.ones((BLOCK, BLOCK), dtype=np.int64))
            rgb = np.array(PALETTE, dtype=float)[train_ids] + rng.normal(0, 8, (HEIGHT, WIDTH, 3))
            name = f'blocks_{i:06d}_000019'
            image = f'leftImg8bit/{split}/blocks/{name}_leftImg8bit.png'
            label = f'gtFine/{split}/blocks/{name}_gtFine_labelIds.png'
            for path, data in ((image, np.clip(rgb, 0, 255).astype(np.uint8)[..., ::-1]),
                               (label, np.array(LABEL_IDS, dtype=np.uint8)[train_ids])):
                os.makedirs(os.path.dirname(os.path.join(root, 'cityscapes', path)),
                            exist_ok=True)
                cv2.imwrite(os.path.join(root, 'cityscapes', path), data)
            lines.append(f'{image}\t{label}')
        with open(os.path.join(root, 'list', 'cityscapes', f'{split}.lst'), 'w') as f:
            f.write('\n'.join(lines) + '\n')


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A tiny masked model (original heads) trained for 64 steps; its config, final
    evaluation and model."""
    root = str(tmp_path_factory.mktemp('blocks'))
    write_blocks(root, {'train': 16, 'val': 4})
    cfg = tiny_cfg('ca', 'DATASET.ROOT', root, 'OUTPUT_DIR', str(tmp_path_factory.mktemp('out')),
                   'TRAIN.IMAGE_SIZE', [WIDTH, HEIGHT], 'TRAIN.BASE_SIZE', WIDTH,
                   'TRAIN.MULTI_SCALE', False, 'TRAIN.FLIP', False, 'TRAIN.BATCH_SIZE_PER_GPU', 4,
                   'TRAIN.END_EPOCH', 16, 'TRAIN.LR', 0.2, 'TRAIN.EVAL_INTERVAL', 0,
                   'TEST.IMAGE_SIZE', [WIDTH, HEIGHT], 'TEST.BASE_SIZE', WIDTH,
                   'LOSS.CLASS_BALANCE', False, 'MASK.CONF_THRE', 0.9, 'WORKERS', 0,
                   'PRINT_FREQ', 100,
                   # 64 steps: BatchNorm's running statistics must follow the weights
                   # (HRNet's momentum 0.01 would evaluate with those of the first steps).
                   'MODEL.BN_MOMENTUM', 0.1)
    built = {}
    real_get_seg_model = models.get_seg_model

    def get_seg_model(cfg):  # keeps the model that training builds, to test it here
        built['model'] = real_get_seg_model(cfg)
        return built['model']

    patch = pytest.MonkeyPatch()
    patch.setattr(models, 'get_seg_model', get_seg_model)
    try:
        result = training.train(cfg, os.path.join(root, 'blocks.yaml'), DistContext())
    finally:
        patch.undo()
    return cfg, result, built['model']


def test_training_learns_far_above_chance(trained):
    _, result, _ = trained
    assert len(result['mIoU']) == 4
    assert min(result['mIoU']) >= MIOU_FLOOR, result['result']


def test_trained_masks_skip_pixels_below_the_unmasked_cost(trained):
    cfg, result, model = trained
    unmasked = anytime_flops(model, torch.empty(1, 3, HEIGHT, WIDTH, device='meta'))['gflops']
    masked = result['Gflops']
    assert masked[0] == pytest.approx(unmasked[0])
    # Each segment skips the pixels exit 1..3 is confident about (its RBF fills cost
    # something back): below the dense cost, segment by segment.
    for k in (1, 2, 3):
        assert masked[k] - masked[k - 1] < unmasked[k] - unmasked[k - 1], (masked, unmasked)


def test_sparse_inference_on_trained_masks_equals_dense(trained):
    cfg, result, model = trained
    loader = eval_loader(build_dataset(cfg, cfg.DATASET.TEST_SET, train=False), 1, DistContext())
    images = torch.cat([batch[0] for batch in loader])
    model.eval()
    with torch.no_grad():
        model.execution = 'dense'
        dense = model(images)
        model.execution = 'sparse'
        sparse = model(images)
        density = model.segment_masks(dense[0]).at(dense[0].shape[-2:]).mean().item()
    assert density < 0.5  # exit 1 is confident about most pixels
    for a, b in zip(sparse, dense):
        assert (a - b).abs().max() <= 2e-6 * b.abs().max()
    matrices = evaluate(model, loader, 19, 255, DistContext())
    assert [m.mean_iou() for m in matrices] == pytest.approx(result['mIoU'])


def test_masks_under_bf16_autocast_agree_with_float32(trained):
    """Mixed precision changes which pixels the later segments compute only near the
    threshold: on a trained model, the masks of exits 1-3 agree on 99% of pixels."""
    cfg, _, model = trained
    loader = eval_loader(build_dataset(cfg, cfg.DATASET.TEST_SET, train=False), 1, DistContext())
    images = torch.cat([batch[0] for batch in loader])
    model.eval()
    with torch.no_grad():
        reference = model(images)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            mixed = model(images)
    agree = total = 0
    for fp32_logits, bf16_logits in zip(reference[:3], mixed[:3]):
        size = tuple(fp32_logits.shape[-2:])
        fp32_mask = model.segment_masks(fp32_logits).at(size)
        bf16_mask = model.segment_masks(bf16_logits).at(size)
        agree += (fp32_mask == bf16_mask).sum().item()
        total += fp32_mask.numel()
    assert 0 < model.segment_masks(reference[0]).at(size).float().mean() < 1  # both kinds
    assert agree / total >= 0.99, agree / total
