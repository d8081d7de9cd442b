#!/usr/bin/env bash
# The GPU measurements, as one time-boxed script (a lent GPU machine is held for minutes, not hours).
#
#   bash benchmarks/gpu_session.sh OUT CIFAR10_DIR [DEVICE] [EPOCHS]
#   PARTS=recipe bash benchmarks/gpu_session.sh OUT CIFAR10_DIR [DEVICE] [EPOCHS]
#
# OUT: results folder (created); CIFAR10_DIR: the CIFAR-10 (JPEG) image folder, e.g.
# ../shared/datasets/cifar10-jpeg; DEVICE: cuda (default) or cpu for a dry run; EPOCHS: of the CIFAR-10 runs
# (default 20). Each part has its own time limit, so one slow part cannot take the rest with it; a part that
# runs out leaves what it wrote (runs are resumable: `infopro train --resume RUN`). Parts:
#   1. the README's main job (bundled subset): the CLI works on this device;
#   2. Table 3 at the paper's setting: ResNet-110, batch 1024, E2E vs checkpointing vs InfoPro K=2..16;
#   3. CIFAR-10 (JPEG), all 50,000 images, ResNet-32, E2E / Greedy / DGL / InfoPro Contrast at K=4,
#      EPOCHS epochs each, the four runs side by side on the one GPU (so their seconds are shared-GPU seconds);
#   4. the ImageNet-scale memory table (224 px, batch 128 per GPU, as the paper's per-GPU figures);
#   5. eager fp32 vs --amp bf16 vs --compile on ResNet-32 InfoPro K=4 (images/s of each epoch).
# PARTS=recipe (run after the default parts showed E2E far behind at 20 epochs of batch 1024, lr 0.8):
#   6. E2E at batch 1024 with lr 0.8 (again), 0.8 without channels-last and TF32, 0.4; E2E and InfoPro K=4 at
#      batch 128, lr 0.1; EPOCHS epochs each, five runs side by side;
#   7. Table 3 on the memory-balanced cuts (the paper's InfoPro*), K=2..4.
# PARTS=full (issue 20's full-budget runs; run it first in a GPU session): the configs' complete recipe (160 epochs,
#   batch 1024, lr 0.8, the authors' 10-epoch warm-up) on all 50,000 images, --amp bf16 + channels-last:
#   8. ResNet-32 E2E and InfoPro Contrast K=4 (paper cuts) side by side on the one GPU;
#   9. then Greedy and DGL K=4 side by side, if the time limit leaves room.
#   Each run resumes where it stopped when the script is started again (its run directory is kept in OUT),
#   so a session cut off keeps its partial runs: FULL_LIMIT (seconds, default 480) bounds each pair.
# python benchmarks/gpu_report.py OUT gathers the numbers into one report.
set -uo pipefail
OUT=${1:?usage: gpu_session.sh OUT CIFAR10_DIR [DEVICE] [EPOCHS]}
DATA=${2:?usage: gpu_session.sh OUT CIFAR10_DIR [DEVICE] [EPOCHS]}
DEVICE=${3:-cuda}
EPOCHS=${4:-20}
# Smaller sizes for a dry run on a CPU (DEVICE=cpu): same commands, minutes instead of hours.
if [ "$DEVICE" = cpu ]; then
  SUB="--train-subset 300 --test-subset 200 --batch-size 100"; SPEED_SUB=$SUB; BENCH_B=16; IMNET_B=2
else
  SUB=""; SPEED_SUB="--train-subset 10000 --test-subset 1000"; BENCH_B=1024; IMNET_B=128
fi
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export INFOPRO_CACHE=${INFOPRO_CACHE:-/tmp/infopro-gpu-session-cache}  # outside OUT: not sent back
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/session.log"; }
part() {  # part NAME SECONDS CMD...: run CMD under a time limit, its output in OUT/NAME.log
  local name=$1 limit=$2; shift 2
  log "start $name (limit ${limit}s): $*"
  timeout --signal=TERM --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1
  log "end $name: exit $?"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
  $PY -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())"
} >"$OUT/machine.txt" 2>&1

if [ "${PARTS:-main}" = main ]; then
# 1. The README's main job (bundled subset): the CLI works on this device.
part readme 60 $PY -m infopro train --epochs 1 --device "$DEVICE" --out "$OUT/runs/readme" --quiet

# 2. Table 3.
part table3 150 $PY -m infopro bench --arch resnet110 --batch-size $BENCH_B --K 2 3 4 8 16 \
  --methods e2e,checkpoint,infopro-contrast --cuts paper --device "$DEVICE" --steps 5 --warmup 2 --out "$OUT/table3"

# 3. Four CIFAR-10 runs side by side (the configs' batch 1024, lr 0.8, cosine over EPOCHS).
pids=()
for config in resnet32-e2e resnet32-greedy-K4 resnet32-dgl-K4 resnet32-infopro-contrast-K4; do
  part "cifar10-$config" 240 $PY -m infopro train -c "configs/cifar10/$config.yaml" --data-dir "$DATA" $SUB \
    --epochs "$EPOCHS" --device "$DEVICE" --out "$OUT/runs/cifar10-$config" --quiet --tensorboard off &
  pids+=($!)
done
wait "${pids[@]}"

# 4. The ImageNet-scale memory table (224 px, batch 128 per GPU as in the paper's per-GPU figures).
part imagenet_memory 120 $PY benchmarks/imagenet_memory.py --batch-size $IMNET_B --device "$DEVICE" \
  --out "$OUT/imagenet_memory"

# 5. Speed options, alone on the GPU: eager fp32, bf16 autocast, --compile (images/s per epoch).
for mode in eager bf16 compile; do
  flag=""; [ $mode = bf16 ] && flag="--amp bf16"; [ $mode = compile ] && flag="--compile"
  part "speed-$mode" 100 $PY -m infopro train -c configs/cifar10/resnet32-infopro-contrast-K4.yaml --data-dir "$DATA" \
    $SPEED_SUB --epochs 2 $flag --device "$DEVICE" --out "$OUT/runs/speed-$mode" --quiet --tensorboard off
done

fi

if [ "${PARTS:-main}" = recipe ]; then
pids=()
recipe() {  # recipe NAME CONFIG FLAGS...
  local name=$1 config=$2; shift 2
  part "$name" 210 $PY -m infopro train -c "configs/cifar10/$config.yaml" --data-dir "$DATA" $SUB --epochs "$EPOCHS" \
    --device "$DEVICE" --out "$OUT/runs/$name" --quiet --tensorboard off "$@"
}
recipe e2e-b1024 resnet32-e2e & pids+=($!)
recipe e2e-b1024-nocl-notf32 resnet32-e2e --no-channels-last --no-tf32 & pids+=($!)
recipe e2e-b1024-lr0.4 resnet32-e2e --lr 0.4 & pids+=($!)
recipe e2e-b128 resnet32-e2e --batch-size 128 --lr 0.1 & pids+=($!)
recipe infopro-b128 resnet32-infopro-contrast-K4 --batch-size 128 --lr 0.1 & pids+=($!)
wait "${pids[@]}"
part table3-balanced 90 $PY -m infopro bench --arch resnet110 --batch-size $BENCH_B --K 2 3 4 \
  --methods e2e,infopro-contrast --cuts balanced,paper-balanced --device "$DEVICE" --steps 3 --warmup 1 \
  --out "$OUT/table3-balanced"
fi
if [ "${PARTS:-main}" = full ]; then
full() {  # full CONFIG: start it, or resume it if an earlier call of this script began it
  local run="$OUT/runs/full-$1"
  if [ -f "$run/config.yaml" ]; then
    part "full-$1" "${FULL_LIMIT:-480}" $PY -m infopro train --resume "$run" --quiet --tensorboard off
  else
    part "full-$1" "${FULL_LIMIT:-480}" $PY -m infopro train -c "configs/cifar10/$1.yaml" --data-dir "$DATA" $SUB \
      --device "$DEVICE" --amp bf16 --channels-last --out "$run" --quiet --tensorboard off
  fi
}
pids=(); full resnet32-e2e & pids+=($!); full resnet32-infopro-contrast-K4 & pids+=($!); wait "${pids[@]}"
pids=(); full resnet32-greedy-K4 & pids+=($!); full resnet32-dgl-K4 & pids+=($!); wait "${pids[@]}"
fi
log "done"
