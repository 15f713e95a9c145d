"""Process-group setup for every launcher, in one place.

Supported launches of ``tools/train_ee.py`` and ``tools/test_ee.py`` (utils.launchers
reads each launcher's variables):

- ``torchrun --nproc_per_node N ...`` (one or several nodes, also one torchrun per node
  started by srun): RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT come from
  the environment;
- ``python -m torch.distributed.launch ...`` (legacy): the same variables, plus a
  ``--local-rank`` or ``--local_rank`` argument depending on the torch version;
- ``mpirun`` of OpenMPI, MPICH or Intel MPI, ``mpirun_rsh`` of MVAPICH, and ``srun``
  without torchrun (one task per GPU): the processes join one process group from the
  launcher's own variables when MASTER_ADDR and MASTER_PORT are exported, else they are
  refused with the command line that exports them;
- a launcher that sets RANK and WORLD_SIZE but not LOCAL_RANK: the local rank comes from
  OpenMPI's, MVAPICH's, MPICH's or SLURM's variables;
- plain ``python ...`` (also a batch script's own process in a SLURM job of several
  tasks): one process on the first GPU of ``GPUS``, or on the CPU (with a warning and
  the command that would use the GPUs or tasks it leaves idle).

A process of several that sees a single GPU uses it (``srun --gpus-per-task 1``);
otherwise its local rank picks the GPU.

NCCL is used on CUDA, gloo on the CPU. Everything else in the project asks a
:class:`DistContext` (rank, world size, device) instead of reading the environment.
"""
import datetime
import logging
import os
import shlex
import socket
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

from .errors import LaunchError
from .launchers import (HYDRA, LOCAL_RANK_VARIABLES, MVAPICH, OPENMPI, SRUN, find_placement,
                        slurm_job_tasks)

logger = logging.getLogger(__name__)

# Long enough for rank 0 to write a checkpoint or run the final evaluation while the
# other ranks wait at a barrier.
PROCESS_GROUP_TIMEOUT = datetime.timedelta(minutes=60)


@dataclass(frozen=True)
class DistContext:
    """Where this process runs.

    Args:
        rank (int): global rank, 0 in a single-process run.
        world_size (int): number of processes.
        local_rank (int): rank on this node (selects the GPU).
        device (torch.device): device of this process's model and tensors.
    """
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device('cpu')

    @property
    def distributed(self):
        """True when several processes share the work."""
        return self.world_size > 1

    @property
    def is_main(self):
        """True on the process that writes files, logs and TensorBoard events."""
        return self.rank == 0


def add_launcher_arguments(parser):
    """Accept the ``--local-rank`` / ``--local_rank`` argument the legacy launcher passes.

    Args:
        parser (argparse.ArgumentParser): the tool's parser.
    """
    parser.add_argument('--local-rank', '--local_rank', dest='local_rank', type=int,
                        default=None, help='set by python -m torch.distributed.launch; '
                        'torchrun uses the LOCAL_RANK variable instead')
    return parser


def _env_int(name, default):
    value = os.environ.get(name)
    return default if value in (None, '') else int(value)


def check_gpus(gpus):
    """Raise LaunchError unless ``gpus`` (the GPUS key) is a sequence of GPU indices."""
    if not isinstance(gpus, (list, tuple)) or not all(
            isinstance(g, int) and not isinstance(g, bool) and g >= 0 for g in gpus):
        raise LaunchError(f'GPUS {gpus!r} is not a list of GPU indices: write it as '
                          'GPUS "(0,)" or GPUS "(0,1)" (one process uses the first)')


def _command_line():
    return ' '.join(shlex.quote(a) for a in sys.argv)


def _missing_rendezvous(place):
    """The refusal of a launch of several processes that cannot meet: MASTER_ADDR or
    MASTER_PORT is not set. Every process raises it alike."""
    n, python = place.world_size, f'python {_command_line()}'
    host = socket.gethostname()  # rank 0 reports it: its host is the rendezvous
    alone = 'each would train alone, all into the same output directory'
    if place.launcher == SRUN:
        return (f'srun started {n} tasks without torchrun but MASTER_ADDR and MASTER_PORT '
                f'are not set ({alone}). Export them before srun, so that the tasks (one '
                f'per GPU) join one process group: export MASTER_ADDR=$(scontrol show '
                f'hostnames "$SLURM_JOB_NODELIST" | head -n 1) MASTER_PORT=29500; or start '
                f'one torchrun per node: srun --ntasks-per-node 1 torchrun --nnodes '
                f'$SLURM_NNODES --nproc_per_node <GPUs per node> --rdzv_backend c10d '
                f'--rdzv_endpoint <first node>:29500 {_command_line()}')
    started = f'{n} processes but MASTER_ADDR and MASTER_PORT are not set ({alone}): use'
    if place.launcher == OPENMPI:
        return (f'mpirun (OpenMPI) started {started} mpirun -np {n} -x MASTER_ADDR={host} '
                f'-x MASTER_PORT=29500 {python}')
    if place.launcher == MVAPICH:
        return (f'mpirun_rsh (MVAPICH) started {started} mpirun_rsh -np {n} -hostfile '
                f'<hosts> MASTER_ADDR={host} MASTER_PORT=29500 {python}')
    if place.launcher == HYDRA:
        return (f'mpirun (MPICH or Intel MPI) started {started} mpirun -np {n} -genv '
                f'MASTER_ADDR {host} -genv MASTER_PORT 29500 {python}')
    return (f'WORLD_SIZE is {n} but MASTER_ADDR/MASTER_PORT are not set: start several '
            f'processes with torchrun --nproc_per_node N')


def _gpu_of(place):
    """The GPU index of a process of a launch with several processes.

    A process that sees a single GPU uses it, whatever its local rank: srun
    --gpus-per-task 1 (or --gpu-bind=single:1), or a wrapper setting
    CUDA_VISIBLE_DEVICES per process, gives each task its own GPU as device 0 while
    SLURM_LOCALID counts 0, 1, ... The exception is torchrun, whose processes on a node
    (LOCAL_WORLD_SIZE) all see the same GPUs.
    """
    count = torch.cuda.device_count()
    if count == 1 and _env_int('LOCAL_WORLD_SIZE', 1) <= 1:
        return 0
    if place.local_rank is None:
        raise LaunchError(
            f'{place.world_size} processes were started without LOCAL_RANK or any of '
            f'{", ".join(LOCAL_RANK_VARIABLES)}: every process would use cuda:0. Start the '
            f'processes with torchrun, or export LOCAL_RANK (the rank of the process on '
            f'its node) in the launcher', every_rank=True)
    if place.local_rank >= count:
        raise LaunchError(f'local rank {place.local_rank} has no GPU ({count} visible): '
                          f'start at most that many processes per node, or give each '
                          f'process one GPU of its own (srun --gpus-per-task 1)')
    return place.local_rank


def _warn_unused_gpus(gpus):
    """A single process uses one GPU; say so when GPUS asks for several visible ones."""
    visible = torch.cuda.device_count()
    wanted = [g for g in gpus if g < visible]
    if len(wanted) <= 1:
        return
    prefix = '' if wanted == list(range(len(wanted))) else \
        f'CUDA_VISIBLE_DEVICES={",".join(str(g) for g in wanted)} '
    logger.warning(
        f'GPUS lists {len(wanted)} visible GPUs, but this single process runs on GPU '
        f'{wanted[0]} only: a training batch is one TRAIN.BATCH_SIZE_PER_GPU instead of '
        f'{len(wanted)}, and the schedule changes. To use them all: '
        f'{prefix}torchrun --nproc_per_node {len(wanted)} {_command_line()}')


def _warn_slurm_tasks_unused():
    """A batch script of ``sbatch --ntasks N`` that runs python itself starts one
    process, not N tasks: it runs alone (see launchers.find_placement)."""
    tasks = slurm_job_tasks()
    if tasks > 1:
        logger.warning(
            f'the SLURM job has {tasks} tasks (SLURM_NTASKS) but srun did not start this '
            f'process, so it runs alone. To run {tasks} tasks, one per GPU: export '
            f'MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1) '
            f'MASTER_PORT=29500; srun python {_command_line()}')


def _check_typed_gpus(gpus):
    """Refuse GPUS typed on the command line of one process where no GPU is visible: the
    user asked for GPUs that this machine lacks. The GPUS of an experiment file falls back
    to the CPU (the documented default), and ``GPUS "()"`` or ``CUDA_VISIBLE_DEVICES=""``
    ask for the CPU on purpose."""
    if gpus and os.environ.get('CUDA_VISIBLE_DEVICES') != '':
        raise LaunchError(
            f'GPUS {tuple(gpus)} on the command line names GPUs, but no GPU is visible here '
            f'(torch {torch.__version__}, CUDA available: False): leave GPUS out (or give '
            'GPUS "()") to run on the CPU, or run on a machine with GPUs and a CUDA build '
            'of PyTorch')


def _single_process(place, gpus, gpus_typed=False):
    check_gpus(gpus)
    cuda = torch.cuda.is_available()
    if gpus_typed and not cuda:
        _check_typed_gpus(gpus)
    launched = 'LOCAL_RANK' in os.environ  # a launcher's one process: its local rank
    if not place.launcher:
        _warn_slurm_tasks_unused()
    if cuda and not launched:
        _warn_unused_gpus(list(gpus))
    local_rank = place.local_rank or 0
    index = local_rank if launched else (list(gpus) or [0])[0]
    if cuda and index >= torch.cuda.device_count():
        raise LaunchError(f'GPUS names GPU {index} but only {torch.cuda.device_count()} '
                          'are visible: set GPUS "(0,)" or CUDA_VISIBLE_DEVICES')
    device = torch.device('cuda', index) if cuda else torch.device('cpu')
    if cuda:
        torch.cuda.set_device(device)
    return DistContext(0, 1, local_rank, device)


def init_distributed(local_rank=None, gpus=(0,), gpus_typed=False):
    """Join the process group the launcher prepared (if any) and pick the device.

    Args:
        local_rank (int or None): value of ``--local-rank`` from the legacy launcher;
            LOCAL_RANK in the environment wins when both are set.
        gpus (sequence of int): GPUS of the config; a single-process CUDA run uses the
            first of them. Ignored under a launcher, where the local rank picks the GPU.
        gpus_typed (bool): GPUS was given on the command line (not by the experiment
            file): where no GPU is visible, that is refused rather than run on the CPU.

    Returns:
        DistContext: this process's rank, world size and device.
    """
    place = find_placement(local_rank_arg=local_rank)
    if place.world_size == 1:
        return _single_process(place, gpus, gpus_typed)
    if 'MASTER_ADDR' not in os.environ or 'MASTER_PORT' not in os.environ:
        raise LaunchError(_missing_rendezvous(place), every_rank=True)
    if torch.cuda.is_available():
        device = torch.device('cuda', _gpu_of(place))
        torch.cuda.set_device(device)
        backend = 'nccl'
    else:
        device = torch.device('cpu')
        backend = 'gloo'
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method='env://', rank=place.rank,
                                world_size=place.world_size, timeout=PROCESS_GROUP_TIMEOUT)
    return DistContext(place.rank, place.world_size, place.local_rank or 0, device)


def cleanup():
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier():
    """Wait for every process (no-op in a single-process run)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce(tensor, op='sum'):
    """Reduce ``tensor`` over all processes and return the result on ``tensor``'s device.

    Works for CPU tensors under NCCL too (they travel through the current GPU). A no-op
    in a single-process run.

    Args:
        tensor (Tensor): this process's value.
        op (str): 'sum' or 'max'.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return tensor
    reduce_op = {'sum': dist.ReduceOp.SUM, 'max': dist.ReduceOp.MAX}[op]
    device = torch.device('cuda', torch.cuda.current_device()) \
        if dist.get_backend() == 'nccl' else torch.device('cpu')
    work = tensor.to(device, copy=True)
    dist.all_reduce(work, op=reduce_op)
    return work.to(tensor.device)


def broadcast_object(obj, src=0):
    """Rank ``src``'s ``obj`` (any picklable value) on every process; ``obj`` itself in a
    single-process run."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj):
    """Every process's ``obj`` (picklable), in rank order: ``[obj]`` in a single-process
    run."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_buffers(module, src=0):
    """Copy every buffer of ``module`` (BatchNorm statistics, ...) from rank ``src`` to
    all processes.

    DistributedDataParallel only broadcasts buffers at the start of a training forward,
    so after the last step every process holds the statistics of its own last batch.
    Evaluation (and the checkpoint, written by rank 0) must use rank 0's.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    for buffer in module.buffers():
        dist.broadcast(buffer.data, src=src)


def wrap_model(model, ctx, find_unused_parameters=False):
    """Prepare a module for training on ``ctx``: moved to its device and, when several
    processes train, BatchNorm made synchronous (CUDA only) and the module wrapped in
    DistributedDataParallel.

    Args:
        model (nn.Module): the training module (model and loss).
        ctx (DistContext): from :func:`init_distributed`.
        find_unused_parameters (bool): let DistributedDataParallel skip parameters that
            get no gradient in a step (slower; only needed when such parameters exist).

    Returns:
        nn.Module: the wrapped module; :func:`unwrap` gives ``model`` back.
    """
    if ctx.distributed and ctx.device.type == 'cuda':
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(ctx.device)
    if not ctx.distributed:
        return model
    device_ids = [ctx.device.index] if ctx.device.type == 'cuda' else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids,
                                                 find_unused_parameters=find_unused_parameters)


def unwrap(model):
    """The module inside a DistributedDataParallel wrapper (or ``model`` itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
