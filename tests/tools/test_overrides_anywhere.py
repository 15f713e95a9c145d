"""KEY VALUE overrides may stand before, between or after the options of every tool that
reads a config: a word naming a key is never taken as the value of an option, even of one
that takes several (--image a.png b.png, --thresholds 0.9 0.99, --modes ...)."""
import importlib
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from utils.launch import add_overrides_argument, parse_command_line, split_overrides

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, 'tools'))
TINY = 'experiments/synthetic/tiny_adpc.yaml'
ENV = dict(os.environ, CUDA_VISIBLE_DEVICES='', OMP_NUM_THREADS='1')
KEYS = ['MASK.CONF_THRE', '0.5', 'TEST.NUM_SAMPLES', '2']


def tool(name):
    return importlib.import_module(name)  # tools/<name>.py


# (tool, its arguments with KEYS split around the options, what the options must hold)
PARSED = [
    ('predict', ['--cfg', 'c.yaml', '--image', 'a.png', 'b.png', *KEYS[:2], '--out', 'o',
                 *KEYS[2:]], {'image': ['a.png', 'b.png'], 'out': 'o'}),
    ('predict', [*KEYS, '--cfg', 'c.yaml', '--image', 'a.png', '--out', 'o'],
     {'image': ['a.png'], 'cfg': 'c.yaml'}),
    ('visualize', ['--cfg', 'c.yaml', '--images', 'a.png', *KEYS, '--out', 'o'],
     {'images': ['a.png'], 'out': 'o'}),
    ('profile_latency', ['--cfg', 'c.yaml', '--eval-densities', '0.8,0.6,0.35', *KEYS,
                         '--shape', '64', '96', '--out', 'p.json'],
     {'eval_densities': [[0.8, 0.6, 0.35]], 'shape': [64, 96]}),
    ('benchmark', ['--cfg', 'c.yaml', *KEYS[:2], '--shape', '64', '96', *KEYS[2:]],
     {'shape': [64, 96]}),
    ('get_flops', ['--cfg', 'c.yaml', *KEYS, '--shape', '64', '96', '--json', 'f.json'],
     {'shape': [64, 96], 'json': 'f.json'}),
]


@pytest.mark.parametrize('name,argv,options', PARSED)
def test_tools_with_a_parser_keep_options_and_overrides_apart(name, argv, options,
                                                               monkeypatch):
    monkeypatch.setattr(sys, 'argv', [f'{name}.py', *argv])
    args = tool(name).parse_args()
    assert args.opts == KEYS
    assert {k: getattr(args, k) for k in options} == options


# (tool, its arguments, what the options must hold) for tools that parse and launch in main
LAUNCHED = [
    ('sweep_threshold', ['--cfg', 'c.yaml', '--thresholds', '0.8', '0.9', *KEYS[:2],
                         '--compare', 'rh', 'ee', *KEYS[2:]],
     {'thresholds': [0.8, 0.9], 'compare': ['rh', 'ee']}),
    ('test_ee', ['--cfg', 'c.yaml', *KEYS[:2], '--submit', 'd', '--exit', '2', *KEYS[2:]],
     {'submit': 'd', 'exit': 2}),
    ('train_ee', ['--cfg', 'c.yaml', *KEYS[:2], '--debug', *KEYS[2:]], {'debug': True}),
]


@pytest.mark.parametrize('name,argv,options', LAUNCHED)
def test_launched_tools_keep_options_and_overrides_apart(name, argv, options, monkeypatch):
    module = tool(name)
    launched = []
    monkeypatch.setattr(module, 'launch', lambda fn, args: launched.append(args))
    module.main(argv)
    args, = launched
    assert args.opts == KEYS
    assert {k: getattr(args, k) for k in options} == options


def test_time_eval_modes_takes_overrides_after_its_modes(monkeypatch):
    module = tool('time_eval_modes')

    class Merged(Exception):
        pass

    def merge(cfg, args):
        raise Merged(args)
    monkeypatch.setattr(module, 'generate_synthetic_cityscapes', lambda *a, **k: None)
    monkeypatch.setattr(module, 'update_config', merge)
    monkeypatch.setattr(sys, 'argv', ['time_eval_modes.py', '--cfg', 'c.yaml', '--modes',
                                      'plain', 'flip', *KEYS, '--images', '1'])
    with pytest.raises(Merged) as merged:
        module.main()
    args, = merged.value.args
    assert args.modes == ['plain', 'flip'] and args.images == 1
    assert args.opts[:len(KEYS)] == KEYS  # then the tool's own DATASET.ROOT ...


def test_a_value_is_taken_whatever_it_looks_like():
    rest, pairs = split_overrides(['TRAIN.IGNORE_LABEL', '-1', '--out', 'o', 'DATASET.TEST_SET',
                                   'MASK.USE', 'TEST.PNG', './TEST.PNG', 'IMG_1.PNG'])
    assert pairs == ['TRAIN.IGNORE_LABEL', '-1', 'DATASET.TEST_SET', 'MASK.USE', 'TEST.PNG',
                     './TEST.PNG']
    assert rest == ['--out', 'o', 'IMG_1.PNG']


def test_a_word_that_is_neither_option_nor_key_is_a_usage_error(capsys):
    import argparse
    parser = argparse.ArgumentParser(prog='tool')
    parser.add_argument('--out')
    add_overrides_argument(parser)
    with pytest.raises(SystemExit) as stop:
        parse_command_line(parser, ['--out', 'o', 'mask.conf_thre', '0.5'])
    assert stop.value.code == 2
    assert "'mask.conf_thre' is neither an option nor a config key" in capsys.readouterr().err


def test_predict_reads_an_override_after_the_images(tmp_path):
    image = str(tmp_path / 'street.png')
    cv2.imwrite(image, np.random.default_rng(0).integers(0, 256, (32, 64, 3), dtype=np.uint8))
    out = tmp_path / 'pred'
    proc = subprocess.run([sys.executable, 'tools/predict.py', '--cfg', TINY, '--image', image,
                           'MASK.CONF_THRE', '0.5', '--out', str(out), '--threads', '1'],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(os.listdir(out)) == ['legend.png', 'street_color.png', 'street_labelIds.png']


def test_sweep_reads_an_override_after_the_thresholds(tmp_path):
    # It gets as far as asking for weights: TEST.NUM_SAMPLES was not read as a threshold.
    proc = subprocess.run([sys.executable, 'tools/sweep_threshold.py', '--cfg', TINY,
                           '--thresholds', '0.8', 'TEST.NUM_SAMPLES', '2',
                           'OUTPUT_DIR', str(tmp_path)],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith('error:')]
    assert len(errors) == 1 and 'TEST.MODEL_FILE is empty' in errors[0], proc.stderr
