"""tools/gpu_check.sh needs a GPU to run, so the suite checks what it can without one:
the script parses, and every name its Python snippets import exists."""
import importlib
import os
import re
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, 'tools', 'gpu_check.sh')


def test_gpu_check_script_parses():
    proc = subprocess.run(['bash', '-n', SCRIPT], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_every_name_the_gpu_check_imports_exists():
    imports = re.findall(r'^from ([\w.]+) import ([\w, ]+)$', open(SCRIPT).read(), re.M)
    assert len(imports) >= 6  # the snippets' project imports were found
    missing = [f'{module}.{name.strip()}' for module, names in imports
               for name in names.split(',')
               if not hasattr(importlib.import_module(module), name.strip())]
    assert missing == []
