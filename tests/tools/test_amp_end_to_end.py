"""TRAIN.AMP / TEST.AMP end to end on the CPU (bf16): a tiny ADP-C trained 2 epochs,
killed in its second epoch, resumed, evaluated; its masks under autocast agree with
float32 ones."""
import argparse
import glob
import os
import subprocess
import sys

import pytest
import torch

import datasets
from config import config, update_config
from core.criterion import FullModel, build_criterion
from datasets.cityscapes import CITYSCAPES_CLASS_WEIGHTS
from datasets.synthetic import generate_synthetic_cityscapes
from models import get_seg_model
from models.confidence import confidence_mask
from test_end_to_end import ENV, ROOT, TINY, kill_tree, read_result, run, run_dir, wait_for

AMP = ['TRAIN.END_EPOCH', '2', 'TRAIN.EVAL_INTERVAL', '1', 'TRAIN.BATCH_SIZE_PER_GPU', '2',
       'PRINT_FREQ', '1', 'AUTO_RESUME', 'True', 'TRAIN.AMP', 'True', 'TEST.AMP', 'True']


@pytest.fixture(scope='module')
def amp_run(tmp_path_factory):
    """A 2-epoch TRAIN.AMP run killed in its second epoch and resumed."""
    root = str(tmp_path_factory.mktemp('synthetic_amp'))
    generate_synthetic_cityscapes(root, num_train=8, num_val=2, num_test=1, height=64,
                                  width=128)
    output_dir = str(tmp_path_factory.mktemp('amp'))
    command = [sys.executable, 'tools/train_ee.py', '--cfg', TINY, 'DATASET.ROOT', root,
               'OUTPUT_DIR', output_dir] + AMP
    out = run_dir(output_dir)

    def in_second_epoch():
        logs = glob.glob(os.path.join(out, '*_train.log'))
        return bool(logs) and 'Epoch [2/2] Iter [1/' in read_result(logs[0])

    proc = subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        reached = wait_for(in_second_epoch, proc)
    finally:
        kill_tree(proc.pid)
        proc.wait()
    assert reached, 'the run never reached its second epoch'
    assert not os.path.exists(os.path.join(out, 'final_state.pth')), 'killed too late'
    assert torch.load(os.path.join(out, 'checkpoint.pth.tar'), weights_only=True)['epoch'] == 1
    proc = run(command)
    return root, out, proc.stdout + proc.stderr


def test_amp_run_resumes_after_kill_and_evaluates(amp_run):
    root, out, _ = amp_run
    logs = ''.join(read_result(p) for p in glob.glob(os.path.join(out, '*_train.log')))
    assert 'resuming from' in logs and '1 epoch(s) done' in logs
    assert 'AMP: true' in logs  # the run config says how it trained
    checkpoint = torch.load(os.path.join(out, 'checkpoint.pth.tar'), weights_only=True)
    assert checkpoint['epoch'] == 2 and checkpoint['iteration'] == 8
    assert 'scaler' not in checkpoint  # bf16 trains without a gradient scaler
    final = torch.load(os.path.join(out, 'final_state.pth'), weights_only=True)
    assert all(torch.isfinite(v.float()).all() for v in final.values())
    for name in ('result.txt', 'test_stats.json'):
        assert os.path.isfile(os.path.join(out, name))

    run([sys.executable, 'tools/test_ee.py', '--cfg', os.path.join(out, 'config.yaml'),
         'TEST.AMP', 'True'])
    values = [float(v) for v in read_result(os.path.join(out, 'result.txt')).split('\t')]
    assert len(values) == 5 and all(0 <= v <= 100 for v in values)


def trained_tiny_model(cfg, steps=12):
    """The run's network from He-normal weights (so that its exits are confident about
    some pixels and not others; 2 epochs on 8 images leave them uniform), trained
    ``steps`` SGD steps on the run's training images."""
    model = get_seg_model(cfg)
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
    full = FullModel(model, build_criterion(cfg, CITYSCAPES_CLASS_WEIGHTS)).train()
    optimizer = torch.optim.SGD(full.parameters(), lr=0.01, momentum=0.9)
    dataset = datasets.build_dataset(cfg, cfg.DATASET.TRAIN_SET, train=False)
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    labels = torch.stack([torch.as_tensor(dataset[i][1]) for i in range(len(dataset))]).long()
    losses = []
    for step in range(steps):
        batch = slice(step % 4 * 2, step % 4 * 2 + 2)
        total, _, _ = full(images[batch], labels[batch])
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        losses.append(total.item())
    assert losses[-1] < losses[0]
    return model.eval(), images


def test_masks_under_autocast_agree_with_float32(amp_run):
    """Masks of exits 1-3 of a trained tiny model at its MASK.CONF_THRE, computed under
    bf16 autocast and in float32."""
    _, out, _ = amp_run
    cfg = update_config(config.clone(), argparse.Namespace(
        cfg=os.path.join(out, 'config.yaml'), opts=[]))
    model, x = trained_tiny_model(cfg)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            got = model(x)
    agree, total = 0, 0
    for k, (a, b) in enumerate(zip(got[:3], ref[:3])):
        size = tuple(b.shape[-2:])
        m_amp = confidence_mask(a, size, 'conf_thre', model.mask_threshold)
        m_fp32 = confidence_mask(b, size, 'conf_thre', model.mask_threshold)
        agree += (m_amp.float() == m_fp32).sum().item()
        total += m_fp32.numel()
        if k == 0:
            assert 0 < m_fp32.mean() < 1  # both kinds of pixel
    assert agree / total >= 0.99, agree / total
