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
import rounding  # noqa: E402
from tiny import tiny_cfg  # noqa: E402

# Float32 results held to bounds that other summation orders must also meet.
pytestmark = pytest.mark.numerics


PALETTE = [(128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
           (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
           (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70),
           (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32)]  # trainId order
LABEL_IDS = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]
HEIGHT, WIDTH, BLOCK = 64, 128, 16
# Chance: a constant prediction scores about 1/19 IoU on one class, 0.3% mIoU. The
# training is chaotic: rounding differences (thread count, SIMD width) and other seeds
# give mIoUs of 0.55 to 0.91 per exit, so the floor, 80x chance, leaves a 2x margin.
MIOU_FLOOR = 0.25
# Sparse inference is only tested on masks with both kinds of pixels in quantity; over
# those runs exit 1 computes 19% to 59% of the pixels after it.
DENSITY_RANGE = (0.1, 0.9)


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


@pytest.fixture(scope='module', autouse=True)
def one_thread():
    """The training and every test here on one thread, whatever earlier tests set: the
    summation order, hence the trained weights, depend on the thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def trained(tmp_path_factory, one_thread):
    """A tiny masked model (original heads) trained for 64 steps; its config, final
    evaluation and model. The training seeds everything itself (weights, data order,
    augmentation), whatever state earlier tests leave."""
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


def validation_loader(cfg):
    """The loader of the training's final evaluation (TEST.BATCH_SIZE_PER_GPU)."""
    return eval_loader(build_dataset(cfg, cfg.DATASET.TEST_SET, train=False),
                       cfg.TEST.BATCH_SIZE_PER_GPU, DistContext())


def validation_images(cfg):
    return torch.cat([batch[0] for batch in validation_loader(cfg)])


def test_sparse_inference_on_trained_masks_equals_dense(trained):
    cfg, result, model = trained
    images = validation_images(cfg)
    model.eval()
    execution = model.execution
    with torch.no_grad():
        model.execution = 'dense'
        dense, masks = model(images, return_masks=True)
        model.execution = 'sparse'
        sparse = model(images, masks=masks)  # the same masks: see the float64 runs below
        density = masks[0].at(dense[0].shape[-2:]).mean().item()
    assert DENSITY_RANGE[0] < density < DENSITY_RANGE[1], density
    # Both within float32's reach of the exact (float64) result on the same masks, which
    # keeps a pixel whose confidence is within rounding of the threshold on one side.
    with torch.no_grad():
        exact, spread = rounding.exact_and_spread(
            lambda m: dict(enumerate(m(images.double(), masks=masks))), model)
    for k, (a, b) in enumerate(zip(sparse, dense)):
        bound = rounding.SAFETY * spread[k]
        assert (a.double() - exact[k]).abs().max() <= bound, f'exit {k + 1} sparse'
        assert (b.double() - exact[k]).abs().max() <= bound, f'exit {k + 1} dense'
    # The training's final evaluation ran the same model in the same execution mode, on
    # batches of the same size, on one thread, as here: the same operations in the same
    # order give the same bits.
    model.execution = execution
    matrices = evaluate(model, validation_loader(cfg), 19, 255, DistContext())
    assert [m.mean_iou() for m in matrices] == result['mIoU']


def test_masks_under_bf16_autocast_differ_only_near_the_threshold(trained):
    """Mixed precision changes which pixels the later segments compute only where the
    confidence is within reach of the threshold: the top softmax probability moves by at
    most half the largest change of a logit (sum_j |dp_i/dz_j| = 2 p_i (1 - p_i) <= 1/2),
    plus the float32 rounding of the softmax itself (num_classes + 3 roundings of p_i)."""
    cfg, _, model = trained
    images = validation_images(cfg)
    model.eval()
    with torch.no_grad():
        reference = model(images)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            mixed = model(images)
    density = model.segment_masks(reference[0]).at(reference[0].shape[-2:]).mean().item()
    assert DENSITY_RANGE[0] < density < DENSITY_RANGE[1], density
    softmax_rounding = (cfg.DATASET.NUM_CLASSES + 3) * rounding.U
    for k, (fp32_logits, bf16_logits) in enumerate(zip(reference[:3], mixed[:3]), start=1):
        size = tuple(fp32_logits.shape[-2:])
        differ = model.segment_masks(fp32_logits).at(size) != \
            model.segment_masks(bf16_logits).at(size)  # N x 1 x h x w
        confidence = torch.softmax(fp32_logits, dim=1).amax(dim=1, keepdim=True)
        moved = (bf16_logits.float() - fp32_logits).abs().amax(dim=1, keepdim=True)
        reach = moved / 2 + softmax_rounding
        distance = (confidence - model.mask_threshold).abs()
        assert (distance[differ] <= reach[differ]).all(), f'exit {k}'
