#!/bin/bash
# DGN-AM and Fourier on all 1000 ImageNet classes of EfficientNet-Lite1 (200 iterations, seed 0),
# on the accelerator machine (~30 CPU-hours per method here). The weights travel as the released
# .pth files in .gpu/weights (carry it; the machine has no package index) and are converted there.
# Results: the sweep folders (manifests, codes, PNGs), packed into RES; the evaluation runs later
# here (`python -m experiments.imagenet_efficientnet --seen=200 --unseen=800 --reverse_classes=0
# --out=<unpacked>` resumes the finished sweeps and evaluates them).
# usage: benchmarks/accelerator/run_imagenet.sh RES [smoke]
#   smoke: 3 classes x 3 iterations (what was tested on the CPU before any accelerator).
set -u
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_MEM_FRACTION=0.8
export DGNAM_JAX_WEIGHTS=${DGNAM_JAX_WEIGHTS:-.gpu/weights} DGNAM_JAX_CACHE=${DGNAM_JAX_CACHE:-.gpu/cache}
PY=${PY:-python3}
RES=$1; SMOKE=${2:-}
R=out/gpu_imagenet
SEEN=200; UNSEEN=800; ITERS=200; BATCH=${BATCH:-125}
[ -n "$SMOKE" ] && { SEEN=2; UNSEEN=1; ITERS=3; BATCH=3; }
mkdir -p $R $RES
T0=$(date +%s)
log() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a $RES/gpu_log.txt; }
log "start $(nvidia-smi -L 2>/dev/null | head -1)"
timeout ${TIMEOUT:-540} $PY -m experiments.imagenet_efficientnet --stage=synthesize --out=$R \
  --seen=$SEEN --unseen=$UNSEEN --iters=$ITERS --reverse_classes=0 --batch_per_device=$BATCH \
  > $R/sweeps.log 2>&1
log "sweeps rc=$?"; tail -5 $R/sweeps.log >> $RES/gpu_log.txt
ls $R | grep -v '\.log$' > $R/order.txt
$PY benchmarks/accelerator/pack.py $R $RES 58 imagenet 2>&1 | tee -a $RES/gpu_log.txt
log done
