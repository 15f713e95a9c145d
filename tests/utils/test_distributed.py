import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp

from utils import distributed
from utils.distributed import DistContext, init_distributed
from launch_envs import (BATCH_SCRIPT, DOCUMENTED_LINES, HYDRA_PROCESS, OPENMPI_PROCESS,
                         RENDEZVOUS, SLURM_TASK_PER_GPU, SLURM_TORCHRUN_WORKER, srun_task)
from utils.errors import LaunchError
from utils.launchers import MPI_VARIABLES
from utils.launch import default_argument_parser

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAUNCH_VARS = ('WORLD_SIZE', 'RANK', 'LOCAL_RANK', 'LOCAL_WORLD_SIZE', 'MASTER_ADDR',
               'MASTER_PORT')
# Every variable of another launcher that utils.launchers reads.
OTHER_LAUNCHERS = tuple(v for names in MPI_VARIABLES.values() for v in names) + (
    'SLURM_JOB_ID', 'SLURM_NTASKS', 'SLURM_STEP_ID', 'SLURM_STEPID', 'SLURM_STEP_NUM_TASKS',
    'SLURM_PROCID', 'SLURM_LOCALID')


@pytest.fixture
def clean_env(monkeypatch):
    for name in LAUNCH_VARS + OTHER_LAUNCHERS:
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


@pytest.fixture
def gpus(clean_env):
    """A machine with 4 visible GPUs (as far as init_distributed can tell), and a process
    group that records how it was joined."""
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


def _set(monkeypatch, env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def test_srun_without_torchrun_or_rendezvous_is_refused(gpus, clean_env):
    _set(clean_env, srun_task(8, 3, 3))
    with pytest.raises(LaunchError, match='srun --ntasks-per-node 1 torchrun') as info:
        init_distributed()
    assert 'export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1) ' \
        'MASTER_PORT=29500' in str(info.value)
    assert info.value.every_rank
    assert not gpus  # no process group was joined


def test_srun_tasks_join_one_group_from_slurm_variables(gpus, clean_env):
    _set(clean_env, srun_task(8, 5, 1, **RENDEZVOUS))
    ctx = init_distributed()
    assert (ctx.rank, ctx.world_size, ctx.local_rank) == (5, 8, 1)
    assert ctx.device == torch.device('cuda', 1)
    assert (gpus['rank'], gpus['world_size'], gpus['backend']) == (5, 8, 'nccl')


def test_a_task_that_sees_one_gpu_uses_it(gpus, clean_env):
    # srun --gpus-per-task 1 (or --gpu-bind=single:1): SLURM_LOCALID counts 0..3 on the
    # node, but each task sees only its own GPU, as cuda:0.
    clean_env.setattr(torch.cuda, 'device_count', lambda: 1)
    _set(clean_env, SLURM_TASK_PER_GPU)
    ctx = init_distributed()
    assert (ctx.rank, ctx.world_size, ctx.local_rank) == (6, 8, 2)
    assert ctx.device == torch.device('cuda', 0)
    assert gpus['rank'] == 6 and gpus['world_size'] == 8


def test_torchrun_processes_sharing_one_gpu_are_refused(gpus, clean_env):
    # torchrun's processes on a node all see the same GPUs: one GPU, two processes.
    clean_env.setattr(torch.cuda, 'device_count', lambda: 1)
    _set(clean_env, dict(RANK='1', WORLD_SIZE='2', LOCAL_RANK='1', LOCAL_WORLD_SIZE='2',
                         MASTER_ADDR='127.0.0.1', MASTER_PORT='29500'))
    with pytest.raises(LaunchError, match='local rank 1 has no GPU'):
        init_distributed()
    assert not gpus


def test_readme_torchrun_per_node_under_srun_uses_torchruns_ranks(gpus, clean_env):
    _set(clean_env, SLURM_TORCHRUN_WORKER)
    ctx = init_distributed()
    assert (ctx.rank, ctx.world_size, ctx.device) == (6, 8, torch.device('cuda', 2))


@pytest.mark.parametrize('env', [OPENMPI_PROCESS, HYDRA_PROCESS, dict(
    MV2_COMM_WORLD_RANK='6', MV2_COMM_WORLD_SIZE='8', MV2_COMM_WORLD_LOCAL_RANK='2',
    **RENDEZVOUS)], ids=['openmpi', 'mpich', 'mvapich'])
def test_mpirun_processes_join_one_group_from_mpis_variables(gpus, clean_env, env):
    _set(clean_env, env)
    ctx = init_distributed()
    assert (ctx.rank, ctx.world_size, ctx.local_rank) == (6, 8, 2)
    assert ctx.device == torch.device('cuda', 2)
    assert (gpus['rank'], gpus['world_size'], gpus['backend']) == (6, 8, 'nccl')


@pytest.mark.parametrize('env, command', [
    (dict(OMPI_COMM_WORLD_RANK='1', OMPI_COMM_WORLD_SIZE='4', OMPI_COMM_WORLD_LOCAL_RANK='1'),
     'mpirun -np 4 -x MASTER_ADDR={host} -x MASTER_PORT=29500 python {argv}'),
    (dict(PMI_RANK='1', PMI_SIZE='4', MPI_LOCALRANKID='1'),
     'mpirun -np 4 -genv MASTER_ADDR {host} -genv MASTER_PORT 29500 python {argv}'),
    (dict(MV2_COMM_WORLD_RANK='1', MV2_COMM_WORLD_SIZE='4', MV2_COMM_WORLD_LOCAL_RANK='1'),
     'mpirun_rsh -np 4 -hostfile <hosts> MASTER_ADDR={host} MASTER_PORT=29500 python {argv}'),
], ids=['openmpi', 'mpich', 'mvapich'])
def test_mpirun_without_rendezvous_is_refused_with_the_command_to_use(
        gpus, clean_env, env, command):
    argv = ['tools/train_ee.py', '--cfg', 'w48.yaml']
    clean_env.setattr('sys.argv', argv)
    _set(clean_env, env)
    with pytest.raises(LaunchError) as info:
        init_distributed()
    message = str(info.value)
    assert '\n' not in message and info.value.every_rank
    assert message.endswith(command.format(host=socket.gethostname(), argv=' '.join(argv)))
    assert not gpus


@pytest.mark.parametrize('rendezvous', [{}, RENDEZVOUS], ids=['alone', 'with-rendezvous'])
def test_batch_script_of_several_tasks_runs_one_process(gpus, clean_env, caplog, rendezvous):
    # sbatch --ntasks 8 whose script runs python itself: no step of srun, so no peers
    # to wait for, even with MASTER_ADDR and MASTER_PORT exported.
    _set(clean_env, dict(BATCH_SCRIPT, **rendezvous))
    with caplog.at_level('WARNING', logger='utils.distributed'):
        ctx = init_distributed()
    assert (ctx.rank, ctx.world_size, ctx.device) == (0, 1, torch.device('cuda', 0))
    assert not gpus
    assert 'SLURM job has 8 tasks' in caplog.text and 'srun python' in caplog.text


def test_documented_launch_lines_are_the_tested_ones():
    page = open(os.path.join(ROOT, 'docs', 'clusters.md')).read()
    assert [line for line in DOCUMENTED_LINES if line not in page] == []


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


# One process of a launch: joins the group from the launcher's variables and sums the
# ranks + 1 over it.
JOIN = '''
import json, sys
sys.path.insert(0, sys.argv[1])
import torch
from utils.distributed import all_reduce, cleanup, init_distributed
ctx = init_distributed()
total = all_reduce(torch.tensor([ctx.rank + 1.0]))
cleanup()
print(json.dumps([ctx.rank, ctx.world_size, ctx.local_rank, str(ctx.device), total.item()]))
'''


def _process_env(launcher_env):
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS + OTHER_LAUNCHERS}
    return dict(env, CUDA_VISIBLE_DEVICES='', OMP_NUM_THREADS='1', **launcher_env)


@pytest.mark.parametrize('launcher', ['mpirun', 'srun'])
def test_two_processes_join_one_gloo_group_from_the_launchers_variables(launcher):
    # What mpirun -np 2 -x MASTER_ADDR -x MASTER_PORT, or srun -n 2 after exporting them,
    # gives each of its two processes on one node.
    port = str(_free_port())
    envs = {'mpirun': lambda r: dict(OMPI_COMM_WORLD_RANK=str(r), OMPI_COMM_WORLD_SIZE='2',
                                     OMPI_COMM_WORLD_LOCAL_RANK=str(r)),
            'srun': lambda r: srun_task(2, r, r)}[launcher]
    procs = [subprocess.Popen(
        [sys.executable, '-c', JOIN, os.path.join(ROOT, 'lib')], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        env=_process_env(dict(envs(r), MASTER_ADDR='127.0.0.1', MASTER_PORT=port)))
        for r in (0, 1)]
    outputs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err[-2000:]
            outputs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert outputs == [[0, 2, 0, 'cpu', 3.0], [1, 2, 1, 'cpu', 3.0]]
