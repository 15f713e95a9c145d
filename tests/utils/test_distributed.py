import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from utils import distributed
from utils.distributed import DistContext, init_distributed
from utils.errors import LaunchError
from utils.launch import default_argument_parser

LAUNCH_VARS = ('WORLD_SIZE', 'RANK', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')


@pytest.fixture
def clean_env(monkeypatch):
    for name in LAUNCH_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    return monkeypatch


@pytest.mark.parametrize('flag', ['--local-rank=1', '--local_rank=1'])
def test_both_spellings_of_the_legacy_launcher_argument(flag):
    # The legacy launcher puts its flag before the script's own arguments.
    args = default_argument_parser('tool').parse_args([flag, '--cfg', 'x.yaml', 'TRAIN.LR', '0.1'])
    assert args.local_rank == 1 and args.cfg == 'x.yaml' and args.opts == ['TRAIN.LR', '0.1']


def test_without_launcher_flag_local_rank_is_unset():
    args = default_argument_parser('tool').parse_args(['--cfg', 'x.yaml'])
    assert args.local_rank is None and args.opts == []


def test_plain_python_is_a_single_cpu_process(clean_env):
    ctx = init_distributed(None)
    assert ctx == DistContext(0, 1, 0, torch.device('cpu'))
    assert ctx.is_main and not ctx.distributed


def test_launcher_with_one_process_needs_no_process_group(clean_env):
    clean_env.setenv('WORLD_SIZE', '1')
    clean_env.setenv('RANK', '0')
    clean_env.setenv('LOCAL_RANK', '0')
    ctx = init_distributed(local_rank=0)
    assert not ctx.distributed and not torch.distributed.is_initialized()


def test_several_processes_without_rendezvous_address_say_how_to_launch(clean_env):
    clean_env.setenv('WORLD_SIZE', '2')
    clean_env.setenv('RANK', '1')
    with pytest.raises(LaunchError, match='torchrun --nproc_per_node'):
        init_distributed()


def test_wrap_model_is_identity_on_one_process():
    model = torch.nn.Linear(2, 2)
    wrapped = distributed.wrap_model(model, DistContext())
    assert wrapped is model and distributed.unwrap(wrapped) is model


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class ValueCounter:
    """An image costs the number that stands in for its masks, at every exit."""

    def gflops(self, input_shape, masks):
        return torch.tensor([[masks[0]] * 4], dtype=torch.float64)

    def params(self, input_size):
        return [7] * 4


def _worker(rank, port, out_path):
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', 'lib'))
    os.environ.update(WORLD_SIZE='2', RANK=str(rank), LOCAL_RANK=str(rank),
                      MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    from datasets.loaders import ShardSampler
    from evaluation.metrics import ConfusionMatrix, FlopsMeter
    from utils.distributed import cleanup, init_distributed
    ctx = init_distributed()
    try:
        labels = torch.arange(5) % 3  # 5 "images" of one pixel each
        mine = list(ShardSampler(5, ctx.rank, ctx.world_size))
        cm = ConfusionMatrix(3)
        meter = FlopsMeter(ValueCounter())
        for i in mine:
            cm.update(torch.nn.functional.one_hot(labels[i:i + 1], 3).float().view(1, 3, 1, 1),
                      labels[i:i + 1].view(1, 1, 1))
            meter.update((1, 3, 1, 1), [float(i)])
        cm.reduce_from_all_processes()
        meter.reduce_from_all_processes(4)
        if ctx.is_main:
            torch.save({'mat': cm.mat, 'gflops': meter.gflops(), 'count': meter.count,
                        'params': meter.params, 'shards': mine}, out_path)
    finally:
        cleanup()


def test_two_gloo_processes_sum_confusion_matrices_and_flops_exactly(tmp_path):
    out = str(tmp_path / 'rank0.pt')
    mp.spawn(_worker, args=(_free_port(), out), nprocs=2, join=True)
    result = torch.load(out, weights_only=True)
    # Every image counted once over both shards (no padding duplicates).
    assert result['shards'] == [0, 2, 4]
    assert torch.equal(result['mat'], torch.diag(torch.tensor([2, 2, 1])))
    assert result['count'] == 5
    assert result['gflops'] == pytest.approx([2.0] * 4)  # mean of 0..4
    assert result['params'] == [7] * 4


OTHER_LAUNCHERS = ('SLURM_NTASKS', 'SLURM_STEP_NUM_TASKS', 'SLURM_PROCID', 'SLURM_LOCALID',
                   'OMPI_COMM_WORLD_LOCAL_RANK', 'MV2_COMM_WORLD_LOCAL_RANK', 'MPI_LOCALRANKID')


@pytest.fixture
def gpus(clean_env):
    """A machine with 4 visible GPUs (as far as init_distributed can tell), and a process
    group that records how it was joined."""
    for name in OTHER_LAUNCHERS:
        clean_env.delenv(name, raising=False)
    clean_env.setattr(torch.cuda, 'is_available', lambda: True)
    clean_env.setattr(torch.cuda, 'device_count', lambda: 4)
    clean_env.setattr(torch.cuda, 'set_device', lambda device: None)
    joined = {}
    clean_env.setattr(torch.distributed, 'init_process_group',
                      lambda **kwargs: joined.update(kwargs))
    clean_env.setattr(torch.distributed, 'is_initialized', lambda: bool(joined))
    return joined


def test_single_process_warns_with_the_torchrun_command_for_the_listed_gpus(gpus, caplog,
                                                                            monkeypatch):
    monkeypatch.setattr('sys.argv', ['tools/train_ee.py', '--cfg', 'w48.yaml'])
    with caplog.at_level('WARNING', logger='utils.distributed'):
        ctx = init_distributed(None, gpus=(0, 1, 2, 3))
    assert ctx.device == torch.device('cuda', 0) and not ctx.distributed
    assert 'torchrun --nproc_per_node 4 tools/train_ee.py --cfg w48.yaml' in caplog.text
    caplog.clear()
    with caplog.at_level('WARNING', logger='utils.distributed'):
        init_distributed(None, gpus=(2, 3))
    assert 'CUDA_VISIBLE_DEVICES=2,3 torchrun --nproc_per_node 2' in caplog.text
    caplog.clear()
    with caplog.at_level('WARNING', logger='utils.distributed'):
        init_distributed(None, gpus=(0,))
    assert caplog.text == ''


def test_srun_without_torchrun_or_rendezvous_is_refused(gpus, clean_env):
    for name, value in dict(SLURM_NTASKS='8', SLURM_PROCID='3', SLURM_LOCALID='3').items():
        clean_env.setenv(name, value)
    with pytest.raises(LaunchError, match='srun --ntasks-per-node 1 torchrun'):
        init_distributed()
    assert not gpus  # no process group was joined


def test_srun_tasks_join_one_group_from_slurm_variables(gpus, clean_env):
    for name, value in dict(SLURM_NTASKS='8', SLURM_PROCID='5', SLURM_LOCALID='1',
                            MASTER_ADDR='node1', MASTER_PORT='29500').items():
        clean_env.setenv(name, value)
    ctx = init_distributed()
    assert (ctx.rank, ctx.world_size, ctx.local_rank) == (5, 8, 1)
    assert ctx.device == torch.device('cuda', 1)
    assert (gpus['rank'], gpus['world_size'], gpus['backend']) == (5, 8, 'nccl')


@pytest.mark.parametrize('variable', ['OMPI_COMM_WORLD_LOCAL_RANK', 'SLURM_LOCALID'])
def test_mpirun_local_rank_comes_from_the_launchers_variables(gpus, clean_env, variable):
    for name, value in {'RANK': '3', 'WORLD_SIZE': '4', variable: '1',
                        'MASTER_ADDR': 'node0', 'MASTER_PORT': '29500'}.items():
        clean_env.setenv(name, value)
    ctx = init_distributed()
    assert (ctx.rank, ctx.local_rank, ctx.device) == (3, 1, torch.device('cuda', 1))


def test_mpirun_without_any_local_rank_is_refused(gpus, clean_env):
    for name, value in dict(RANK='3', WORLD_SIZE='4', MASTER_ADDR='node0',
                            MASTER_PORT='29500').items():
        clean_env.setenv(name, value)
    with pytest.raises(LaunchError, match='LOCAL_RANK.*cuda:0'):
        init_distributed()
