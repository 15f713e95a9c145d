"""config/ is the bottom layer: it imports nothing else of lib/, so that every package
may import it (utils.errors builds on config.errors, never the other way round)."""
import ast
import glob
import os

LIB = os.path.join(os.path.dirname(__file__), '..', '..', 'lib')


def lib_packages():
    return {name for name in os.listdir(LIB)
            if os.path.isdir(os.path.join(LIB, name)) and name != 'config'} | {
        os.path.splitext(name)[0] for name in os.listdir(LIB) if name.endswith('.py')}


def imported(path):
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.Import):
            yield from (alias.name.split('.')[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module.split('.')[0]
        elif isinstance(node, ast.ImportFrom) and node.level > 1:
            yield '..'


def test_config_imports_nothing_of_lib():
    files = sorted(glob.glob(os.path.join(LIB, 'config', '*.py')))
    above = lib_packages() | {'..'}
    assert 'utils' in above and files
    found = {os.path.basename(p): sorted(set(imported(p)) & above) for p in files}
    assert {name: names for name, names in found.items() if names} == {}


def test_utils_errors_are_the_config_errors():
    import config.errors
    import utils.errors
    assert utils.errors.ConfigError is config.errors.ConfigError
    assert utils.errors.UserError is config.errors.UserError
    assert issubclass(utils.errors.DataError, config.errors.UserError)
