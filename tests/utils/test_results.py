import json
import os
import subprocess
import sys

import pytest

from utils.errors import RunDirectoryError
from utils.results import comparison_table, read_results

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write_evaluation(folder, mious, gflops):
    folder.mkdir(parents=True, exist_ok=True)
    line = '\t'.join(f'{v:.2f}' for v in list(mious) + [sum(mious) / len(mious)])
    (folder / 'result.txt').write_text(line)
    (folder / 'test_stats.json').write_text(json.dumps({'Gflops': list(gflops)}))


def test_read_results_leaves_out_the_mean(tmp_path):
    write_evaluation(tmp_path, [10.0, 20.0, 30.0, 40.0], [0.1, 0.2, 0.3, 0.4])
    assert read_results(str(tmp_path)) == {'miou': [10.0, 20.0, 30.0, 40.0],
                                           'gflops': [0.1, 0.2, 0.3, 0.4]}


def test_missing_results_name_the_file(tmp_path):
    with pytest.raises(RunDirectoryError, match='result.txt does not exist'):
        read_results(str(tmp_path))


def test_table_puts_exits_side_by_side_with_the_gflops_ratio(tmp_path):
    write_evaluation(tmp_path / 'a', [41.0, 52.5, 60.0, 61.25], [0.1, 0.15, 0.2, 0.3])
    write_evaluation(tmp_path / 'b', [40.0, 53.0, 61.0, 62.0], [0.1, 0.2, 0.3, 0.4])
    table = comparison_table(read_results(str(tmp_path / 'a')),
                             read_results(str(tmp_path / 'b')), ('masked', 'unmasked'))
    lines = table.splitlines()
    assert lines[0].split() == ['exit', 'mIoU', 'masked', 'mIoU', 'unmasked', 'GFLOPs',
                                'masked', 'GFLOPs', 'unmasked', 'masked/unmasked']
    assert lines[4].split() == ['4', '61.25', '62.00', '0.3000', '0.4000', '75%']
    assert len(lines) == 5


def test_different_numbers_of_exits_are_refused(tmp_path):
    write_evaluation(tmp_path / 'a', [1.0, 2.0], [0.1, 0.2])
    write_evaluation(tmp_path / 'b', [1.0, 2.0, 3.0], [0.1, 0.2, 0.3])
    with pytest.raises(RunDirectoryError, match='2 and 3 exits'):
        comparison_table(read_results(str(tmp_path / 'a')), read_results(str(tmp_path / 'b')))


def test_compare_results_command_line(tmp_path):
    write_evaluation(tmp_path / 'run', [30.0, 40.0], [0.05, 0.06])
    write_evaluation(tmp_path / 'run' / 'eval' / 'MASK.CONF_THRE=1.0', [31.0, 42.0], [0.05, 0.08])
    proc = subprocess.run([sys.executable, 'tools/compare_results.py', str(tmp_path / 'run'),
                           str(tmp_path / 'run' / 'eval' / 'MASK.CONF_THRE=1.0'),
                           '--names', 'masked', 'unmasked'],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[2].split() == ['2', '40.00', '42.00', '0.0600', '0.0800',
                                                   '75%']

