import argparse
import os

import pytest
import yaml

from config import ConfigKeyError, config, update_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXPERIMENTS = os.path.join(ROOT, 'experiments', 'cityscapes')


def load(cfg_file, *opts):
    cfg = config.clone()
    update_config(cfg, argparse.Namespace(cfg=cfg_file, opts=list(opts)))
    return cfg


def test_w48_matches_the_paper_experiment():
    cfg = load(os.path.join(EXPERIMENTS, 'w48.yaml'))
    assert cfg.GPUS == (0, 1, 2, 3)
    assert cfg.MODEL.EXTRA.STAGE4.NUM_CHANNELS == [48, 96, 192, 384]
    assert cfg.MODEL.EXTRA.EE_WEIGHTS == (1, 1, 1, 1)
    assert cfg.TRAIN.IMAGE_SIZE == [1024, 512] and cfg.TRAIN.IGNORE_LABEL == 255
    assert not cfg.MASK.USE and cfg.EXIT.TYPE == 'original'
    assert cfg.is_frozen()


@pytest.mark.parametrize('net,inter', [('w48', 128), ('w18', 64)])
def test_variant_files_equal_base_plus_spec_overrides(net, inter):
    base = os.path.join(EXPERIMENTS, f'{net}.yaml')
    rh = ['EXIT.TYPE', 'flex', 'EXIT.INTER_CHANNEL', str(inter)]
    ca = ['MASK.USE', 'True', 'MASK.CONF_THRE', '0.998']
    for variant, opts in (('rh', rh), ('ca', ca), ('adpc', rh + ca)):
        assert load(os.path.join(EXPERIMENTS, f'{net}_{variant}.yaml')) == load(base, *opts)


def test_unknown_key_on_command_line_names_closest_key():
    with pytest.raises(ConfigKeyError, match=r'MASK\.CONF_THR .*did you mean MASK\.CONF_THRE'):
        load(os.path.join(EXPERIMENTS, 'w48.yaml'), 'MASK.CONF_THR', '0.9')


def test_unknown_key_in_yaml_names_file_and_key(tmp_path):
    path = tmp_path / 'typo.yaml'
    path.write_text('TRAIN:\n  BATCH_SIZE_PER_GUP: 2\n')
    with pytest.raises(ConfigKeyError, match=r'TRAIN\.BATCH_SIZE_PER_GUP in .*typo\.yaml.*BATCH_SIZE_PER_GPU'):
        load(str(path))


def test_model_extra_is_free_form(tmp_path):
    path = tmp_path / 'extra.yaml'
    path.write_text('MODEL:\n  EXTRA:\n    ANYTHING: 3\n    STAGE1:\n      NUM_RANCHES: 1\n')
    assert load(str(path)).MODEL.EXTRA.ANYTHING == 3


def test_config_yaml_of_an_original_run_loads(tmp_path):
    # A training run of the original release dumps every default, including keys that
    # nothing reads any more (EXIT.COMP_RATE, DEBUG.*, STAGE1.NUM_RANCHES).
    dumped = yaml.safe_load(load(os.path.join(EXPERIMENTS, 'w48.yaml'), 'EXIT.TYPE', 'flex').dump())
    path = tmp_path / 'config.yaml'
    path.write_text(yaml.safe_dump(dumped))
    cfg = load(str(path))
    assert cfg.EXIT.TYPE == 'flex' and cfg.EXIT.COMP_RATE == 1.0
    assert cfg.MODEL.EXTRA.STAGE1.NUM_RANCHES == 1
    assert cfg.DEBUG.SAVE_HEATMAPS_PRED is False
