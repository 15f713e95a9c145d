import argparse
import os
import re

import pytest
import yaml

from config import ConfigKeyError, config, config_differences, default_config, update_config
from utils.errors import ConfigError

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


@pytest.mark.parametrize('key,alias', [('TRAIN.BASE_LR', 'TRAIN.LR'), ('SOLVER.BASE_LR', 'TRAIN.LR'),
                                       ('MAX_EPOCH', 'TRAIN.END_EPOCH'),
                                       ('SOLVER.IMS_PER_BATCH', 'TRAIN.BATCH_SIZE_PER_GPU')])
def test_unknown_key_from_another_codebase_suggests_ours(key, alias):
    with pytest.raises(ConfigError, match=rf'unknown config key {re.escape(key)} .*did you mean '
                                          rf'{re.escape(alias)}\?'):
        load(os.path.join(EXPERIMENTS, 'w48.yaml'), key, '1')


def test_value_of_the_wrong_type_names_key_value_and_type():
    with pytest.raises(ConfigError, match=r"MASK\.CONF_THRE 'abc' on the command line: expected "
                                          r'a float'):
        load(os.path.join(EXPERIMENTS, 'w48.yaml'), 'MASK.CONF_THRE', 'abc')


def test_wrong_type_in_a_file_names_the_file(tmp_path):
    path = tmp_path / 'bad.yaml'
    path.write_text('TRAIN:\n  END_EPOCH: many\n')
    with pytest.raises(ConfigError, match=r"TRAIN\.END_EPOCH 'many' in .*bad\.yaml: expected an "
                                          r'int like the default \d+, got a str'):
        load(str(path))


def test_integer_for_a_float_key_is_accepted():
    assert load(os.path.join(EXPERIMENTS, 'w48.yaml'), 'MASK.CONF_THRE', '1').MASK.CONF_THRE == 1.0


def test_missing_cfg_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r'--cfg file .*nope\.yaml does not exist'):
        load(str(tmp_path / 'nope.yaml'))


def test_missing_base_names_both_files(tmp_path):
    path = tmp_path / 'variant.yaml'
    path.write_text('_BASE_: gone.yaml\n')
    with pytest.raises(ConfigError, match=r'_BASE_ of .*variant\.yaml: .*gone\.yaml does not exist'):
        load(str(path))


def test_odd_number_of_overrides_names_the_lonely_key():
    with pytest.raises(ConfigError, match=r"KEY VALUE pairs; 'TRAIN\.LR' has no value"):
        load(os.path.join(EXPERIMENTS, 'w48.yaml'), 'TRAIN.END_EPOCH', '3', 'TRAIN.LR')


def test_merging_leaves_the_defaults_untouched():
    load(os.path.join(EXPERIMENTS, 'w48.yaml'), 'TRAIN.LR', '0.5')
    assert default_config().TRAIN.LR == 0.01


def test_config_differences_ignore_the_given_keys():
    a = load(os.path.join(EXPERIMENTS, 'w48.yaml'))
    b = load(os.path.join(EXPERIMENTS, 'w48_rh.yaml'), 'PRINT_FREQ', '1')
    assert config_differences(a, b, ignore=['PRINT_FREQ']) == [
        ('EXIT.TYPE', 'original', 'flex'), ('EXIT.INTER_CHANNEL', 64, 128)]


def test_a_run_folder_as_cfg_points_at_its_config_yaml(tmp_path):
    (tmp_path / 'run').mkdir()
    (tmp_path / 'run' / 'config.yaml').write_text('TRAIN:\n  END_EPOCH: 2\n')
    with pytest.raises(ConfigError, match=rf'--cfg file {re.escape(str(tmp_path / "run"))} is a '
                                          rf'run folder: give the config\.yaml in it, '
                                          rf'{re.escape(str(tmp_path / "run" / "config.yaml"))}$'):
        load(str(tmp_path / 'run'))
    with pytest.raises(ConfigError, match=r'is a folder: give a YAML file'):
        load(str(tmp_path))
