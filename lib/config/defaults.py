"""Every configuration key of the project, with its default and what it does.

The tree follows the original ADP-C release so that its experiment YAMLs and the
``config.yaml`` files written by its training runs still load. Only ``MODEL.EXTRA``
(the HRNet architecture description) accepts keys that are not declared here; any
other unknown key is an error (see ``config.update_config``). ``ALLOWED``, at the end,
declares the values of every key that has a fixed set or range; merging refuses others.
"""
from yacs.config import CfgNode as CN

from .allowed import Between, Each, OneOf

_C = CN()

_C.OUTPUT_DIR = ''  # root of run outputs: OUTPUT_DIR/<dataset>/<cfg file name>/
_C.LOG_DIR = ''  # root of TensorBoard logs, laid out like OUTPUT_DIR
_C.GPUS = (0,)  # GPU ids of a single-process run; ignored under torchrun
_C.WORKERS = 4  # DataLoader worker processes per training process
_C.PRINT_FREQ = 20  # log training statistics every this many iterations
_C.AUTO_RESUME = False  # continue from OUTPUT_DIR/.../checkpoint.pth.tar if it exists
_C.PIN_MEMORY = True  # pinned host memory for DataLoaders
_C.RANK = 0  # node rank (kept for compatibility; torchrun sets the real rank)

_C.CUDNN = CN()
_C.CUDNN.BENCHMARK = True  # let cuDNN time and pick the fastest kernels (off if DETERMINISTIC)
# Repeatable CUDA results where PyTorch has deterministic kernels: deterministic cuDNN,
# torch.use_deterministic_algorithms(True, warn_only=True), CUBLAS_WORKSPACE_CONFIG
# (utils.runtime.apply_cudnn); slower.
_C.CUDNN.DETERMINISTIC = False
_C.CUDNN.ENABLED = True  # use cuDNN at all
# TF32 (10-bit mantissa) in CUDA convolutions on Ampere and newer GPUs, PyTorch's default;
# matrix products stay float32. Every tool applies it; timings record it.
_C.CUDNN.ALLOW_TF32 = True

_C.MODEL = CN()
_C.MODEL.NAME = 'model_anytime'  # module in lib/models providing get_seg_model(cfg)
# HRNet ImageNet weights: a .pth or .safetensors file, or hf-hub:OWNER/REPO (docs/cityscapes.md);
# '' = random init (std 0.001)
_C.MODEL.PRETRAINED = ''
_C.MODEL.LOAD_STAGE = 0  # 0: keys present in both; 1: strip 'model.', skip exits; 2: strip 'model.', take all
# What MODEL.PRETRAINED gives: 'all' its tensors that the model has (a checkpoint of another
# number of classes is refused), or 'backbone' only: fine-tuning e.g. a Cityscapes ADP-C
# on a 2-class data set, whose exit heads (exit1-3, last_layer) start from scratch.
_C.MODEL.PRETRAINED_KEEP = 'all'
# BatchNorm running-statistics momentum: HRNet's 0.01 averages over ~100 steps, which
# suits long runs; a run of a few hundred steps needs a larger one (0.1) or its
# evaluation uses statistics of much earlier weights.
_C.MODEL.BN_MOMENTUM = 0.01
# Free-form HRNet description: EE_WEIGHTS, EARLY_DETACH, AGGREGATION, EXIT_NORM and
# STAGE1..STAGE4 with NUM_MODULES, NUM_BRANCHES, BLOCK, NUM_BLOCKS, NUM_CHANNELS, FUSE_METHOD.
_C.MODEL.EXTRA = CN(new_allowed=True)

_C.EXIT = CN()
_C.EXIT.TYPE = 'original'  # head of exits 1-3: 'original' (HRNet head) or 'flex' (redesigned)
_C.EXIT.FINAL_CONV_KERNEL = 1  # kernel of every head's last (classifier) conv: 1 or 3
_C.EXIT.INTER_CHANNEL = 64  # width of the flex heads (128 for W48, 64 for W18 in the paper)
_C.EXIT.COMP_RATE = 1.0  # unused; kept so that original configs load
_C.EXIT.SMOOTH = False  # unused; kept so that original configs load
_C.EXIT.SMOOTH_KS = 3  # unused; kept so that original configs load
_C.EXIT.LAST_SAME = False  # unused; kept so that original configs load
_C.EXIT.FIX_INTER_CHANNEL = False  # unused; kept so that original configs load

_C.MASK = CN()
_C.MASK.USE = False  # confidence adaptivity: masked convolutions after exit 1
_C.MASK.INTERPOLATION = 'rbf'  # fill of skipped pixels: 'rbf' (learned Gaussian) or 'none'
_C.MASK.P = 0.5  # unused since masks come from exits; kept so that original configs load
_C.MASK.CONF_THRE = 0.0  # CRIT conf_thre: compute a pixel while its max probability <= this
_C.MASK.ENTROPY_THRE = 0.0  # CRIT entropy_thre: compute a pixel while its entropy >= this
_C.MASK.CRIT = 'conf_thre'  # confidence criterion: 'conf_thre' or 'entropy_thre'
_C.MASK.AGGR = 'copy'  # aggregation of exits: 'copy' (keep confident earlier logits) or 'none'
_C.MASK.EXECUTION = 'auto'  # inference of masked convs: 'dense', 'sparse' (active pixels only), 'auto' (per layer)

_C.LOSS = CN()
_C.LOSS.USE_OHEM = False  # online hard example mining instead of plain cross-entropy
_C.LOSS.OHEMTHRES = 0.9  # OHEM: keep pixels whose true-class probability is below this
_C.LOSS.OHEMKEEP = 100000  # OHEM: keep at least this many pixels per batch
_C.LOSS.CLASS_BALANCE = True  # weight the cross-entropy with the Cityscapes class weights

_C.DATASET = CN()
_C.DATASET.ROOT = ''  # data root: cityscapes/ and list/, or (custom) what the lists name
_C.DATASET.DATASET = 'cityscapes'  # dataset name (also names the output sub-directory)
_C.DATASET.NUM_CLASSES = 19  # number of train ids
_C.DATASET.TRAIN_SET = 'list/cityscapes/train.lst'  # training list, relative to ROOT
_C.DATASET.EXTRA_TRAIN_SET = ''  # second training list used for EXTRA_EPOCH epochs
_C.DATASET.TEST_SET = 'list/cityscapes/val.lst'  # evaluation list, relative to ROOT
# The data set's description (datasets.spec); a named data set fills in what is left empty.
_C.DATASET.CLASSES = []  # class names in train-id order; NUM_CLASSES must agree
_C.DATASET.PALETTE = []  # one [r, g, b] per class; empty: the data set's or a fixed default
_C.DATASET.REDUCE_ZERO_LABEL = False  # raw 0 is ignored and every other value moves down by 1
_C.DATASET.LABEL_MAP = []  # [[raw value, train id], ...]; empty: raw values are train ids
_C.DATASET.FLIP_PAIRS = []  # [[a, b], ...]: classes a horizontal flip swaps (left/right)

_C.TRAIN = CN()
_C.TRAIN.IMAGE_SIZE = [1024, 512]  # crop size [width, height]
_C.TRAIN.BASE_SIZE = 2048  # long side before multi-scale resizing
_C.TRAIN.DOWNSAMPLERATE = 1  # label downsampling rate (1 = full-resolution labels)
_C.TRAIN.FLIP = True  # random horizontal flip
_C.TRAIN.MULTI_SCALE = True  # random rescaling by 0.5 + randint(0, SCALE_FACTOR) / 10
_C.TRAIN.SCALE_FACTOR = 16  # range of the multi-scale augmentation
_C.TRAIN.LR_FACTOR = 0.1  # unused by the poly schedule; kept so that original configs load
_C.TRAIN.LR_STEP = [90, 110]  # unused by the poly schedule; kept so that original configs load
_C.TRAIN.LR = 0.01  # base learning rate of the poly schedule
_C.TRAIN.EXTRA_LR = 0.001  # learning rate of EE_ONLY / ALLE_ONLY and of the extra training set
_C.TRAIN.OPTIMIZER = 'sgd'  # only 'sgd' is supported
_C.TRAIN.MOMENTUM = 0.9  # SGD momentum
_C.TRAIN.WD = 0.0001  # weight decay
_C.TRAIN.NESTEROV = False  # Nesterov momentum
_C.TRAIN.IGNORE_LABEL = -1  # label value excluded from loss and metric (255 for Cityscapes)
_C.TRAIN.BEGIN_EPOCH = 0  # first epoch (a resumed run continues from its checkpoint)
_C.TRAIN.END_EPOCH = 484  # number of epochs
_C.TRAIN.EXTRA_EPOCH = 0  # epochs on EXTRA_TRAIN_SET after END_EPOCH
_C.TRAIN.RESUME = False  # same as AUTO_RESUME (the original's name)
_C.TRAIN.BATCH_SIZE_PER_GPU = 32  # batch of one training process
_C.TRAIN.SHUFFLE = True  # shuffle the training set every epoch
_C.TRAIN.NUM_SAMPLES = 0  # use only the first N training images (0 = all)
_C.TRAIN.EE_ONLY = False  # train only exits 1-3 (rest frozen in eval mode); rate: EE_ONLY_LR
_C.TRAIN.ALLE_ONLY = False  # train exits 1-3 and last_layer (rest frozen); rate: EE_ONLY_LR
# Learning rate of EE_ONLY / ALLE_ONLY: 'original' as the original release ran (first step
# at EXTRA_LR, then LR x poly), 'extra' as it was documented (EXTRA_LR x poly throughout)
_C.TRAIN.EE_ONLY_LR = 'original'
_C.TRAIN.EVAL_INTERVAL = 1  # validate every N epochs, keeping best.pth by mean mIoU (0 = never)
_C.TRAIN.AMP = False  # mixed precision: autocast fp16 + gradient scaler on CUDA, bf16 on CPU

_C.TEST = CN()
_C.TEST.IMAGE_SIZE = [2048, 1024]  # [width, height]; larger inputs run as sliding windows of it
_C.TEST.BASE_SIZE = 2048  # long side of scale 1 of TEST.SCALE_LIST
_C.TEST.BATCH_SIZE_PER_GPU = 32  # evaluation batch of one process (1 for masked models' FLOPs)
_C.TEST.NUM_SAMPLES = 0  # evaluate only the first N images (0 = all)
_C.TEST.MODEL_FILE = ''  # checkpoint to evaluate
_C.TEST.AMP = False  # evaluate (and validate) under autocast: fp16 on CUDA, bf16 on CPU
_C.TEST.FLIP_TEST = False  # add each pass's horizontal flip (softmax probabilities averaged)
_C.TEST.MULTI_SCALE = False  # one pass per TEST.SCALE_LIST entry (else the image as it is)
_C.TEST.CENTER_CROP_TEST = False  # unused; kept so that original configs load
_C.TEST.SCALE_LIST = [1]  # with MULTI_SCALE: long side = BASE_SIZE x scale, e.g. [0.5, ..., 1.75]
_C.TEST.SUB_DIR = ''  # unused; kept so that original configs load

_C.PYRAMID_TEST = CN()
_C.PYRAMID_TEST.USE = False  # unused; kept so that original configs load
_C.PYRAMID_TEST.SIZE = 512  # unused; kept so that original configs load

_C.DEBUG = CN()
_C.DEBUG.DEBUG = False  # unused; kept so that original configs load
_C.DEBUG.SAVE_BATCH_IMAGES_GT = False  # unused; kept so that original configs load
_C.DEBUG.SAVE_BATCH_IMAGES_PRED = False  # unused; kept so that original configs load
_C.DEBUG.SAVE_HEATMAPS_GT = False  # unused; kept so that original configs load
_C.DEBUG.SAVE_HEATMAPS_PRED = False  # unused; kept so that original configs load

# The values a key may take beyond its type, checked when an experiment or an override
# is merged, before a tool writes anything. Keys the code no longer reads (marked
# "unused" above) are left out, so that original configs load as they are. The names
# match the registries of the code that reads them: models.MODELS, datasets.DATASETS,
# models.confidence.CRITERIA, models.sparse.policy.EXECUTION_MODES.
POSITIVE = Between(1)  # sizes, batches, widths, frequencies
COUNT = Between(0)  # workers, epochs, sample limits (0 = all), indices
FRACTION = Between(0.0, 1.0)  # probabilities and momenta
IMAGE_SIZE = Each(POSITIVE, length=2)  # [width, height]

ALLOWED = {
    'GPUS': Each(COUNT),
    'WORKERS': COUNT,
    'PRINT_FREQ': POSITIVE,
    'RANK': COUNT,
    'MODEL.NAME': OneOf('model_anytime'),
    'MODEL.LOAD_STAGE': OneOf(0, 1, 2),
    'MODEL.PRETRAINED_KEEP': OneOf('all', 'backbone'),
    'MODEL.BN_MOMENTUM': FRACTION,
    'EXIT.TYPE': OneOf('original', 'flex'),
    'EXIT.FINAL_CONV_KERNEL': OneOf(1, 3),
    'EXIT.INTER_CHANNEL': POSITIVE,
    'MASK.INTERPOLATION': OneOf('rbf', 'none'),
    'MASK.CONF_THRE': FRACTION,
    'MASK.ENTROPY_THRE': Between(0.0),
    'MASK.CRIT': OneOf('conf_thre', 'entropy_thre'),
    'MASK.AGGR': OneOf('copy', 'none'),
    'MASK.EXECUTION': OneOf('dense', 'sparse', 'auto'),
    'LOSS.OHEMTHRES': FRACTION,
    'LOSS.OHEMKEEP': COUNT,
    'DATASET.DATASET': OneOf('cityscapes', 'ade20k', 'lip', 'pascal_ctx', 'cocostuff', 'custom'),
    'DATASET.NUM_CLASSES': POSITIVE,
    'TRAIN.IMAGE_SIZE': IMAGE_SIZE,
    'TRAIN.BASE_SIZE': POSITIVE,
    'TRAIN.DOWNSAMPLERATE': POSITIVE,
    'TRAIN.SCALE_FACTOR': COUNT,
    'TRAIN.LR': Between(0.0),
    'TRAIN.EXTRA_LR': Between(0.0),
    'TRAIN.OPTIMIZER': OneOf('sgd'),
    'TRAIN.MOMENTUM': FRACTION,
    'TRAIN.WD': Between(0.0),
    'TRAIN.BEGIN_EPOCH': COUNT,
    'TRAIN.END_EPOCH': COUNT,
    'TRAIN.EXTRA_EPOCH': COUNT,
    'TRAIN.BATCH_SIZE_PER_GPU': POSITIVE,
    'TRAIN.NUM_SAMPLES': COUNT,
    'TRAIN.EVAL_INTERVAL': COUNT,
    'TRAIN.EE_ONLY_LR': OneOf('original', 'extra'),
    'TEST.IMAGE_SIZE': IMAGE_SIZE,
    'TEST.BASE_SIZE': POSITIVE,
    'TEST.BATCH_SIZE_PER_GPU': POSITIVE,
    'TEST.NUM_SAMPLES': COUNT,
    'TEST.SCALE_LIST': Each(Between(0.0, above=True)),
}

config = _C
