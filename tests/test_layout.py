"""The layout of lib/ shows the architecture (docs/layout.md): packages in layers, no
import going up a layer or closing a cycle, no module too long to read; the page's tree
names every package and tool, and only files that exist.

Layers, from the top: tools -> {anytime, engine} -> evaluation -> {models, datasets} ->
utils -> config. An import may skip layers downwards; packages of one layer know nothing
of each other. Imports inside functions count as much as those at the top of a module.
"""
import ast
import os
import re

import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
LIB = os.path.join(ROOT, 'lib')
LAYOUT_PAGE = os.path.join(ROOT, 'docs', 'layout.md')
LAYER = {'config': 0, 'utils': 1, 'models': 2, 'datasets': 2, 'evaluation': 3,
         'engine': 4, 'anytime': 4}
MAX_LINES = 450


def lib_modules(root):
    """``{'pkg.mod': path}`` for every Python file under ``root`` (``pkg`` for __init__)."""
    modules = {}
    for folder, _, files in os.walk(root):
        for name in files:
            if not name.endswith('.py'):
                continue
            path = os.path.join(folder, name)
            parts = os.path.relpath(path, root)[:-3].split(os.sep)
            if parts[-1] == '__init__':
                parts = parts[:-1]
            modules['.'.join(parts)] = path
    return modules


def imports_of(module, path, modules):
    """The lib modules that ``module`` imports (at any depth of its code), resolved to the
    most specific module that exists: ``from models import sparse`` -> ``models.sparse``."""
    is_package = path.endswith('__init__.py')
    found = set()
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split('.')[:len(module.split('.')) - node.level + is_package]
                prefix = '.'.join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module
            targets = [f'{prefix}.{alias.name}' for alias in node.names]
        else:
            continue
        for target in targets:
            parts = target.split('.')
            while parts and '.'.join(parts) not in modules:
                parts.pop()
            if parts and '.'.join(parts) != module:
                found.add('.'.join(parts))
    return found


def import_graph(root):
    modules = lib_modules(root)
    return {m: imports_of(m, p, modules) for m, p in modules.items()}, modules


def upward_imports(graph):
    """``(importer, imported)`` pairs that go up a layer or sideways between packages."""
    bad = []
    for module, targets in graph.items():
        here = module.split('.')[0]
        for target in targets:
            there = target.split('.')[0]
            if there != here and LAYER[there] >= LAYER[here]:
                bad.append((module, target))
    return sorted(bad)


def find_cycle(graph):
    """One import cycle as a list of modules (first == last), or None."""
    state = {}  # module -> 'open' while on the DFS stack, 'done' after

    def visit(module, stack):
        state[module] = 'open'
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 'open':
                return stack[stack.index(target):] + [target]
            if target not in state:
                cycle = visit(target, stack + [target])
                if cycle:
                    return cycle
        state[module] = 'done'
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module, [module])
            if cycle:
                return cycle
    return None


def long_modules(modules, limit=MAX_LINES):
    lengths = {m: sum(1 for _ in open(p)) for m, p in modules.items()}
    return {m: n for m, n in lengths.items() if n > limit}


def test_every_package_is_in_a_layer_and_says_what_it_holds():
    packages = {m for m, p in lib_modules(LIB).items() if p.endswith('__init__.py')
                and '.' not in m}
    assert packages == set(LAYER)
    assert not os.path.exists(os.path.join(LIB, 'core'))
    for package in packages:
        tree = ast.parse(open(os.path.join(LIB, package, '__init__.py')).read())
        doc = ast.get_docstring(tree)
        assert doc and len(doc.splitlines()) >= 2, f'lib/{package}/__init__.py needs a docstring'


def test_no_import_goes_up_a_layer():
    graph, _ = import_graph(LIB)
    assert upward_imports(graph) == []


def test_no_import_cycle():
    graph, _ = import_graph(LIB)
    assert find_cycle(graph) is None


def test_no_module_is_too_long_to_read():
    _, modules = import_graph(LIB)
    assert long_modules(modules) == {}


def write_tree(root, files):
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for package in LAYER:
        init = root / package / '__init__.py'
        if not init.exists():
            init.parent.mkdir(parents=True, exist_ok=True)
            init.write_text('')


@pytest.mark.parametrize('files, expected', [
    ({'utils/io.py': 'from models.flops import GIGA\n', 'models/flops.py': ''},
     [('utils.io', 'models.flops')]),
    ({'models/a.py': 'def f():\n    import datasets.lists\n', 'datasets/lists.py': ''},
     [('models.a', 'datasets.lists')]),
    ({'evaluation/run.py': 'from engine import train\n', 'engine/train.py': ''},
     [('evaluation.run', 'engine.train')]),
    ({'config/__init__.py': 'from utils.errors import ConfigError\n', 'utils/errors.py': ''},
     [('config', 'utils.errors')]),
    ({'engine/train.py': 'from evaluation.run import x\nfrom .epoch import y\n',
      'evaluation/run.py': '', 'engine/epoch.py': ''}, []),
])
def test_the_layer_check_catches_upward_and_sideways_imports(tmp_path, files, expected):
    write_tree(tmp_path, files)
    graph, _ = import_graph(str(tmp_path))
    assert upward_imports(graph) == expected


def test_the_cycle_check_catches_a_cycle_of_relative_imports(tmp_path):
    write_tree(tmp_path, {'evaluation/a.py': 'from .b import x\n',
                          'evaluation/b.py': 'def f():\n    from .c import y\n',
                          'evaluation/c.py': 'from evaluation import a\n'})
    graph, _ = import_graph(str(tmp_path))
    assert find_cycle(graph) == ['evaluation.a', 'evaluation.b', 'evaluation.c', 'evaluation.a']
    (tmp_path / 'evaluation' / 'c.py').write_text('')
    graph, _ = import_graph(str(tmp_path))
    assert find_cycle(graph) is None


def test_the_length_check_counts_lines(tmp_path):
    write_tree(tmp_path, {'models/big.py': 'x = 1\n' * (MAX_LINES + 1),
                          'models/ok.py': 'x = 1\n' * MAX_LINES})
    assert long_modules(lib_modules(str(tmp_path))) == {'models.big': MAX_LINES + 1}


def layout_entries(page_text):
    """``{folder: text}`` of the tree in a layout page: each line that starts with a
    folder (``lib/models/``) begins its entry, indented lines continue it."""
    tree = page_text.split('```\n')[1]
    entries, folder = {}, None
    for line in tree.splitlines():
        if line and not line[0].isspace():
            folder, line = line.split(None, 1)
        entries[folder] = entries.get(folder, '') + ' ' + line
    return entries


def layout_mismatches(page_text, root):
    """What the tree of a layout page gets wrong about ``root``: files it names that do
    not exist (a bare name in its entry's folder, a path from ``root``), lib packages and
    tools it does not name."""
    entries = layout_entries(page_text)
    wrong = [path for folder, text in entries.items()
             for name in re.findall(r'[\w/]+\.py', text)
             for path in [name if '/' in name else folder + name]
             if not os.path.exists(os.path.join(root, path))]
    packages = {f'lib/{p}/' for p in os.listdir(os.path.join(root, 'lib'))
                if os.path.isfile(os.path.join(root, 'lib', p, '__init__.py'))}
    wrong += sorted(packages - set(entries))
    tools = {f for f in os.listdir(os.path.join(root, 'tools'))
             if f.endswith('.py') and not f.startswith('_')}
    wrong += [f'tools/{f}' for f in sorted(tools)
              if not re.search(rf'\b{re.escape(f)}', entries.get('tools/', ''))]
    return wrong


def test_the_layout_page_names_what_is_there():
    assert layout_mismatches(open(LAYOUT_PAGE).read(), ROOT) == []


def test_the_layout_check_catches_a_stale_tree(tmp_path):
    for path in ('lib/models/__init__.py', 'lib/models/hrnet.py', 'lib/utils/__init__.py',
                 'tools/train_ee.py', 'tools/_init_paths.py', 'tools/predict.py'):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text('')
    page = ('# Layout\n\n```\nlib/models/   hrnet.py, exits.py (tools/train_ee.py,\n'
            '              tools/gone.py), sparse/ (sparse execution)\n'
            'tools/        train_ee.py\n```\n')
    assert layout_mismatches(page, str(tmp_path)) == [
        'lib/models/exits.py', 'tools/gone.py', 'lib/utils/', 'tools/predict.py']
