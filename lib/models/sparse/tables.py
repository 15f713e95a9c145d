"""Where MASK.EXECUTION 'auto' takes its break-even densities from.

Break-even densities depend on the device, the dtype the engine computes in, the thread
count and the torch version (its kernels). ``tools/calibrate.py`` measures them on the
machine it runs on (tens of seconds: see ``models.sparse.calibrate``) and caches them in

    $ADPC_BREAK_EVEN, or $XDG_CACHE_HOME/adpc/break_even.json (~/.cache/adpc/...)

under a key naming the device, torch version, dtype and threads. 'auto' uses the table
of its key when the cache holds one, and otherwise the shipped table of its device type
(:data:`SHIPPED`, measured in float32 on a 2-core CPU); without either it runs dense.
The log says once per process which table each key uses and where it came from.

Calibration is not automatic at first use: it would take tens of seconds in the middle
of the first forward (a deadline of ``anytime.predictor`` missed, a latency profile or a
benchmark timing the calibration) and measure a machine busy with the caller's work. The
log line of the shipped table says how to calibrate.

A cache file that cannot be read, is not JSON, or is not a cache of this format version
(another program's file, another version's) is ignored with one log line; writes are
atomic and never replace such a file; an unwritable cache folder is one warning line.
"""
import datetime
import json
import logging
import os

import torch

from utils.errors import OutputError
from utils.io import save_json
from utils.runtime import device_name
from .precision import segment_dtype

logger = logging.getLogger(__name__)

CACHE_ENV = 'ADPC_BREAK_EVEN'  # moves the cache file (tests point it at tmp_path)
FORMAT = 'adpc-break-even/1'

# Per device type: (kernel size, up to this many output channels or None for any) ->
# density below which a sparse layer beats the engine's dense layer; the first matching
# entry applies. Measured with ``models.sparse.calibrate`` in float32 on a 2-core AMD
# CPU (torch 2.13, 2 threads); each lies halfway between the last measured density where
# sparse was faster and the first where it was not.
SHIPPED = {
    'cpu': {(3, 64): 0.55, (3, 128): 0.65, (3, 256): 0.75, (3, None): 0.85,
            (1, 256): 0.75, (1, None): 0.65},
}
SHIPPED_ORIGIN = 'float32 on a 2-core AMD CPU, torch 2.13, 2 threads'


def cache_path():
    """The cache file: $ADPC_BREAK_EVEN, else adpc/break_even.json in the user's cache
    folder ($XDG_CACHE_HOME, else ~/.cache)."""
    if os.environ.get(CACHE_ENV):
        return os.environ[CACHE_ENV]
    base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return os.path.join(base, 'adpc', 'break_even.json')


def compute_dtype(device):
    """The dtype the sparse engine computes a float32 model's segments in on ``device``
    (torch.device) here and now (``models.sparse.precision``): the autocast dtype under
    autocast where the device has units for it, else float32."""
    if device.type not in ('cpu', 'cuda'):  # no autocast elsewhere (e.g. 'meta')
        return torch.float32
    return segment_dtype(device, torch.float32)


def dtype_name(dtype):
    """'float32', 'bfloat16', ... of a torch dtype."""
    return str(dtype).replace('torch.', '')


def machine_key(device, dtype):
    """The cache key of ``device`` (torch.device) computing in ``dtype``: device name,
    torch version, dtype and (on the CPU) torch's thread count."""
    parts = [device_name(device), f'torch {torch.__version__}', dtype_name(dtype)]
    if device.type == 'cpu':
        parts.append(f'{torch.get_num_threads()} threads')
    return ' | '.join(parts)


def encode(table):
    """A table as JSON takes it: [[kernel, channel limit or None, density], ...]."""
    return [[kernel, channels, density] for (kernel, channels), density in table.items()]


def decode(rows):
    """The table of :func:`encode`'s rows; ValueError if they are not such rows."""
    if not isinstance(rows, list) or not rows:
        raise ValueError('not a non-empty list')
    table = {}
    for row in rows:
        if not (isinstance(row, list) and len(row) == 3 and row[0] in (1, 3)
                and (row[1] is None or isinstance(row[1], int))
                and isinstance(row[2], (int, float)) and 0 <= row[2] <= 1):
            raise ValueError(f'{row!r} is not [kernel 1 or 3, channels, density in 0..1]')
        table[(row[0], row[1])] = float(row[2])
    return table


def read_cache(path):
    """The cached tables ``{key: {'break_even': rows, ...}}`` of ``path``; {} where it does
    not exist. Raises ValueError (saying why) for a file that is not a readable cache of
    this format version."""
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    except (FileNotFoundError, NotADirectoryError):  # nothing cached there (yet)
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f'cannot be read as JSON ({e})') from None
    if not isinstance(data, dict) or data.get('format') != FORMAT \
            or not isinstance(data.get('tables'), dict):
        found = data.get('format') if isinstance(data, dict) else type(data).__name__
        raise ValueError(f'not a break-even cache of format {FORMAT!r} (found {found!r})')
    return data['tables']


def store_table(key, table, seconds):
    """Cache ``table`` under ``key`` (atomically, keeping the other keys).

    Returns:
        str or None: the file written; None (after one warning) where it could not be.
    """
    path = cache_path()
    try:
        tables = read_cache(path)
    except ValueError as e:
        logger.warning(f'break-even densities not cached: {path} {e}; it is left as it is '
                       f'(delete it, or set {CACHE_ENV} to another file)')
        return None
    tables[key] = {'break_even': encode(table), 'seconds': round(seconds, 1),
                   'measured': datetime.datetime.now().isoformat(timespec='seconds')}
    try:
        save_json(path, {'format': FORMAT, 'tables': tables})
    except (OSError, OutputError) as e:  # OutputError: a refused write, already worded
        logger.warning(f'break-even densities not cached: cannot write {path} ({e}); set '
                       f'{CACHE_ENV} to a writable file')
        return None
    return path


def _cached_table(path, key):
    """The table cached under ``key`` in ``path``, or None (one log line if the file or its
    entry is unusable)."""
    try:
        entry = read_cache(path).get(key)
        return None if entry is None else decode(entry.get('break_even'))
    except (ValueError, AttributeError) as e:
        logger.info(f'ignoring the break-even cache {path}: {e}')
        return None


# (cache path, key) -> table or None: each resolved, and logged, once per process.
_resolved = {}


def break_even_table(device):
    """The break-even table of 'auto' on ``device`` (torch.device) in the dtype the engine
    computes in now (:func:`compute_dtype`): this machine's from the cache, else the
    shipped one of the device type, else None ('auto' runs dense)."""
    path, key = cache_path(), machine_key(device, compute_dtype(device))
    if (path, key) not in _resolved:
        table = _cached_table(path, key)
        if table is not None:
            logger.info(f"MASK.EXECUTION 'auto': break-even densities measured on this "
                        f'machine ({key}), from {path}')
        elif device.type in SHIPPED:
            table = SHIPPED[device.type]
            logger.info(f"MASK.EXECUTION 'auto': the shipped break-even densities "
                        f'({SHIPPED_ORIGIN}), none measured for {key} in {path}; measure '
                        f'them with: python tools/calibrate.py --device {device.type}'
                        + (f' --threads {torch.get_num_threads()}'
                           if device.type == 'cpu' else ''))
        _resolved[(path, key)] = table
    return _resolved[(path, key)]
