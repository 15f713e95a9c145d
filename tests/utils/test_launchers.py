"""Each launcher's variables -> (rank, world size, local rank), and the number of processes
the quick start starts."""
import os
import subprocess

import pytest
import torch

from launch_envs import BATCH_SCRIPT, srun_task
from utils.launchers import (HYDRA, MVAPICH, OPENMPI, SRUN, TORCH, Placement, find_placement,
                             processes_per_node, slurm_job_tasks)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

@pytest.mark.parametrize('launcher, env', [
    (OPENMPI, dict(OMPI_COMM_WORLD_RANK='5', OMPI_COMM_WORLD_SIZE='8',
                   OMPI_COMM_WORLD_LOCAL_RANK='1', OMPI_COMM_WORLD_LOCAL_SIZE='4')),
    (MVAPICH, dict(MV2_COMM_WORLD_RANK='5', MV2_COMM_WORLD_SIZE='8',
                   MV2_COMM_WORLD_LOCAL_RANK='1')),
    (HYDRA, dict(PMI_RANK='5', PMI_SIZE='8', MPI_LOCALRANKID='1', MPI_LOCALNRANKS='4')),
    (SRUN, srun_task(8, 5, 1)),
])
def test_each_launcher_places_the_process_from_its_own_variables(launcher, env):
    assert find_placement(env) == Placement(5, 8, 1, launcher)


def test_a_batch_script_is_no_task_of_srun():
    # sbatch --ntasks 8 running python itself: one process, whatever SLURM_NTASKS says.
    assert find_placement(BATCH_SCRIPT) == Placement()
    assert slurm_job_tasks(BATCH_SCRIPT) == 8
    assert slurm_job_tasks(srun_task(8, 0, 0)) == 0
    assert slurm_job_tasks({}) == 0


def test_srun_with_its_old_step_variable_only():
    env = srun_task(4, 2, 2)
    del env['SLURM_STEP_ID']
    assert find_placement(env) == Placement(2, 4, 2, SRUN)


def test_srun_of_one_task_is_a_single_process():
    assert find_placement(srun_task(1, 0, 0)).world_size == 1


def test_torchrun_inside_srun_uses_torchruns_variables():
    # One torchrun per node (srun --ntasks-per-node 1), 4 workers each: worker 2 of node 1.
    env = srun_task(2, 1, 0, RANK='6', WORLD_SIZE='8', LOCAL_RANK='2', LOCAL_WORLD_SIZE='4')
    assert find_placement(env) == Placement(6, 8, 2, TORCH)


def test_mpirun_whose_daemons_srun_started_counts_mpis_processes():
    # Under SLURM, mpirun starts one daemon (OpenMPI) or proxy (hydra) per node with
    # srun; the processes inherit that step's variables: 2 tasks, one per node.
    daemons = srun_task(2, 1, 0)
    assert find_placement(dict(daemons, OMPI_COMM_WORLD_RANK='5', OMPI_COMM_WORLD_SIZE='8',
                               OMPI_COMM_WORLD_LOCAL_RANK='1')) == Placement(5, 8, 1, OPENMPI)
    assert find_placement(dict(daemons, PMI_RANK='5', PMI_SIZE='8', MPI_LOCALRANKID='1')) == \
        Placement(5, 8, 1, HYDRA)


def test_srun_with_pmi2_is_srun():
    # srun --mpi=pmi2 also sets PMI_RANK and PMI_SIZE, equal to its own.
    env = srun_task(8, 5, 1, PMI_RANK='5', PMI_SIZE='8')
    assert find_placement(env) == Placement(5, 8, 1, SRUN)


def test_mpi_without_a_local_rank_says_none():
    assert find_placement(dict(PMI_RANK='1', PMI_SIZE='2')) == Placement(1, 2, None, HYDRA)


@pytest.mark.parametrize('env, arg, expected', [
    # torchrun
    (dict(RANK='3', WORLD_SIZE='4', LOCAL_RANK='1'), None, Placement(3, 4, 1, TORCH)),
    # legacy launcher of an old torch: --local-rank, RANK and WORLD_SIZE
    (dict(RANK='3', WORLD_SIZE='4'), 1, Placement(3, 4, 1, TORCH)),
    # LOCAL_RANK wins over the argument
    (dict(RANK='3', WORLD_SIZE='4', LOCAL_RANK='2'), 1, Placement(3, 4, 2, TORCH)),
    # a launcher that sets RANK and WORLD_SIZE only: the local rank from MPI's variables
    (dict(RANK='3', WORLD_SIZE='4', OMPI_COMM_WORLD_LOCAL_RANK='1'), None,
     Placement(3, 4, 1, TORCH)),
    (dict(RANK='3', WORLD_SIZE='4'), None, Placement(3, 4, None, TORCH)),
])
def test_torch_launchers(env, arg, expected):
    assert find_placement(env, arg) == expected


def test_plain_python_is_one_process():
    assert find_placement({}) == Placement(0, 1, None, '')


@pytest.mark.parametrize('gpus, expected', [(0, 2), (1, 1), (4, 4)])
def test_one_process_per_visible_gpu_else_two(monkeypatch, gpus, expected):
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: gpus)
    assert processes_per_node(cpu_processes=2) == expected


def test_quickstart_asks_for_its_process_count():
    # The script's own NPROC line, run as the script runs it, on a machine without GPUs.
    script = open(os.path.join(ROOT, 'scripts', 'quickstart.sh')).read()
    (line,) = [s for s in script.splitlines() if s.startswith('NPROC=')]
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='')
    env.pop('NPROC', None)
    out = subprocess.run(['bash', '-c', f'{line}; echo "$NPROC"'], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.strip() == '2'
    env['NPROC'] = '3'  # the user's choice wins
    out = subprocess.run(['bash', '-c', f'{line}; echo "$NPROC"'], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.strip() == '3'
