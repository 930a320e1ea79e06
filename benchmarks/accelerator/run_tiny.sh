#!/bin/bash
# Tiny ImageNet synthesis on the accelerator machine: DGN-AM settings search, preset, baseline
# searches, the evaluation's DGN-AM sweeps (classes, ablations, hidden units), full-size
# benchmark; packs results into RES (<= 8 files). Evaluation itself runs later on the CPU.
# usage: benchmarks/accelerator/run_tiny.sh RES [smoke]
set -u
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_MEM_FRACTION=0.5
PY=${PY:-python3}
RES=$1; SMOKE=${2:-}
P=${PRESET:-tinyimagenet200}
J=checkpoints/$P/judge
R=out/gpu
DEADLINE=${DEADLINE:-470}  # s: packing starts by then
mkdir -p $R $RES
: > $R/order.txt
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }
log() { echo "[$(el) s] $*" | tee -a $RES/gpu_log.txt; }
left() { echo $(( DEADLINE - $(el) )); }
UNITS=${UNITS:-$($PY -c "print(','.join(str(5 + 10 * i) for i in range(20)))")}
TRIALS=8; BTRIALS=6; SSEEDS=0-1; CSEEDS=0-4; BSEEDS=0-1; HUNITS=0-63; HSEEDS=0-4
ITERS=(); SITERS=(); BENCH="--neurons=64 --iters=10 --repeats=3"
if [ -n "$SMOKE" ]; then
  TRIALS=2; BTRIALS=2; SSEEDS=0-0; CSEEDS=0-1; BSEEDS=0-0; HUNITS=0-1; HSEEDS=0-0
  ITERS=(--iters=3); SITERS=(--iters=3 --iters_choices=3); BENCH="--size=tiny --neurons=4 --iters=2 --repeats=1"
fi
log "start $(hostname) $(nvidia-smi -L 2>/dev/null | head -1)"
$PY -c "import jax, flax, optax, orbax.checkpoint as oc; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())" 2>&1 | tee -a $RES/gpu_log.txt
run() {  # run TIMEOUT NAME CMD...: a stage, timed, its log tail kept
  local t=$1 name=$2; shift 2
  local s=$(el)
  timeout $t "$@" > $R/$name.log 2>&1; local rc=$?
  log "$name rc=$rc $(( $(el) - s )) s"; tail -3 $R/$name.log >> $RES/gpu_log.txt
  return $rc
}
# 0. Generator stage 2 from stage 1's G and D (.gpu/stage1.npz, G in float16) on the training
#    images that travelled (.gpu/shard_*.npz; all val images), pixel weight 6.
$PY benchmarks/accelerator/merge_shards.py .gpu/tiny.npz .gpu/shard_a.npz .gpu/shard_b.npz 2>&1 | tee -a $RES/gpu_log.txt
GEN_EPOCHS=${GEN_EPOCHS:-2}; [ -n "$SMOKE" ] && GEN_EPOCHS=0.05
finish() {
  mkdir -p $R/small && cp $R/method_settings.json $R/preset_config.py $R/*.log $R/small/ 2>/dev/null
  cp $R/bench_*.json $R/small/ 2>/dev/null
  sed -i '1i small' $R/order.txt
  $PY benchmarks/accelerator/pack.py $R $RES 58 part1 2>&1 | tee -a $RES/gpu_log.txt
  log "done"
}
trap finish EXIT
run 240 train_gen2 $PY -m experiments.train_generator --data=.gpu/tiny.npz \
  --classifier=checkpoints/$P/classifier --workdir=$R/gen2_work --out=checkpoints/$P/generator \
  --trunk=256,128,64,32 --epochs=$GEN_EPOCHS --w_img=6 --lr=4e-4 --init_from=.gpu/stage1.npz \
  --log_every_steps=100 || exit 1
grep -h "PSNR" $R/gen2_work/train.log | tail -4 >> $RES/gpu_log.txt
mkdir -p $R/generator2 && cp -r checkpoints/$P/generator/. $R/generator2/ && cp $R/gen2_work/*.png $R/gen2_work/train.log $R/generator2/ 2>/dev/null
echo generator2 >> $R/order.txt
# 1. DGN-AM settings search (20 classes the demo does not show, pixel-ascent lrs beside it).
 run $(( $(left) - 200 < 200 ? $(left) - 200 : 200 )) search_dgnam $PY -m experiments.search_settings --preset=$P --judge=$J \
  --out=$R/search_$P --trials=$TRIALS --seeds=$SSEEDS --units=$UNITS --pixel_lrs=2,8,32 "${SITERS[@]}"
$PY benchmarks/accelerator/apply_preset.py $P $R/search_$P $R/method_settings.json $R/configs/$P.py 2>&1 | tee -a $RES/gpu_log.txt || exit 1
cp $R/configs/$P.py $R/preset_config.py
echo search_$P >> $R/order.txt
# 2. The evaluation's DGN-AM class and hidden-unit sweeps (preset settings).
run $(( $(left) - 30 )) eval_dgnam $PY -m experiments.evaluate_preset --noevaluate --preset=$R/configs/$P.py --out=$R/eval \
  --class_seeds=$CSEEDS --methods=dgnam --hidden_units=$HUNITS --hidden_seeds=$HSEEDS "${ITERS[@]}"
printf "eval/${P}_dgnam_classes\neval/${P}_dgnam_conv3\neval/${P}_dgnam_conv5\neval/${P}_dgnam_fc6\neval/${P}_dgnam_fc7\n" >> $R/order.txt
# 3. The Adam-on-code ablation's own search, then every DGN-AM ablation sweep.
if [ $(left) -gt 120 ]; then
  run 90 search_dgnam_adam $PY -m experiments.search_settings --preset=$R/configs/$P.py --method=dgnam_adam \
    --judge=$J --out=$R/search_${P}_dgnam_adam --trials=$BTRIALS --seeds=$SSEEDS --units=$UNITS \
    --pixel_lrs= --iters_choices=200 "${SITERS[@]}"
  $PY benchmarks/accelerator/merge_settings.py $R/method_settings.json $R/search_${P}_dgnam_adam/best_settings.json | tee -a $RES/gpu_log.txt
  echo search_${P}_dgnam_adam >> $R/order.txt
  run $(( $(left) - 60 )) eval_ablations $PY -m experiments.evaluate_preset --noevaluate --preset=$R/configs/$P.py \
    --out=$R/eval --class_seeds=$CSEEDS --baseline_seeds=$BSEEDS --hidden_layers= \
    --methods=dgnam_adam,dgnam_nobounds,dgnam_bounds1x,dgnam_bounds2x,dgnam_bounds3x \
    --method_settings=$R/method_settings.json "${ITERS[@]}"
  for m in dgnam_adam dgnam_nobounds dgnam_bounds1x dgnam_bounds2x dgnam_bounds3x; do
    echo eval/${P}_${m}_classes >> $R/order.txt; done
fi
# 4. Full-size speed (random weights): JAX engine vs loops vs PyTorch on the same GPU.
[ $(left) -gt 60 ] && run 100 bench_f32 $PY benchmarks/bench_engine.py --size=full $BENCH --out=$R/bench_full_f32.json
# 5. The pixel-space baselines' own searches (their final sweeps run on the CPU).
for m in pixel_l2 pixel_blur pixel_tv fourier; do
  [ $(left) -gt 40 ] || break
  run 45 search_$m $PY -m experiments.search_settings --preset=$R/configs/$P.py --method=$m --judge=$J \
    --out=$R/search_${P}_$m --trials=$BTRIALS --seeds=$SSEEDS --units=$UNITS --pixel_lrs= \
    --iters_choices=200 "${SITERS[@]}"
  $PY benchmarks/accelerator/merge_settings.py $R/method_settings.json $R/search_${P}_$m/best_settings.json | tee -a $RES/gpu_log.txt
  echo search_${P}_$m >> $R/order.txt
done
[ $(left) -gt 50 ] && run 70 bench_bf16 $PY benchmarks/bench_engine.py --size=full $BENCH --dtype=bfloat16 --out=$R/bench_full_bf16.json
# 6. Pack (trap): small files in one folder, then the runs in priority order within 58 MiB.
