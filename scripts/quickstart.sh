#!/usr/bin/env bash
# The main job on bundled synthetic data, in about two minutes on a CPU:
#   1. generate a small synthetic Cityscapes (Cityscapes layout, labelIds, list files);
#   2. train the tiny ADP-C of experiments/synthetic/tiny_adpc.yaml with 2 processes;
#   3. evaluate the run: per-exit mIoU, per-class IoU, mask-aware GFLOPs and parameters.
# Environment: DATA (data root, default data/synthetic), OUTPUT (default output),
# NPROC (training processes, default 2).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DATA=${DATA:-data/synthetic}
OUTPUT=${OUTPUT:-output}
NPROC=${NPROC:-2}
CFG=experiments/synthetic/tiny_adpc.yaml
RUN="$OUTPUT/cityscapes/tiny_adpc"

python tools/make_synthetic_cityscapes.py --root "$DATA" --height 64 --width 128 \
    --train 48 --val 8 --test 4
# torchrun, run through the interpreter so that no PATH setup is needed; --standalone
# picks a free rendezvous port on this machine.
python -m torch.distributed.run --standalone --nproc_per_node "$NPROC" tools/train_ee.py --cfg "$CFG" \
    DATASET.ROOT "$DATA" OUTPUT_DIR "$OUTPUT"
python tools/test_ee.py --cfg "$RUN/config.yaml"

echo
echo "Run directory: $RUN"
echo "result.txt (mIoU % of exits 1-4, mean): $(cat "$RUN/result.txt")"
echo "TensorBoard:   tensorboard --logdir $RUN"
