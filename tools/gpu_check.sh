#!/usr/bin/env bash
# Every check of the CUDA paths that the CPU test suite cannot run, on one GPU, in under
# 10 minutes; it prints figures for the README and stops at the first failure.
#
#   bash tools/gpu_check.sh [OUT_DIR]        # OUT_DIR: scratch space (default: a temp dir)
#
# 1. inference under fp16 autocast in every MASK.EXECUTION mode (W48 ADP-C, 512x1024),
#    against float32, and evaluation speed (1024x2048, batch 1) with and without TEST.AMP;
# 2. TRAIN.AMP: step time of W48 ADP-C at 512x1024 (batch 3, as the paper per GPU) with
#    and without AMP, then a tiny synthetic run with TRAIN.AMP through tools/train_ee.py,
#    stopped after one epoch and resumed (gradient scaler state in the checkpoint);
# 3. tools/calibrate.py --device cuda: break-even densities for policy.BREAK_EVEN['cuda'];
# 4. tools/benchmark.py --device cuda: dense / sparse / auto / RH figures (TF32 as
#    CUDNN.ALLOW_TF32 says, recorded in the JSON; agreement checked in float32).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-$(mktemp -d)}
mkdir -p "$OUT"
export PYTHONPATH=lib${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
W48=experiments/cityscapes/w48_adpc.yaml
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; \
print('torch', torch.__version__, torch.cuda.get_device_name(0))"

echo '== 1. fp16 autocast inference in every execution mode; evaluation speed'
timeout 150 python - "$W48" <<'EOF'
import argparse, statistics, sys, time
import torch
from config import config, update_config
from models.model_anytime import build_model
from models.sparse.noise_masks import SmoothNoiseMasks

cfg = update_config(config.clone(), argparse.Namespace(cfg=sys.argv[1], opts=[]))
dev = torch.device('cuda')
torch.backends.cudnn.benchmark = True
torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
model = build_model(cfg).to(dev).eval()
torch.manual_seed(0)
for m in model.modules():  # weights away from the std-0.001 init, as a trained model's
    if isinstance(m, torch.nn.Conv2d):
        torch.nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')

def timed(fn, repeats=5):
    fn()
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize(); start = time.perf_counter(); fn()
        torch.cuda.synchronize(); times.append(time.perf_counter() - start)
    return statistics.median(times)

for h, w in ((512, 1024), (1024, 2048)):
    x = torch.randn(1, 3, h, w, device=dev)
    masks = [SmoothNoiseMasks(1, (h // 4, w // 4), d, seed=j).to(dev)
             for j, d in enumerate((0.8, 0.6, 0.35))]  # the paper's densities
    for mode in ('dense', 'sparse', 'auto'):
        model.execution = mode
        with torch.no_grad():
            ref = model(x, masks=masks)
            t32 = timed(lambda: model(x, masks=masks))
            with torch.autocast('cuda', dtype=torch.float16):
                got = model(x, masks=masks)
                model(x)  # confidence masks from fp16 logits
                t16 = timed(lambda: model(x, masks=masks))
        diff = max(((a.float() - b).abs().max() / b.abs().max()).item()
                   for a, b in zip(got, ref))
        assert all(torch.isfinite(a).all() for a in got), mode
        assert diff < 0.05, f'{mode}: fp16 differs from fp32 by {diff:.3f} of the scale'
        print(f'{h}x{w} {mode:>6}: fp32 {t32 * 1e3:7.1f} ms, fp16 autocast {t16 * 1e3:7.1f} ms '
              f'per image (x{t32 / t16:.2f}); fp16 vs fp32 max relative difference {diff:.1e}')
EOF

echo '== 2. TRAIN.AMP step time (W48 ADP-C, 3 x 512x1024)'
timeout 150 python - "$W48" <<'EOF'
import argparse, statistics, sys, time
import torch
from config import config, update_config
from engine.amp import MixedPrecision
from engine.criterion import FullModel, build_criterion
from datasets.cityscapes import CITYSCAPES_CLASS_WEIGHTS
from models.model_anytime import build_model

cfg = update_config(config.clone(), argparse.Namespace(cfg=sys.argv[1], opts=[]))
dev = torch.device('cuda')
torch.backends.cudnn.benchmark = True
x = torch.randn(3, 3, 512, 1024, device=dev)
y = torch.randint(0, 19, (3, 512, 1024), device=dev)
for amp in (False, True):
    torch.manual_seed(0)
    full = FullModel(build_model(cfg), build_criterion(cfg, CITYSCAPES_CLASS_WEIGHTS))
    full = full.to(dev).train()
    opt = torch.optim.SGD(full.parameters(), lr=0.01, momentum=0.9)
    precision = MixedPrecision(dev, amp)
    torch.cuda.reset_peak_memory_stats()
    times, skipped = [], 0
    for step in range(13):
        torch.cuda.synchronize(); start = time.perf_counter()
        with precision.autocast():
            total, _, _ = full(x, y)
        opt.zero_grad(set_to_none=True)
        skipped += not precision.backward_step(total, opt)
        torch.cuda.synchronize(); times.append(time.perf_counter() - start)
    assert torch.isfinite(total), total
    print(f"TRAIN.AMP {amp!s:>5}: {statistics.median(times[3:]) * 1e3:.0f} ms per step "
          f"(median of 10), peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB, "
          f"loss {total.item():.3f}, steps skipped by the scaler {skipped}")
EOF

echo '== 2b. TRAIN.AMP run through tools/train_ee.py, resumed'
python tools/make_synthetic_cityscapes.py --root "$OUT/data" --height 64 --width 128 \
    --train 8 --val 2 > "$OUT/data.log" 2>&1
RUN=(tools/train_ee.py --cfg experiments/synthetic/tiny_adpc.yaml DATASET.ROOT "$OUT/data"
     OUTPUT_DIR "$OUT/runs" TRAIN.BATCH_SIZE_PER_GPU 4 TRAIN.EVAL_INTERVAL 1
     TRAIN.AMP True TEST.AMP True AUTO_RESUME True)
timeout 120 python "${RUN[@]}" TRAIN.END_EPOCH 1 > "$OUT/amp_run1.log" 2>&1
# An extra epoch is the one change a resumed run accepts (see the run-directory guard).
timeout 120 python "${RUN[@]}" TRAIN.END_EPOCH 1 DATASET.EXTRA_TRAIN_SET list/cityscapes/train.lst \
    TRAIN.EXTRA_EPOCH 1 > "$OUT/amp_run2.log" 2>&1
grep -q 'resuming from' "$OUT/amp_run2.log"
python - "$OUT/runs/cityscapes/tiny_adpc" <<'EOF'
import sys, torch
checkpoint = torch.load(f'{sys.argv[1]}/checkpoint.pth.tar', weights_only=True)
assert checkpoint['epoch'] == 2 and 'scaler' in checkpoint, sorted(checkpoint)
print('resumed TRAIN.AMP run: epoch', checkpoint['epoch'], 'scaler', checkpoint['scaler'])
print('result.txt:', open(f'{sys.argv[1]}/result.txt').read())
EOF

echo '== 3. break-even densities on CUDA (for policy.BREAK_EVEN["cuda"])'
timeout 150 python tools/calibrate.py --device cuda

echo '== 4. benchmark on CUDA: dense / sparse / auto / RH (TF32 convolutions, the default)'
timeout 200 python tools/benchmark.py --cfg "$W48" --shape 512 1024 --device cuda \
    --repeats 5 --json "$OUT/benchmark_cuda.json"
echo "gpu_check: all checks passed; outputs in $OUT"
