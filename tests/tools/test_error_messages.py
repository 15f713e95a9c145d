"""The message of each mistake says what applies here, once: no advice about other ranks
to a single process, no OpenCV warning before our line, the advice on making lists once,
and a conversion summary without empty parts."""
import os
import re

import numpy as np
import pytest
import torch

from datasets.lists import LIST_TOOLS_HINT
from datasets.synthetic import generate_synthetic_cityscapes
from test_errors import TINY, assert_one_error, run_tool

SMALL = ['TRAIN.IMAGE_SIZE', '[64,32]', 'TEST.IMAGE_SIZE', '[64,32]', 'TRAIN.BASE_SIZE', '64',
         'TEST.BASE_SIZE', '64', 'TRAIN.END_EPOCH', '1', 'TRAIN.BATCH_SIZE_PER_GPU', '1']


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('synthetic'))
    generate_synthetic_cityscapes(root, num_train=1, num_val=1, num_test=0, height=32, width=64)
    return root


def test_a_truncated_checkpoint_of_a_single_process_run_gets_no_advice_about_ranks(
        data_root, tmp_path):
    run = tmp_path / 'cityscapes' / 'tiny_adpc'
    run.mkdir(parents=True)
    whole = tmp_path / 'whole.pth'
    torch.save({'epoch': 1, 'state_dict': {'w': torch.zeros(1000)}}, whole)
    (run / 'checkpoint.pth.tar').write_bytes(whole.read_bytes()[:600])  # cut off mid-file
    proc = run_tool('tools/train_ee.py', '--cfg', TINY, 'DATASET.ROOT', data_root,
                    'OUTPUT_DIR', str(tmp_path), 'AUTO_RESUME', 'True', *SMALL)
    assert_one_error(proc, r'cannot resume the run: .*checkpoint\.pth\.tar is truncated or '
                           r'damaged .*, or set AUTO_RESUME False to start afresh$')
    error = next(line for line in proc.stderr.splitlines() if line.startswith('error:'))
    assert not re.search(r'rank|host|node|filesystem', error), error


@pytest.mark.parametrize('content', [None, b'', b'not a picture'],
                         ids=['missing', 'empty', 'not-an-image'])
@pytest.mark.parametrize('tool', ['predict', 'get_flops'])
def test_an_unreadable_image_gives_our_line_only(tool, content, tmp_path):
    image = tmp_path / 'street.png'
    if content is not None:
        image.write_bytes(content)
    argv = {'predict': ['tools/predict.py', '--cfg', TINY, '--image', str(image),
                        '--out', str(tmp_path / 'pred')],
            'get_flops': ['tools/get_flops.py', '--cfg', TINY, '--image', str(image)]}[tool]
    proc = run_tool(*argv)
    reason = 'no such file' if content is None else 'OpenCV cannot read it as an image'
    assert_one_error(proc, rf'{re.escape(str(image))}: {reason}')
    assert 'WARN' not in proc.stdout + proc.stderr  # OpenCV's own line
    assert not (tmp_path / 'pred').exists()


@pytest.mark.parametrize('tool,outcome', [('tools/train_ee.py', 'nothing was trained'),
                                          ('tools/test_ee.py', 'nothing was evaluated')])
def test_a_missing_data_root_is_named_once_with_the_advice_once(tool, outcome, tmp_path):
    missing = str(tmp_path / 'no_data')
    proc = run_tool(tool, '--cfg', TINY, 'DATASET.ROOT', missing, 'OUTPUT_DIR',
                    str(tmp_path / 'out'), 'TEST.MODEL_FILE', str(tmp_path / 'w.pth'))
    assert_one_error(proc, rf'1 problem\(s\) .*{outcome}')
    assert proc.stderr.count(missing) == 2  # the header and the problem
    assert proc.stderr.count(LIST_TOOLS_HINT) == 1
    assert not (tmp_path / 'out').exists()  # refused before any log or result


def test_missing_lists_are_each_named_with_the_advice_once(data_root, tmp_path):
    proc = run_tool('tools/train_ee.py', '--cfg', TINY, 'DATASET.ROOT', data_root,
                    'DATASET.TRAIN_SET', 'list/a.lst', 'DATASET.TEST_SET', 'list/b.lst',
                    'OUTPUT_DIR', str(tmp_path))
    assert_one_error(proc, r'2 problem\(s\)')
    for name in ('a.lst', 'b.lst'):
        assert f'list file {os.path.join(data_root, "list", name)} does not exist' in proc.stderr
    assert proc.stderr.count(LIST_TOOLS_HINT) == 1


@pytest.mark.parametrize('extra,summary', [
    ({}, '2 model tensors;'),
    ({'epoch': 3}, '2 model tensors, epoch;'),
])
def test_the_conversion_summary_has_no_empty_part(extra, summary, tmp_path):
    src, dst = tmp_path / 'old.pth.tar', tmp_path / 'new.pth.tar'
    # numpy's scalar makes the file need full unpickling, hence --trust; it is left out.
    torch.save({'state_dict': {'a': torch.zeros(1), 'b': torch.ones(1)},
                'meta': np.float64(0.5), **extra}, src)
    proc = run_tool('tools/convert_checkpoint.py', str(src), str(dst), '--trust')
    assert proc.returncode == 0, proc.stderr
    assert f'wrote {dst}: {summary} it loads with weights_only=True' in proc.stderr
