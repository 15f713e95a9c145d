"""The named data sets: their label rules, the DATASET keys' checks, and every
experiment YAML building a consistent description."""
import argparse
import glob
import os

import numpy as np
import pytest
import torch

from config import config, update_config
from datasets.spec import SPECS, dataset_spec
from utils.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXPERIMENTS = sorted(glob.glob(os.path.join(ROOT, 'experiments', '*', '*.yaml')))


def load(path, *opts):
    return update_config(config.clone(), argparse.Namespace(cfg=path, opts=list(opts)))


def named(name, num_classes, *opts):
    cfg = config.clone()
    cfg.DATASET.DATASET, cfg.DATASET.NUM_CLASSES = name, num_classes
    cfg.TRAIN.IGNORE_LABEL = 255
    cfg.merge_from_list(list(opts))
    return dataset_spec(cfg)


@pytest.mark.parametrize('path', EXPERIMENTS, ids=lambda p: os.path.relpath(p, ROOT))
def test_every_experiment_describes_its_data_set(path):
    cfg = load(path)
    spec = dataset_spec(cfg)
    assert spec.name == cfg.DATASET.DATASET
    assert spec.num_classes == cfg.DATASET.NUM_CLASSES == len(spec.palette)
    # The loss can be built: class weights only where the data set has them.
    assert cfg.LOSS.CLASS_BALANCE == (spec.class_weights is not None)
    # Named data sets read the lists tools/make_lists.py NAME writes; the custom template
    # those of tools/make_lists.py custom (ROOT/list/); the quick start its own.
    folder = os.path.basename(os.path.dirname(path))
    lists = {'custom': 'list/', 'synthetic': 'list/cityscapes/'}.get(folder, f'list/{folder}/')
    assert cfg.DATASET.TRAIN_SET.startswith(lists)


@pytest.mark.parametrize('name', ['ade20k', 'lip', 'pascal_ctx', 'cocostuff'])
def test_variants_are_the_base_plus_the_spec_overrides_and_the_exits_fit(name):
    folder = os.path.join(ROOT, 'experiments', name)
    for net, inter in (('w48', 128), ('w18', 64)):
        base = os.path.join(folder, f'{net}.yaml')
        if not os.path.exists(base):
            continue
        rh = ['EXIT.TYPE', 'flex', 'EXIT.INTER_CHANNEL', str(inter)]
        ca = ['MASK.USE', 'True', 'MASK.CONF_THRE', '0.998']
        for variant, opts in (('rh', rh), ('ca', ca), ('adpc', rh + ca)):
            assert load(os.path.join(folder, f'{net}_{variant}.yaml')) == load(base, *opts)
    from models import get_seg_model
    cfg = load(os.path.join(folder, 'w48_adpc.yaml'), 'MODEL.PRETRAINED', '')
    with torch.device('meta'):
        outputs = get_seg_model(cfg)(torch.empty(1, 3, 64, 64))
    assert [out.shape[1] for out in outputs] == [SPECS[name].num_classes] * 4


# The base project's recipes (reference/hrnet-seg-datasets): crop, LR, WD, epochs, OHEM,
# scale factor, ignore label.
RECIPES = {
    'ade20k': (520, 0.02, 0.0001, 120, True, 11, 255),
    'lip': (473, 0.007, 0.0005, 150, False, 11, 255),
    'pascal_ctx': (520, 0.001, 0.0001, 200, False, 16, -1),
    'cocostuff': (520, 0.001, 0.0001, 110, True, 16, 255),
}


@pytest.mark.parametrize('name', sorted(RECIPES))
def test_w48_experiments_follow_the_hrnet_recipes(name):
    cfg = load(os.path.join(ROOT, 'experiments', name, 'w48.yaml'))
    crop, lr, wd, epochs, ohem, scale, ignore = RECIPES[name]
    assert cfg.TRAIN.IMAGE_SIZE == [crop, crop] and cfg.TRAIN.BASE_SIZE == crop
    assert (cfg.TRAIN.LR, cfg.TRAIN.WD, cfg.TRAIN.END_EPOCH) == (lr, wd, epochs)
    assert (cfg.LOSS.USE_OHEM, cfg.TRAIN.SCALE_FACTOR, cfg.TRAIN.IGNORE_LABEL) == \
        (ohem, scale, ignore)
    assert cfg.MODEL.EXTRA.STAGE4.NUM_CHANNELS == [48, 96, 192, 384]


def test_ade20k_reduces_the_zero_label():
    spec = named('ade20k', 150)
    assert spec.to_train_ids(np.array([[0, 1, 150]], np.uint8)).tolist() == [[255, 0, 149]]
    assert (spec.classes[0], spec.classes[149]) == ('wall', 'flag')


def test_pascal_context_59_ignores_background_60_keeps_it():
    raw = np.array([0, 1, 59], np.uint8)
    spec59, spec60 = named('pascal_ctx', 59), named('pascal_ctx', 60)
    assert spec59.to_train_ids(raw).tolist() == [255, 0, 58]
    assert spec60.to_train_ids(raw).tolist() == [0, 1, 59]
    assert spec59.classes[58] == spec60.classes[59] == 'wood'
    assert spec60.classes[0] == 'background'


def test_cocostuff_maps_its_id_table():
    spec = named('cocostuff', 171)
    # stuffthingmaps values are COCO ids - 1: 0 person (id 1), 11 (id 12, unused),
    # 12 stop sign (id 13), 90 (id 91, unused), 91 banner (id 92), 181 wood (id 182),
    # 255 unlabelled.
    raw = np.array([0, 11, 12, 90, 91, 181, 255], np.uint8)
    train_ids = spec.to_train_ids(raw).tolist()
    assert train_ids == [0, 255, 11, 255, 80, 170, 255]
    assert [spec.classes[t] for t in (0, 11, 80, 170)] == ['person', 'stop sign', 'banner',
                                                          'wood']
    every = spec.to_train_ids(np.arange(256, dtype=np.uint8))
    assert sorted(set(every.tolist()) - {255}) == list(range(171))
    assert spec.to_raw(np.array([0, 11, 80, 170])).tolist() == [0, 12, 91, 181]


def test_lip_swaps_left_and_right_parts():
    spec = named('lip', 20)
    perm = spec.flip_permutation()
    for left, right in (('left arm', 'right arm'), ('left leg', 'right leg'),
                        ('left shoe', 'right shoe')):
        a, b = spec.classes.index(left), spec.classes.index(right)
        assert (perm[a], perm[b]) == (b, a)
    assert sum(perm != np.arange(20)) == 6


def test_custom_label_map_and_ignore_label():
    spec = named('custom', 2, 'DATASET.CLASSES', ['background', 'person'],
                 'DATASET.LABEL_MAP', [[0, 0], [128, 1]], 'TRAIN.IGNORE_LABEL', 250)
    raw = np.array([[0, 128, 7, 255]], np.uint8)
    assert spec.to_train_ids(raw).tolist() == [[0, 1, 250, 250]]
    assert spec.to_train_ids(raw.astype(np.int32)).tolist() == [[0, 1, 250, 250]]
    assert spec.classes == ('background', 'person') and spec.class_weights is None


@pytest.mark.parametrize('opts,key', [
    (['DATASET.NUM_CLASSES', 19], 'DATASET.NUM_CLASSES'),
    (['DATASET.CLASSES', ['a', 'b', 'c']], 'DATASET.NUM_CLASSES'),
    (['DATASET.PALETTE', [[0, 0, 0]]], 'DATASET.PALETTE'),
    (['DATASET.PALETTE', [[0, 0, 0], [0, 0, 256]]], 'DATASET.PALETTE'),
    (['DATASET.LABEL_MAP', [[1, 2]]], 'DATASET.LABEL_MAP'),
    (['DATASET.LABEL_MAP', [[1, 0], [1, 1]]], 'DATASET.LABEL_MAP'),
    (['DATASET.FLIP_PAIRS', [[0, 2]]], 'DATASET.FLIP_PAIRS'),
    (['DATASET.FLIP_PAIRS', [[0, 1], [1, 0]]], 'DATASET.FLIP_PAIRS'),
])
def test_inconsistent_keys_are_named(opts, key):
    with pytest.raises(ConfigError, match=key.replace('.', r'\.')):
        named('custom', 2, 'DATASET.CLASSES', ['a', 'b'], *opts)


def test_named_data_set_needs_its_number_of_classes():
    with pytest.raises(ConfigError, match='DATASET.NUM_CLASSES is 19 but ade20k has 150'):
        named('ade20k', 19)
    with pytest.raises(ConfigError, match='59 or 60'):
        named('pascal_ctx', 21)


def test_unknown_data_set_is_refused_at_merge():
    with pytest.raises(ConfigError, match="DATASET.DATASET 'voc'.*'cocostuff', 'custom'"):
        load(os.path.join(ROOT, 'experiments', 'cityscapes', 'w18.yaml'),
             'DATASET.DATASET', 'voc')
