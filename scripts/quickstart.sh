#!/usr/bin/env bash
# ADP-C on bundled synthetic data, in about two minutes on two CPU cores:
#   1. generate a synthetic Cityscapes (Cityscapes layout, labelIds, list files);
#   2. train the tiny ADP-C of experiments/synthetic/tiny_adpc.yaml with NPROC processes
#      (one per visible GPU, two on the CPU);
#      the run ends with its evaluation: per-exit mIoU, per-class IoU, mask-aware GFLOPs;
#   3. evaluate the same weights computing every pixel (MASK.CONF_THRE 1.0), into the
#      run's eval/MASK.CONF_THRE=1.0/ folder;
#   4. draw the panel of one validation image (each exit, each segment's mask);
#   5. print both evaluations side by side: the computation confidence adaptivity saves,
#      and what it costs in mIoU.
# Running it again continues the run in place (AUTO_RESUME): an interrupted run resumes
# from its last checkpoint, a finished one is only evaluated again. Delete the run
# directory to train afresh.
# Environment: DATA (data root, default data/synthetic), OUTPUT (default output),
# NPROC (training processes; default one per visible GPU, or 2 when none is visible:
# a process without a GPU of its own would stop the run).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DATA=${DATA:-data/synthetic}
OUTPUT=${OUTPUT:-output}
NPROC=${NPROC:-$(python tools/nproc_per_node.py --cpu 2)}
CFG=experiments/synthetic/tiny_adpc.yaml
RUN="$OUTPUT/cityscapes/tiny_adpc"
UNMASKED="$RUN/eval/MASK.CONF_THRE=1.0"

if [ -f "$RUN/final_state.pth" ]; then
    echo "quick start: $RUN holds a finished quick-start run; continuing it (AUTO_RESUME):"
    echo "nothing is left to train, so it is evaluated again. Delete $RUN to train afresh."
elif [ -f "$RUN/checkpoint.pth.tar" ]; then
    echo "quick start: continuing the interrupted run in $RUN from its last checkpoint" \
         "(AUTO_RESUME)."
fi

# 1. Data: the same seed always gives the same images, so regenerating is harmless.
python tools/make_synthetic_cityscapes.py --root "$DATA" --height 128 --width 256 \
    --train 48 --val 16 --test 4

# 2. Training, then evaluation of the run (torchrun through the interpreter, so that no
#    PATH setup is needed; --standalone picks a free rendezvous port on this machine).
python -m torch.distributed.run --standalone --nproc_per_node "$NPROC" tools/train_ee.py \
    --cfg "$CFG" DATASET.ROOT "$DATA" OUTPUT_DIR "$OUTPUT" AUTO_RESUME True

# 3. The same weights computing every pixel: no pixel is ever confident enough to skip.
#    One thread per process, like the training's own evaluation.
#    test_ee.py writes an evaluation with overrides into the run's eval/<KEY=value>/.
python -m torch.distributed.run --standalone --nproc_per_node "$NPROC" tools/test_ee.py \
    --cfg "$RUN/config.yaml" MASK.CONF_THRE 1.0

# 4. The panel of one validation image: input, ground truth, each exit, each segment's
#    mask, confidence and errors (tools/visualize.py).
python tools/visualize.py --cfg "$RUN/config.yaml" --num 1 --out "$RUN/panels" > /dev/null

# 5. Summary.
echo
echo "Quick start done in ${SECONDS} s. Run directory: $RUN"
echo "ADP-C as trained (masked: pixels an exit is confident about skip the later stages)" \
     "next to the same weights computing every pixel (unmasked):"
python tools/compare_results.py "$RUN" "$UNMASKED" --names masked unmasked
echo "Panel of a validation image: $(ls "$RUN"/panels/*.png | head -n 1)"
echo "TensorBoard curves: pip install tensorboard && tensorboard --logdir $RUN"
