"""What every entry point in tools/ shares: its command line, its process setup and
how it reports errors.

    args = parse_command_line(default_argument_parser('Train ...'))
    launch(train, args)    # train(cfg, cfg_path, ctx) on every process

``KEY VALUE`` overrides may stand before, between or after the options: a word that
names a config key (``config.names_a_key``) starts an override wherever it stands, so
an option taking several values (``--image a.png b.png``) never swallows one.

A :class:`utils.errors.UserError` (a configuration, data, checkpoint, launch or run
directory problem) ends the tool with one ``error: <message>`` block on stderr and exit
status 2, without a traceback: the traceback goes to the run's log file, and to the
console with ``--debug`` or ``ADPC_DEBUG=1``. Under torchrun the block is printed by
rank 0 only (other ranks hand their message to torchrun, whose summary shows it as the
root cause), and every failing rank writes its message to torchrun's error file. Under
any launcher, a launch error that every process raises alike is printed by rank 0 only.
An ``OSError`` by which the machine refuses a write (no permission, a read-only or full
disk: ``utils.io.output_error``) is reported the same way, wherever it was raised. Any
other exception is a bug and keeps its traceback.

Ctrl-C (KeyboardInterrupt) ends the tool with one ``interrupted`` line on stderr (rank 0
only) and exit status 130, as a shell reports SIGINT: for an :class:`utils.errors.Interrupted`
it says where the work stood and gives the command line that continues it (the same
command plus its ``continue_with`` words, e.g. ``AUTO_RESUME True``).
"""
import argparse
import json
import logging
import os
import shlex
import sys
import time
import traceback

from torch.distributed.elastic.multiprocessing.errors import record

from config import config, names_a_key, update_config
from .distributed import add_launcher_arguments, barrier, cleanup, init_distributed
from .errors import Interrupted, UserError
from .io import output_error
from .launchers import HYDRA, MVAPICH, OPENMPI, SRUN, TORCH, find_placement
from .logger import FILE_ONLY, log_file_path

DEBUG_ENV = 'ADPC_DEBUG'
EXIT_USER_ERROR = 2  # as argparse's usage errors
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C
LAUNCHER_COMMANDS = {TORCH: 'torchrun', OPENMPI: 'mpirun', MVAPICH: 'mpirun_rsh',
                     HYDRA: 'mpirun', SRUN: 'srun'}


def default_argument_parser(description, cfg_help='experiment YAML file'):
    """``--cfg CFG [--debug] [--local-rank N] [KEY VALUE ...]``.

    Args:
        description (str): the tool's one-line description.
        cfg_help (str): help text of ``--cfg``.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--cfg', required=True, help=cfg_help)
    parser.add_argument('--debug', action='store_true',
                        help=f'print the traceback of configuration, data, checkpoint and '
                             f'launch errors too (or set {DEBUG_ENV}=1)')
    add_launcher_arguments(parser)
    add_overrides_argument(parser)
    return parser


def add_overrides_argument(parser):
    """The ``KEY VALUE ...`` config overrides of a tool parsed by :func:`parse_command_line`."""
    parser.add_argument('opts', nargs='*', default=[], metavar='KEY VALUE',
                        help='config overrides, before or after the options, e.g. '
                             'TRAIN.END_EPOCH 10')


def split_overrides(argv):
    """Take the ``KEY VALUE`` pairs out of a command line.

    Args:
        argv (list of str): the arguments, without the program name.
    Returns:
        tuple[list, list]: the other arguments, and the pairs (each word that names a
        config key, with the word after it, whatever that is: ``TRAIN.IGNORE_LABEL -1``).
    """
    rest, overrides, i = [], [], 0
    while i < len(argv):
        if names_a_key(argv[i]):
            overrides += argv[i:i + 2]
            i += 2
        else:
            rest.append(argv[i])
            i += 1
    return rest, overrides


def parse_command_line(parser, argv=None):
    """``parser``'s arguments, with every ``KEY VALUE`` override in ``args.opts``
    wherever it stood (see the module's docstring).

    Args:
        parser (argparse.ArgumentParser): with :func:`add_overrides_argument`.
        argv (list of str or None): default ``sys.argv[1:]``.
    """
    rest, overrides = split_overrides(sys.argv[1:] if argv is None else list(argv))
    args = parser.parse_intermixed_args(rest)
    if args.opts:  # words that are neither options, nor their values, nor keys
        parser.error(f'{args.opts[0]!r} is neither an option nor a config key (overrides '
                     'are KEY VALUE pairs, keys written as in lib/config/defaults.py, e.g. '
                     'MASK.CONF_THRE 0.9)')
    args.opts = overrides
    return args


def comma_floats(text):
    """argparse type of a comma-separated list of numbers: '0.1,0.5' -> [0.1, 0.5]."""
    return [float(v) for v in text.split(',')]


def launch(fn, args):
    """Merge ``args.cfg`` and ``args.opts`` into a copy of the default config, join the
    process group the launcher prepared (if any), run ``fn(cfg, cfg_path, ctx)`` and
    leave the group. A UserError is reported as described in the module's docstring and
    ends the process (SystemExit with status 2).

    Args:
        fn (callable): e.g. ``engine.train.train`` or ``evaluation.run.run_evaluation``.
        args (argparse.Namespace): from :func:`default_argument_parser`.

    Returns:
        whatever ``fn`` returns.
    """
    return record(reporting_user_errors(_run, getattr(args, 'debug', False)))(fn, args)


def _run(fn, args):
    cfg = update_config(config.clone(), args)
    ctx = init_distributed(args.local_rank, cfg.GPUS, gpus_typed='GPUS' in args.opts[::2])
    try:
        result = fn(cfg, args.cfg, ctx)
    except BaseException:
        cleanup()  # no barrier: the other ranks may never reach it
        raise
    barrier()  # every rank leaves the group together, as destroy_process_group expects
    cleanup()
    return result


def reporting_user_errors(fn, debug=False):
    """``fn`` wrapped so that a UserError it raises is reported as one ``error:`` block
    and ends the process with status 2, and Ctrl-C as one ``interrupted`` line with
    status 130 (see the module's docstring).

    Args:
        fn (callable): the tool's work, e.g. a tool's ``main``.
        debug (bool): also print the traceback on the console (as ``ADPC_DEBUG=1`` does).
    """
    debug = debug or os.environ.get(DEBUG_ENV, '') not in ('', '0')

    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            report_user_error(e, debug)
            raise SystemExit(EXIT_USER_ERROR) from None
        except OSError as e:
            refused = output_error(e)  # a write the machine refused, wherever it was made
            if refused is None:
                raise
            report_user_error(refused, debug)
            raise SystemExit(EXIT_USER_ERROR) from None
        except KeyboardInterrupt as e:
            report_interrupt(e, debug)
            raise SystemExit(EXIT_INTERRUPTED) from None
    return wrapper


def continue_command(words, placement=None):
    """The command line that continues the work of this process: the same one with
    ``words`` added; under a launcher, which cannot be read back from here, words.

    Args:
        words (list[str]): ``KEY VALUE`` words to add.
        placement (Placement or None): this process (default: from the environment).
    """
    placement = placement or find_placement()
    if placement.launcher:
        added = f' with {" ".join(words)} added' if words else ''
        return f'the same {LAUNCHER_COMMANDS[placement.launcher]} command{added}'
    # sys.orig_argv (Python 3.10+) holds the interpreter and its options as typed.
    argv = getattr(sys, 'orig_argv', None) or ['python'] + sys.argv
    return shlex.join(list(argv) + list(words))


def report_interrupt(error, debug=False):
    """Report Ctrl-C (``error``, being handled) as one line on stderr, on rank 0; the
    traceback goes to the log file (and the console when ``debug``)."""
    trace = traceback.format_exc()
    if log_file_path():
        logging.getLogger(FILE_ONLY).error(f'interrupted\n{trace}')
    if find_placement().rank != 0:
        return
    if debug:
        sys.stderr.write(trace)
    if isinstance(error, Interrupted):
        line = f'{error.message}; continue with: {continue_command(error.continue_with)}'
    else:
        line = 'interrupted'
    sys.stderr.write(f'\n{line}\n')  # after the ^C the terminal echoed
    sys.stderr.flush()


def report_user_error(error, debug=False):
    """Report ``error`` (being handled): traceback to the log file (and the console when
    ``debug``), the message to torchrun's error file and, on rank 0 or outside
    torchrun, to stderr (a LaunchError that every rank raises alike: on rank 0 only).

    Args:
        error (UserError): the exception.
        debug (bool): print the traceback on the console too.
    """
    trace = traceback.format_exc()
    log_file = log_file_path()
    if log_file:
        logging.getLogger(FILE_ONLY).error(f'error: {error}\n{trace}')
    error_file = os.environ.get('TORCHELASTIC_ERROR_FILE')
    if error_file:
        _write_error_file(error_file, f'error: {error}')
    if find_placement().rank != 0 and (error_file or getattr(error, 'every_rank', False)):
        return  # torchrun's summary shows it; rank 0 prints the errors all ranks share
    if debug:
        sys.stderr.write(trace)
    where = f'in {log_file}, or ' if log_file else ''
    hint = '' if debug else f'\n  (traceback: {where}on the console with --debug or {DEBUG_ENV}=1)'
    sys.stderr.write(f'error: {error}{hint}\n')
    sys.stderr.flush()


def _write_error_file(path, message):
    """The record torchrun's summary reads (the format of torch's ErrorHandler), with
    the message in place of the traceback, which the summary would print."""
    data = {'message': {'message': message,
                        'extraInfo': {'timestamp': str(int(time.time()))}}}
    with open(path, 'w') as f:
        json.dump(data, f)
