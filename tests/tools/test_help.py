"""``-h`` of every tool describes it with the whole first paragraph of its docstring,
never a sentence cut at the end of the docstring's first line."""
import ast
import os

import pytest

from test_unwritable_outputs import TOOLS, run_tool

DESCRIBED = ['benchmark.py', 'compare_results.py', 'convert_checkpoint.py', 'get_flops.py',
             'make_cityscapes_lists.py', 'make_synthetic_cityscapes.py', 'nproc_per_node.py',
             'predict.py', 'profile_latency.py', 'sweep_threshold.py', 'time_eval_modes.py',
             'visualize.py']


@pytest.mark.parametrize('tool', DESCRIBED)
def test_help_gives_the_first_paragraph_whole(tool, monkeypatch, capsys):
    with open(os.path.join(TOOLS, tool)) as f:
        doc = ast.get_docstring(ast.parse(f.read()), clean=False)
    paragraph = ' '.join(doc.split('\n\n')[0].split())
    assert paragraph.endswith('.'), paragraph  # a whole sentence to give
    status, out, _ = run_tool([tool, '-h'], monkeypatch, capsys)
    assert status == 0
    assert paragraph in ' '.join(out.split()), out
