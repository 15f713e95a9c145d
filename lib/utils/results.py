"""An evaluation's results as written into its directory (``result.txt`` and
``test_stats.json``), and a side-by-side table of two evaluations of the same exits.

    a, b = read_results('output/run'), read_results('output/run/eval/MASK.CONF_THRE=1.0')
    print(comparison_table(a, b, ('masked', 'unmasked')))
"""
import json
import os

from .errors import RunDirectoryError

RESULT = 'result.txt'
STATS = 'test_stats.json'


def read_results(directory):
    """Per-exit mIoU (%) and GFLOPs of the evaluation written into ``directory``.

    Args:
        directory (str): a run or evaluation directory holding ``result.txt`` (mIoU % of
            each exit, then their mean, tab-separated) and ``test_stats.json``.

    Returns:
        dict: ``miou`` and ``gflops``, lists with one float per exit.

    Raises:
        RunDirectoryError: a file is missing or does not hold one figure per exit.
    """
    paths = [os.path.join(directory, name) for name in (RESULT, STATS)]
    for path in paths:
        if not os.path.isfile(path):
            raise RunDirectoryError(f'{path} does not exist: evaluate the run first '
                                    '(python tools/test_ee.py --cfg <run>/config.yaml)')
    with open(paths[0]) as f:
        miou = [float(v) for v in f.read().split()][:-1]  # the last figure is the mean
    with open(paths[1]) as f:
        gflops = [float(v) for v in json.load(f)['Gflops']]
    if not miou or len(miou) != len(gflops):
        raise RunDirectoryError(f'{directory}: {RESULT} gives {len(miou)} exits and {STATS} '
                                f'{len(gflops)}; evaluate the run again')
    return {'miou': miou, 'gflops': gflops}


def comparison_table(first, second, names=('first', 'second')):
    """Per-exit mIoU and GFLOPs of two evaluations side by side, with the GFLOPs ratio.

    Args:
        first (dict): ``read_results`` of one evaluation.
        second (dict): ``read_results`` of the other (same number of exits).
        names (tuple[str, str]): column labels of the two evaluations.

    Returns:
        str: the table, one line per exit plus a header.

    Raises:
        RunDirectoryError: the two evaluations have different numbers of exits.
    """
    if len(first['miou']) != len(second['miou']):
        raise RunDirectoryError(f"the evaluations have {len(first['miou'])} and "
                                f"{len(second['miou'])} exits: compare runs of one model")
    a, b = names
    headers = [f'mIoU {a}', f'mIoU {b}', f'GFLOPs {a}', f'GFLOPs {b}', f'{a}/{b}']
    lines = ['exit' + ''.join(f'{h:>{len(h) + 3}}' for h in headers)]
    rows = zip(first['miou'], second['miou'], first['gflops'], second['gflops'])
    for k, (m1, m2, g1, g2) in enumerate(rows, start=1):
        ratio = f'{100 * g1 / g2:.0f}%' if g2 else '-'
        cells = [f'{m1:.2f}', f'{m2:.2f}', f'{g1:.4f}', f'{g2:.4f}', ratio]
        lines.append(f'{k:<4}' + ''.join(f'{c:>{len(h) + 3}}' for c, h in zip(cells, headers)))
    return '\n'.join(lines)
