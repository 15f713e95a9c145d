"""tools/calibrate.py: the sparse engine's calibration, run as docs/benchmarks.md writes it."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_calibrate_entry_point_runs_from_the_repository_root():
    proc = subprocess.run([sys.executable, 'tools/calibrate.py', '--help'], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert '--device' in proc.stdout and 'break-even' in proc.stdout


def test_the_policy_entry_is_what_policy_break_even_takes():
    """The CPU's entry is what the calibration's measurements give."""
    from models.sparse.calibrate import LAYERS, policy_entry
    from models.sparse.policy import BREAK_EVEN
    measured = list(zip(LAYERS, [0.5, 0.6, 0.7, 0.8, 0.6, 0.7]))  # the 2-core CPU's
    entry = policy_entry(measured)
    assert entry == BREAK_EVEN['cpu']
    assert list(entry) == list(BREAK_EVEN['cpu'])  # narrowest first: the first match applies
    assert policy_entry([((1, 8, 8, 4, 4), 0.0)]) == {(1, 256): 0.05}  # never faster


def test_break_even_bisects_to_the_last_density_where_sparse_is_faster(monkeypatch, capsys):
    """Sparse faster below 0.45 (timings made up): found with 4 of the 9 densities."""
    from models.sparse import calibrate

    def timed(fns, warmup, repeats, device):
        density = fns['sparse'].func.__self__.mask_density  # the engine's (below)
        return {'sparse': 1.0 if density > 0.45 else 0.5, 'dense': 0.75}
    monkeypatch.setattr(calibrate, 'interleaved_medians', timed)
    monkeypatch.setattr(calibrate, 'SegmentEngine', _EngineOf)
    assert calibrate.break_even(3, 4, 4, 8, 8) == 0.4
    probed = [line for line in capsys.readouterr().out.splitlines() if 'density' in line]
    assert 1 <= len(probed) <= 4
    monkeypatch.setattr(calibrate, 'interleaved_medians',
                        lambda fns, *a: {'sparse': 2.0, 'dense': 1.0})
    assert calibrate.break_even(3, 4, 4, 8, 8) == 0.0  # never faster


class _EngineOf:
    """Stands in for SegmentEngine: remembers the density of its masks."""

    def __init__(self, masks, policy):
        self.mask_density = masks.density

    def conv(self, *args, **kwargs):
        pass


def test_calibration_caches_a_table_per_dtype_that_auto_then_uses(monkeypatch,
                                                                  break_even_cache):
    import torch
    from models.sparse import calibrate, precision, tables
    monkeypatch.setattr(calibrate, 'break_even', lambda *layer, device: 0.3)
    monkeypatch.setattr(calibrate, 'calibration_dtypes',
                        lambda device: [torch.float32, torch.bfloat16])
    monkeypatch.setattr(precision, 'reduced_precision_units', lambda device: 'bf16 units')
    calibrate.main(['--threads', '1'])
    expected = calibrate.policy_entry([(layer, 0.3) for layer in calibrate.LAYERS])
    cpu = torch.device('cpu')
    keys = set(tables.read_cache(str(break_even_cache)))
    assert keys == {tables.machine_key(cpu, torch.float32),
                    tables.machine_key(cpu, torch.bfloat16)}
    assert tables.break_even_table(cpu) == expected
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert tables.break_even_table(cpu) == expected
