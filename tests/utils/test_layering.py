"""utils/ stays below everything it serves: it imports nothing of models, core or datasets
(issue 10, section 7), so that those packages may import utils without a cycle."""
import ast
import glob
import os

LIB = os.path.join(os.path.dirname(__file__), '..', '..', 'lib')
ABOVE_UTILS = ('models', 'core', 'datasets')


def imported_packages(path):
    tree = ast.parse(open(path).read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name.split('.')[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module.split('.')[0]
        elif isinstance(node, ast.ImportFrom) and node.level > 1:
            yield '..'  # above utils/ by a relative path


def test_utils_imports_nothing_above_it():
    files = sorted(glob.glob(os.path.join(LIB, 'utils', '*.py')))
    assert files
    offending = {os.path.basename(path): sorted(set(imported_packages(path))
                                                & set(ABOVE_UTILS + ('..',)))
                 for path in files}
    assert {name: found for name, found in offending.items() if found} == {}
