"""The environment each launcher gives a process, for the launches of docs/clusters.md
(several GPUs and nodes, SLURM, MPI): two nodes of 4 GPUs, the process of global rank 6
(local rank 2 on the second node)."""

# A SLURM job of two nodes before any srun: sbatch's batch script (or salloc's shell),
# with the job's task count and, in a batch script, SLURM_PROCID=0 and SLURM_LOCALID=0,
# but no step of srun.
BATCH_SCRIPT = dict(SLURM_JOB_ID='4242', SLURM_JOBID='4242', SLURM_NTASKS='8',
                    SLURM_NPROCS='8', SLURM_NNODES='2', SLURM_JOB_NUM_NODES='2',
                    SLURM_JOB_NODELIST='node[1-2]', SLURM_PROCID='0', SLURM_LOCALID='0',
                    SLURM_NODEID='0')
RENDEZVOUS = dict(MASTER_ADDR='node1', MASTER_PORT='29500')


def srun_task(tasks, rank, local_rank, **more):
    """Task ``rank`` of step 0 of srun in BATCH_SCRIPT's job: srun adds the step's id and
    task count."""
    return dict(BATCH_SCRIPT, SLURM_STEP_ID='0', SLURM_STEPID='0',
                SLURM_STEP_NUM_TASKS=str(tasks), SLURM_NTASKS=str(tasks),
                SLURM_PROCID=str(rank), SLURM_LOCALID=str(local_rank), **more)


# docs/clusters.md: one torchrun per node, started by srun (one task per node); worker 2
# of node 2.
SLURM_TORCHRUN_WORKER = srun_task(2, 1, 0, RANK='6', WORLD_SIZE='8', LOCAL_RANK='2',
                                  LOCAL_WORLD_SIZE='4', **RENDEZVOUS)
# docs/clusters.md: srun --ntasks-per-node 4 --gpus-per-task 1 after exporting the
# rendezvous; the task sees one GPU, its own.
SLURM_TASK_PER_GPU = srun_task(8, 6, 2, **RENDEZVOUS)
# docs/clusters.md: mpirun of OpenMPI with -x MASTER_ADDR=node1 -x MASTER_PORT=29500.
OPENMPI_PROCESS = dict(OMPI_COMM_WORLD_RANK='6', OMPI_COMM_WORLD_SIZE='8',
                       OMPI_COMM_WORLD_LOCAL_RANK='2', OMPI_COMM_WORLD_LOCAL_SIZE='4',
                       **RENDEZVOUS)
# docs/clusters.md: mpirun of MPICH or Intel MPI with -genv MASTER_ADDR node1
# -genv MASTER_PORT 29500.
HYDRA_PROCESS = dict(PMI_RANK='6', PMI_SIZE='8', MPI_LOCALRANKID='2', MPI_LOCALNRANKS='4',
                     **RENDEZVOUS)

# The command lines of docs/clusters.md whose environments are the ones above.
DOCUMENTED_LINES = (
    'srun torchrun --nnodes "$SLURM_NNODES" --nproc_per_node 4 --rdzv_backend c10d \\',
    'export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1) '
    'MASTER_PORT=29500',
    'srun --ntasks-per-node 4 --gpus-per-task 1 python tools/train_ee.py --cfg '
    'experiments/cityscapes/w48.yaml',
    'mpirun -np 8 -H node1:4,node2:4 -x MASTER_ADDR=node1 -x MASTER_PORT=29500 \\',
    'mpirun -np 8 -ppn 4 -hosts node1,node2 -genv MASTER_ADDR node1 -genv MASTER_PORT 29500 \\',
)
