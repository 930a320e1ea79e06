#!/bin/bash
# Issue 21 on the accelerator machine: a Tiny ImageNet generator that inverts EfficientNet-Lite1's
# features (resize + conv upsampling), trained for as long as the call allows, then exported.
# The CPU trains ~85x slower (BUILD_NOTES), so this is where the final training belongs.
#
# What travels (carry; <= 64 MiB per call, so over two calls on a warm machine):
#   call 1: .gpu/weights (the released Lite1 .pth, 22 MB) and .gpu/shard_a.npz;
#   call 2: .gpu/shard_b.npz (make_shards.py: a class-balanced training subset + all val images).
# Steps: join the shards, convert Lite1 (DGNAM_JAX_WEIGHTS), cache its features of every image
# (experiments.encode_features), train (resumable: a rerun continues the workdir), export, pack
# the generator, its curves and the training log into RES.
# usage: benchmarks/accelerator/run_gen21.sh RES [smoke]
#   smoke: a few steps on whatever the shards hold (what was tested on the CPU).
set -u
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_MEM_FRACTION=0.8
export DGNAM_JAX_WEIGHTS=${DGNAM_JAX_WEIGHTS:-.gpu/weights} DGNAM_JAX_CACHE=${DGNAM_JAX_CACHE:-.gpu/cache}
PY=${PY:-python3}
RES=$1; SMOKE=${2:-}
R=${R:-out/gpu_gen21}
DATA=${DATA:-.gpu/tiny.npz}
LAYER=${LAYER:-_avg_pooling}  # the code G inverts (lever 2 compares layers)
EPOCHS=${EPOCHS:-30}; BATCH=${BATCH:-64}
CALL_S=${CALL_S:-560}  # the whole call (the machine's limit is 600 s); training gets what is left
COMP=(${COMP:---comparator=registry:efficientnet_lite1 --comparator_layers=_blocks.4,_blocks.10})
[ -n "$SMOKE" ] && { EPOCHS=0.02; BATCH=16; }
mkdir -p $R $RES
T0=$(date +%s)
log() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a $RES/gpu_log.txt; }
log "start $(nvidia-smi -L 2>/dev/null | head -1)"
if [ ! -f $DATA ]; then  # both shards, or nothing yet: half the data would stay for good
  [ -f .gpu/shard_a.npz ] && [ -f .gpu/shard_b.npz ] || { log "shards missing"; exit 1; }
  $PY benchmarks/accelerator/merge_shards.py $DATA .gpu/shard_a.npz .gpu/shard_b.npz 2>&1 | tee -a $RES/gpu_log.txt
fi
$PY -m experiments.encode_features --net=registry:efficientnet_lite1 --data=$DATA \
  --layers=_avg_pooling,_conv_head,_blocks.20,_blocks.14 --cells=2 --splits=test,train \
  --out=$R/features >> $R/encode.log 2>&1
log "features rc=$?"; tail -2 $R/encode.log >> $RES/gpu_log.txt
# SIGINT: a clean stop (the runner exits as on ctrl-c); 60 s checkpoints bound what is lost.
TRAIN_S=$(( CALL_S - 90 - $(date +%s) + T0 ))  # 90 s for the partial export and the packing
timeout -s INT $TRAIN_S $PY -m experiments.train_generator --data=$DATA \
  --classifier=checkpoints/tinyimagenet200/classifier --codes=$R/features --code_layer=$LAYER \
  --upsample=resize_conv --trunk=256,128,64,32 --noflip --pad=0 --epochs=$EPOCHS \
  --batch_size=$BATCH --w_img=4 "${COMP[@]}" --workdir=$R/work --out=$R/generator \
  --log_every_steps=100 --checkpoint_every_secs=60 >> $R/train.log 2>&1
log "train rc=$? (124: the time ran out; rerun to resume)"; grep -h "PSNR" $R/train.log | tail -3 >> $RES/gpu_log.txt
# Not finished: export what there is, so a lost machine still leaves a generator to look at.
if [ ! -d $R/generator ]; then
  rm -rf $R/generator_partial
  $PY -m experiments.train_generator --data=$DATA \
    --classifier=checkpoints/tinyimagenet200/classifier --codes=$R/features --code_layer=$LAYER \
    --upsample=resize_conv --trunk=256,128,64,32 --noflip --pad=0 --epochs=$EPOCHS \
    --batch_size=$BATCH --w_img=4 "${COMP[@]}" --workdir=$R/work --out=$R/generator_partial \
    --stop_at_step=0 --export_partial >> $R/train.log 2>&1
  log "partial export rc=$?"
fi
P=pack_$(date +%s)  # a new name per call: pack.py sends a folder once
mkdir -p $R/$P && cp -r $R/generator* $R/$P/ 2>/dev/null
cp $R/work/*.png $R/work/run_config.json $R/train.log $R/encode.log $R/$P/ 2>/dev/null
echo $P > $R/order.txt
$PY benchmarks/accelerator/pack.py $R $RES 58 gen21 2>&1 | tee -a $RES/gpu_log.txt
log done
