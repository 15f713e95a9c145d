"""The tools' error report: a UserError is one `error:` block on stderr and exit status
2, its traceback in the log file (and on the console only when asked for); Ctrl-C is one
line and exit status 130; any other exception keeps its traceback."""
import ast
import json
import os
import sys

import pytest

from utils.errors import DataError, Interrupted
from utils.launchers import MPI_VARIABLES, SRUN, TORCH, Placement
from utils.launch import continue_command, default_argument_parser, launch
from utils.logger import setup_logger

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, 'experiments', 'synthetic', 'tiny_adpc.yaml')
# torch's error recorder cannot enable faulthandler on pytest's captured stderr.
pytestmark = pytest.mark.filterwarnings('ignore:Unable to enable fault handler')
MESSAGE = 'list/cityscapes/val.lst: 2 images are missing\n  a.png\n  b.png'


@pytest.fixture(autouse=True)
def single_process(monkeypatch):
    for name in ('WORLD_SIZE', 'RANK', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT',
                 'TORCHELASTIC_ERROR_FILE', 'ADPC_DEBUG', 'SLURM_STEP_ID', 'SLURM_STEPID') + \
            tuple(v for names in MPI_VARIABLES.values() for v in names):
        monkeypatch.delenv(name, raising=False)


def launch_tool(fn, *argv):
    args = default_argument_parser('test').parse_args(['--cfg', TINY] + list(argv))
    with pytest.raises(SystemExit) as info:
        launch(fn, args)
    return info.value.code


def fail_with_data_error(cfg, cfg_path, ctx):
    raise DataError(MESSAGE)


def test_user_error_is_one_error_block_without_traceback(capsys):
    assert launch_tool(fail_with_data_error) == 2
    out, err = capsys.readouterr()
    assert err.startswith(f'error: {MESSAGE}\n')
    assert err.count('error:') == 1 and 'Traceback' not in err + out
    assert 'ADPC_DEBUG=1' in err and '--debug' in err


def test_traceback_goes_to_the_log_file(tmp_path, capsys):
    def fail_after_logging(cfg, cfg_path, ctx):
        setup_logger(str(tmp_path), 'tiny', 'train')
        raise DataError(MESSAGE)

    assert launch_tool(fail_after_logging) == 2
    err = capsys.readouterr().err
    (log,) = tmp_path.glob('tiny_*_train.log')
    text = log.read_text()
    assert 'Traceback' in text and 'fail_after_logging' in text and MESSAGE in text
    assert str(log) in err and 'Traceback' not in err


@pytest.mark.parametrize('how', ['flag', 'env'])
def test_debug_prints_the_traceback(how, monkeypatch, capsys):
    if how == 'env':
        monkeypatch.setenv('ADPC_DEBUG', '1')
    assert launch_tool(fail_with_data_error, *(['--debug'] if how == 'flag' else [])) == 2
    err = capsys.readouterr().err
    assert 'Traceback' in err and 'fail_with_data_error' in err
    assert err.count(f'error: {MESSAGE}') == 1


def test_config_error_is_reported_before_the_tool_runs(capsys):
    ran = []
    assert launch_tool(lambda *a: ran.append(a), 'SOLVER.BASE_LR', '0.1') == 2
    err = capsys.readouterr().err
    assert not ran
    assert err.startswith('error: unknown config key SOLVER.BASE_LR on the command line; '
                          'did you mean TRAIN.LR?')


def test_other_exceptions_keep_their_traceback():
    def bug(cfg, cfg_path, ctx):
        raise ZeroDivisionError('a bug')

    args = default_argument_parser('test').parse_args(['--cfg', TINY])
    with pytest.raises(ZeroDivisionError, match='a bug'):
        launch(bug, args)


def test_under_torchrun_the_message_goes_to_the_error_file(tmp_path, monkeypatch, capsys):
    error_file = tmp_path / 'error.json'
    monkeypatch.setenv('TORCHELASTIC_ERROR_FILE', str(error_file))
    monkeypatch.setenv('RANK', '1')
    assert launch_tool(fail_with_data_error) == 2
    assert capsys.readouterr().err == ''  # rank 1: torchrun's summary shows it
    record = json.loads(error_file.read_text())['message']
    assert record['message'] == f'error: {MESSAGE}'
    assert 'py_callstack' not in record['extraInfo']  # the summary would print it

    monkeypatch.setenv('RANK', '0')
    assert launch_tool(fail_with_data_error) == 2
    assert capsys.readouterr().err.startswith(f'error: {MESSAGE}\n')


def test_mpirun_without_rendezvous_is_one_error_line_from_rank_0(monkeypatch, capsys):
    # mpirun -np 2 python tools/train_ee.py ...: both processes refuse, rank 0 says why.
    monkeypatch.setattr('torch.cuda.is_available', lambda: False)
    monkeypatch.setattr('sys.argv', ['tools/train_ee.py', '--cfg', 'tiny.yaml'])
    monkeypatch.setenv('OMPI_COMM_WORLD_SIZE', '2')
    monkeypatch.setenv('OMPI_COMM_WORLD_RANK', '1')
    assert launch_tool(fail_with_data_error) == 2
    assert capsys.readouterr().err == ''
    monkeypatch.setenv('OMPI_COMM_WORLD_RANK', '0')
    assert launch_tool(fail_with_data_error) == 2
    first, *hint = capsys.readouterr().err.splitlines()
    assert first.startswith('error: mpirun (OpenMPI) started 2 processes')
    assert first.endswith('-x MASTER_PORT=29500 python tools/train_ee.py --cfg tiny.yaml')
    assert len(hint) == 1 and '--debug' in hint[0]


def test_ctrl_c_is_one_line_with_the_command_that_continues(monkeypatch, capsys):
    def interrupted(cfg, cfg_path, ctx):
        raise Interrupted('training interrupted in epoch 2/3', ['AUTO_RESUME', 'True'])

    monkeypatch.setattr(sys, 'orig_argv', ['python', 'tools/train_ee.py', '--cfg', 'a b.yaml'])
    assert launch_tool(interrupted) == 130
    out, err = capsys.readouterr()
    assert err.strip() == ("training interrupted in epoch 2/3; continue with: python "
                           "tools/train_ee.py --cfg 'a b.yaml' AUTO_RESUME True")
    assert 'Traceback' not in out + err


def test_ctrl_c_anywhere_else_is_one_line_too(capsys):
    def interrupted(cfg, cfg_path, ctx):
        raise KeyboardInterrupt

    assert launch_tool(interrupted) == 130
    out, err = capsys.readouterr()
    assert err.strip() == 'interrupted' and 'Traceback' not in out


def test_under_a_launcher_the_continuing_command_is_described():
    torchrun = Placement(rank=0, world_size=2, local_rank=0, launcher=TORCH)
    assert continue_command(['AUTO_RESUME', 'True'], torchrun) == \
        'the same torchrun command with AUTO_RESUME True added'
    assert continue_command([], Placement(launcher=SRUN)) == 'the same srun command'


def run_on(cfg, cfg_path, ctx):
    return ctx.device.type


@pytest.mark.parametrize('gpus', ['(0,1)', '(0,)'])
def test_gpus_typed_where_no_gpu_is_visible_is_one_error_line(gpus, monkeypatch, capsys):
    monkeypatch.setattr('torch.cuda.is_available', lambda: False)
    monkeypatch.delenv('CUDA_VISIBLE_DEVICES', raising=False)
    assert launch_tool(run_on, 'GPUS', gpus) == 2
    first, *hint = capsys.readouterr().err.splitlines()
    assert first.startswith(f'error: GPUS {ast.literal_eval(gpus)} on the command line names '
                            'GPUs, but no GPU '
                            'is visible here'), first
    assert 'leave GPUS out (or give GPUS "()") to run on the CPU' in first
    assert len(hint) == 1


@pytest.mark.parametrize('argv,hidden', [([], False), (['GPUS', '()'], False),
                                         (['GPUS', '(0,1)'], True)],
                         ids=['from the file', 'no GPU asked', 'GPUs hidden on purpose'])
def test_the_cpu_by_intent_runs(argv, hidden, monkeypatch, capsys):
    monkeypatch.setattr('torch.cuda.is_available', lambda: False)
    if hidden:
        monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '')
    else:
        monkeypatch.delenv('CUDA_VISIBLE_DEVICES', raising=False)
    args = default_argument_parser('test').parse_args(['--cfg', TINY] + argv)
    assert launch(run_on, args) == 'cpu'
    assert 'error' not in capsys.readouterr().err
