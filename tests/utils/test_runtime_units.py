"""utils.runtime's reading of the CPU's bfloat16 units."""
import torch

from utils.runtime import cpu_bf16_units, reduced_precision_units


def _cpuinfo(tmp_path, flags):
    path = tmp_path / f'cpuinfo-{len(list(tmp_path.iterdir()))}'  # read once per path
    path.write_text(f'processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n')
    return str(path)


def test_bf16_units_are_read_from_the_flags_line(tmp_path):
    assert cpu_bf16_units(_cpuinfo(tmp_path, 'fpu avx2 avx512f avx512_bf16 amx_bf16')) \
        == ('amx_bf16', 'avx512_bf16')
    assert cpu_bf16_units(_cpuinfo(tmp_path, 'fpu avx2 avx512f amx_tile')) == ()


def test_no_cpuinfo_means_no_units(tmp_path):
    assert cpu_bf16_units(str(tmp_path / 'missing')) == ()


def test_the_cpu_is_described_by_its_units_or_none():
    units = reduced_precision_units(torch.device('cpu'))
    assert units == (', '.join(cpu_bf16_units()) or None)
