"""Resuming on several nodes: rank 0 decides, and a rank that cannot read the checkpoint
stops the whole run with an error naming it (2 gloo processes, as two nodes whose
OUTPUT_DIR is a local disk: only rank 0's holds the checkpoint)."""
import argparse
import json
import os
import socket
import subprocess
import sys

import torch
import torch.multiprocessing as mp

from datasets.synthetic import generate_synthetic_cityscapes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, 'experiments', 'synthetic', 'tiny_adpc.yaml')
SMALL = ['TRAIN.BATCH_SIZE_PER_GPU', '2', 'TRAIN.EVAL_INTERVAL', '0', 'AUTO_RESUME', 'True']
ENV = dict(os.environ, CUDA_VISIBLE_DEVICES='', OMP_NUM_THREADS='1')
JOIN_TIMEOUT = 300


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _node(rank, port, data_root, output_dir, result_path):
    """One process of a 2-node run: its own OUTPUT_DIR (the node's disk)."""
    sys.path.insert(0, os.path.join(ROOT, 'lib'))
    os.environ.update(WORLD_SIZE='2', RANK=str(rank), LOCAL_RANK='0',
                      MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from config import config, update_config
    from engine.train import train
    from utils.distributed import cleanup, init_distributed
    from utils.errors import CheckpointError
    cfg = update_config(config.clone(), argparse.Namespace(cfg=TINY, opts=[
        'DATASET.ROOT', data_root, 'OUTPUT_DIR', output_dir, 'TRAIN.END_EPOCH', '1'] + SMALL))
    ctx = init_distributed()
    try:
        train(cfg, TINY, ctx)
        outcome = 'trained'
    except CheckpointError as e:
        outcome = f'CheckpointError: {e}'
    finally:
        cleanup()
    with open(result_path, 'w') as f:
        json.dump(outcome, f)


def test_checkpoint_on_one_node_only_stops_every_rank_naming_the_other(tmp_path):
    data_root = str(tmp_path / 'data')
    generate_synthetic_cityscapes(data_root, num_train=4, num_val=1, num_test=1, height=64,
                                  width=128)
    disks = [str(tmp_path / 'node0'), str(tmp_path / 'node1')]
    # Node 0 holds the run, trained for its epoch: rank 0 resumes there with nothing left
    # to train, while rank 1, finding no checkpoint, would train one epoch from scratch.
    subprocess.run([sys.executable, 'tools/train_ee.py', '--cfg', TINY, 'DATASET.ROOT',
                    data_root, 'OUTPUT_DIR', disks[0], 'TRAIN.END_EPOCH', '1'] + SMALL,
                   cwd=ROOT, env=ENV, check=True, capture_output=True, timeout=JOIN_TIMEOUT)
    checkpoint = os.path.join(disks[0], 'cityscapes', 'tiny_adpc', 'checkpoint.pth.tar')
    assert torch.load(checkpoint, weights_only=True)['epoch'] == 1
    missing = os.path.join(disks[1], 'cityscapes', 'tiny_adpc', 'checkpoint.pth.tar')

    port, spawn = _free_port(), mp.get_context('spawn')
    results = [str(tmp_path / f'rank{r}.json') for r in (0, 1)]
    nodes = [spawn.Process(target=_node, args=(r, port, data_root, disks[r], results[r]))
             for r in (0, 1)]
    for p in nodes:
        p.start()
    for p in nodes:
        p.join(JOIN_TIMEOUT)
    hung = [p.pid for p in nodes if p.is_alive()]
    for p in nodes:
        if p.is_alive():
            p.kill()
    assert not hung, 'the ranks disagreed about resuming and the run hung'

    outcomes = []
    for path in results:
        with open(path) as f:
            outcomes.append(json.load(f))
    for outcome in outcomes:  # every rank stops, with the same message
        assert outcome.startswith('CheckpointError: rank 0 resumes from'), outcome
        assert f'rank 1 on host {socket.gethostname()} cannot read it: {missing} does not ' \
            'exist' in outcome
        assert 'rank 0 on host' not in outcome  # rank 0 read its copy
    assert not os.path.exists(os.path.join(disks[1], 'cityscapes', 'tiny_adpc',
                                           'final_state.pth'))
