"""Where a launcher placed this process (its rank, the number of processes, its rank on
the node), read from the variables each launcher writes into the environment:

- torchrun, python -m torch.distributed.launch: RANK, WORLD_SIZE, LOCAL_RANK (or the
  --local-rank argument);
- OpenMPI's mpirun: OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE, OMPI_COMM_WORLD_LOCAL_RANK;
- MVAPICH's mpirun_rsh: MV2_COMM_WORLD_RANK, MV2_COMM_WORLD_SIZE, MV2_COMM_WORLD_LOCAL_RANK;
- MPICH's and Intel MPI's mpirun (hydra): PMI_RANK, PMI_SIZE, MPI_LOCALRANKID;
- SLURM's srun: SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_LOCALID.

Nothing here picks a device, joins a process group or refuses a launch: utils.distributed
does.
"""
import os
from dataclasses import dataclass
from typing import Optional

import torch

TORCH = 'torch'
OPENMPI = 'openmpi'
MVAPICH = 'mvapich'
HYDRA = 'hydra'
SRUN = 'srun'

# launcher: (rank, number of processes, rank on the node)
MPI_VARIABLES = {
    OPENMPI: ('OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_SIZE', 'OMPI_COMM_WORLD_LOCAL_RANK'),
    MVAPICH: ('MV2_COMM_WORLD_RANK', 'MV2_COMM_WORLD_SIZE', 'MV2_COMM_WORLD_LOCAL_RANK'),
    HYDRA: ('PMI_RANK', 'PMI_SIZE', 'MPI_LOCALRANKID'),
}
# Per-node rank of a process, as MPI implementations and SLURM export it: the fallback of
# a launcher that sets RANK and WORLD_SIZE but not LOCAL_RANK.
LOCAL_RANK_VARIABLES = ('OMPI_COMM_WORLD_LOCAL_RANK', 'MV2_COMM_WORLD_LOCAL_RANK',
                        'MPI_LOCALRANKID', 'SLURM_LOCALID')


@dataclass(frozen=True)
class Placement:
    """This process as its launcher started it.

    Args:
        rank (int): global rank.
        world_size (int): number of processes the launcher started.
        local_rank (int or None): rank on this node; None when the launcher does not say.
        launcher (str): TORCH, OPENMPI, MVAPICH, HYDRA, SRUN, or '' for a plain process.
    """
    rank: int = 0
    world_size: int = 1
    local_rank: Optional[int] = None
    launcher: str = ''


def _int(env, name, default=None):
    value = env.get(name)
    return default if value in (None, '') else int(value)


def _first_int(env, names):
    for name in names:
        if env.get(name, '') != '':
            return int(env[name])
    return None


def _torch_placement(env, local_rank_arg):
    local_rank = _int(env, 'LOCAL_RANK', local_rank_arg)
    if local_rank is None and 'RANK' in env:
        local_rank = _first_int(env, LOCAL_RANK_VARIABLES)
    rank = _int(env, 'RANK', local_rank or 0)
    return Placement(rank, _int(env, 'WORLD_SIZE', 1), local_rank, TORCH)


def _mpi_placement(env, launcher):
    rank, size, local_rank = MPI_VARIABLES[launcher]
    if env.get(size, '') == '':
        return None
    return Placement(_int(env, rank, 0), _int(env, size), _int(env, local_rank), launcher)


def _srun_tasks(env):
    """The number of tasks of the srun step this process belongs to, or None.

    srun writes SLURM_STEP_ID (and its old name SLURM_STEPID) and SLURM_STEP_NUM_TASKS
    into the environment of every task it starts. A batch script of sbatch, or the shell
    of salloc, runs inside the job's allocation but in no step of srun: it has
    SLURM_JOB_ID, SLURM_NTASKS (how many tasks the job may start, not how many run) and,
    in a batch script, SLURM_PROCID=0, but no step id. So only a process with a step id
    is one of several tasks, and SLURM_NTASKS alone counts nothing.
    """
    if env.get('SLURM_STEP_ID', env.get('SLURM_STEPID', '')) == '':
        return None
    return _int(env, 'SLURM_STEP_NUM_TASKS', _int(env, 'SLURM_NTASKS', 1))


def find_placement(env=None, local_rank_arg=None):
    """Rank, number of processes and local rank of this process, from its launcher's
    variables.

    The first launcher found wins, in this order: torchrun's variables (also when
    torchrun runs inside an srun or mpirun task), OpenMPI, MVAPICH, srun, MPICH / Intel
    MPI. mpirun may start its per-node daemons with srun (OpenMPI's orted, hydra's
    proxies), whose processes then also carry that step's variables, one task per node:
    MPI's variables are the ones that count the processes. srun --mpi=pmi2 sets PMI_RANK
    and PMI_SIZE as well, equal to its own; then the launcher is srun.

    Args:
        env (Mapping or None): the environment (os.environ when None).
        local_rank_arg (int or None): ``--local-rank`` of the legacy launcher.

    Returns:
        Placement
    """
    env = os.environ if env is None else env
    if local_rank_arg is not None or any(n in env for n in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK')):
        return _torch_placement(env, local_rank_arg)
    for launcher in (OPENMPI, MVAPICH):
        placement = _mpi_placement(env, launcher)
        if placement:
            return placement
    tasks = _srun_tasks(env)
    if tasks is not None and _int(env, 'PMI_SIZE', tasks) == tasks:
        return Placement(_int(env, 'SLURM_PROCID', 0), tasks, _int(env, 'SLURM_LOCALID'), SRUN)
    return _mpi_placement(env, HYDRA) or Placement()


def slurm_job_tasks(env=None):
    """SLURM_NTASKS of a process that runs in a SLURM job but is no task of srun (a batch
    script, salloc's shell), else 0."""
    env = os.environ if env is None else env
    if _srun_tasks(env) is not None:
        return 0
    return _int(env, 'SLURM_NTASKS', 0)


def processes_per_node(cpu_processes=2):
    """How many training processes to start on this machine: one per visible GPU
    (CUDA_VISIBLE_DEVICES counts), else ``cpu_processes`` on the CPU."""
    gpus = torch.cuda.device_count()
    return gpus if gpus > 0 else cpu_processes
