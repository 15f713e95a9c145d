"""Process-group setup for every launcher, in one place.

Supported launches of ``tools/train_ee.py`` and ``tools/test_ee.py``:

- ``torchrun --nproc_per_node N ...`` (one or several nodes): RANK, WORLD_SIZE,
  LOCAL_RANK, MASTER_ADDR and MASTER_PORT come from the environment;
- ``python -m torch.distributed.launch ...`` (legacy): the same variables, plus a
  ``--local-rank`` or ``--local_rank`` argument depending on the torch version;
- ``mpirun`` or another launcher that sets RANK and WORLD_SIZE but not LOCAL_RANK: the
  local rank comes from OpenMPI's, MVAPICH's, MPICH's or SLURM's variables;
- ``srun`` without torchrun (one task per GPU): the tasks join one process group from
  SLURM's variables when MASTER_ADDR and MASTER_PORT are exported, else it is refused;
- plain ``python ...``: one process on the first GPU of ``GPUS``, or on the CPU (with a
  warning and the torchrun command when GPUS lists several visible GPUs).

NCCL is used on CUDA, gloo on the CPU. Everything else in the project asks a
:class:`DistContext` (rank, world size, device) instead of reading the environment.
"""
import datetime
import logging
import os
import shlex
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

from .errors import LaunchError

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


# Per-node rank of a process, as MPI implementations and SLURM export it.
LOCAL_RANK_VARIABLES = ('OMPI_COMM_WORLD_LOCAL_RANK', 'MV2_COMM_WORLD_LOCAL_RANK',
                        'MPI_LOCALRANKID', 'SLURM_LOCALID')


def _command_line():
    return ' '.join(shlex.quote(a) for a in sys.argv)


def _srun_tasks():
    """(rank, world size, local rank) of a task that ``srun`` started without torchrun,
    or None when this is not such a task."""
    tasks = _env_int('SLURM_STEP_NUM_TASKS', _env_int('SLURM_NTASKS', 1))
    if 'RANK' in os.environ or 'SLURM_PROCID' not in os.environ or tasks <= 1:
        return None
    if 'MASTER_ADDR' not in os.environ or 'MASTER_PORT' not in os.environ:
        raise LaunchError(
            f'srun started {tasks} tasks without torchrun (SLURM_PROCID is set, RANK is '
            f'not): each would train alone, all into the same output directory. Either '
            f'export MASTER_ADDR=<first node> and MASTER_PORT=<free port> before srun, '
            f'so that the tasks (one per GPU) join one process group, or start one '
            f'torchrun per node: srun --ntasks-per-node 1 torchrun --nnodes $SLURM_NNODES '
            f'--nproc_per_node <GPUs per node> --rdzv_backend c10d --rdzv_endpoint '
            f'<first node>:29500 {_command_line()}')
    return (_env_int('SLURM_PROCID', 0), tasks, _env_int('SLURM_LOCALID', 0))


def _launcher_local_rank(world_size):
    """The local rank of a launcher that sets RANK and WORLD_SIZE but not LOCAL_RANK
    (mpirun), from its own variables; 0 when no GPU choice depends on it."""
    for name in LOCAL_RANK_VARIABLES:
        if name in os.environ:
            return _env_int(name, 0)
    if world_size > 1 and torch.cuda.is_available() and torch.cuda.device_count() > 1:
        raise LaunchError(
            f'RANK and WORLD_SIZE ({world_size}) are set but not LOCAL_RANK, nor any of '
            f'{", ".join(LOCAL_RANK_VARIABLES)}: every process would use cuda:0. Start the '
            f'processes with torchrun, or export LOCAL_RANK (the rank of the process on '
            f'its node) in the launcher')
    return 0


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


def init_distributed(local_rank=None, gpus=(0,)):
    """Join the process group the launcher prepared (if any) and pick the device.

    Args:
        local_rank (int or None): value of ``--local-rank`` from the legacy launcher;
            LOCAL_RANK in the environment wins when both are set.
        gpus (sequence of int): GPUS of the config; a single-process CUDA run uses the
            first of them. Ignored under a launcher, where LOCAL_RANK picks the GPU.

    Returns:
        DistContext: this process's rank, world size and device.
    """
    srun = _srun_tasks()
    if srun is not None:
        rank, world_size, local_rank = srun
    else:
        world_size = _env_int('WORLD_SIZE', 1)
        if 'LOCAL_RANK' not in os.environ and local_rank is None and 'RANK' in os.environ:
            local_rank = _launcher_local_rank(world_size)
        local_rank = _env_int('LOCAL_RANK', local_rank if local_rank is not None else 0)
        rank = _env_int('RANK', local_rank)
    cuda = torch.cuda.is_available()

    if world_size == 1:
        check_gpus(gpus)
        launched = 'LOCAL_RANK' in os.environ
        if cuda and not launched:
            _warn_unused_gpus(list(gpus))
        index = local_rank if launched else (list(gpus) or [0])[0]
        if cuda and index >= torch.cuda.device_count():
            raise LaunchError(f'GPUS names GPU {index} but only {torch.cuda.device_count()} '
                              'are visible: set GPUS "(0,)" or CUDA_VISIBLE_DEVICES')
        device = torch.device('cuda', index) if cuda else torch.device('cpu')
        if cuda:
            torch.cuda.set_device(device)
        return DistContext(0, 1, local_rank, device)

    if 'MASTER_ADDR' not in os.environ or 'MASTER_PORT' not in os.environ:
        raise LaunchError(f'WORLD_SIZE is {world_size} but MASTER_ADDR/MASTER_PORT are not '
                          'set: start several processes with torchrun --nproc_per_node N')
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise LaunchError(f'local rank {local_rank} has no GPU ({torch.cuda.device_count()} '
                              'visible): start at most that many processes per node')
        device = torch.device('cuda', local_rank)
        torch.cuda.set_device(device)
        backend = 'nccl'
    else:
        device = torch.device('cpu')
        backend = 'gloo'
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method='env://', rank=rank,
                                world_size=world_size, timeout=PROCESS_GROUP_TIMEOUT)
    return DistContext(rank, world_size, local_rank, device)


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
