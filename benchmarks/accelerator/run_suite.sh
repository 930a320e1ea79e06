#!/bin/bash
# Issue 22's accelerator suite on a lent GPU (< 8 minutes): the engine on all 1000 CaffeNet
# classes in float32 and bfloat16 with auto batch, the batched PyTorch loop, the embedded
# presets' sweeps with deterministic GPU ops. Results (JSON + markdown) go to RES; copy them to
# reports/benchmarks/ here.
# usage: benchmarks/accelerator/run_suite.sh RES [suite.py flags]
set -u
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
RES=$1; shift
mkdir -p $RES
nvidia-smi -L 2>/dev/null | head -1 | tee $RES/suite_log.txt
# 460 s: the suite stops starting parts at 420 s (--budget_s) and still writes what it has.
timeout 460 $PY benchmarks/accelerator/suite.py --out_dir=$RES "$@" 2>&1 | tee -a $RES/suite_log.txt
