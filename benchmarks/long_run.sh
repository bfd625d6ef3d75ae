#!/usr/bin/env bash
# The long generator runs (issue 23), kept outside the work tree and carried between machines.
#
#   bash benchmarks/long_run.sh train MODEL [STEPS]  start or continue MODEL's run in $RUNS/DATASET/MODEL, one torch
#                                                    thread, in the background; a run saved in zoo/training/ is
#                                                    restored first when this machine has none
#   bash benchmarks/long_run.sh curve MODEL          score the run's new snapshots at multiples of $EVERY steps
#                                                    (default 2,000; about 15 min of one core each here) into
#                                                    $CURVE (default benchmarks/results/training_curves/DATASET-MODEL.csv);
#                                                    with UNTIL=STEP it follows the run, scoring each new snapshot
#                                                    as it is saved, until the one at STEP
#   bash benchmarks/long_run.sh save MODEL           copy the run's training state, last generator and the
#                                                    snapshots at multiples of $EVERY steps (its curve points) into
#                                                    zoo/training/DATASET-MODEL/, so a fresh machine continues it
#
# MODEL is a generator model, or hgan-frozen: HGAN with a pretrained, frozen teacher (--teacher-from), taken
# when the run starts from the hgan run's latest training state (defense_hgan/frozen_teacher.py), or
# hgan-frozen-smooth: the same with hgan-frozen's own committed teacher (zoo/training/DATASET-hgan-frozen/teacher.pt)
# and one-sided label smoothing (--real-label 0.9), a variant that keeps D from winning; or hgan-frozen-slow-d: the
# same teacher and D's Adam rate a quarter of DCGAN's (--d-lr 5e-5), the other way to slow D.
#
# DATASET is mnist (default; curves with classifier zoo/mnist-a) or cifar10 (zoo/cifar10-fast; batch 64 for every
# model, as the 600-step zoo/cifar10-* generators were trained, so a cifar10 run passes through them).
# RUNS defaults to ~/dh-runs; DATA (the data root) to data/ in the checkout; THREADS (torch threads of train
# and curve) to 1.
set -euo pipefail
cd "$(dirname "$0")/.."
action=${1:?usage: long_run.sh train|curve|save MODEL [STEPS]}
model=${2:?usage: long_run.sh train|curve|save MODEL [STEPS]}
steps=${3:-100000}
runs=${RUNS:-$HOME/dh-runs}
data=${DATA:-$PWD/data}
dataset=${DATASET:-mnist}
source benchmarks/dataset_classifier.sh "$dataset"
run=$runs/$dataset/$model
saved=zoo/training/$dataset-$model
batch=64
# Defense-GAN's reference configuration trains its MNIST WGAN-GP at batch 50
[ "$dataset" = mnist ] && [ "$model" = wgan-gp ] && batch=50
variant=(--model "$model")
[ "$model" = hgan-frozen ] && variant=(--model hgan --teacher-from "$runs/$dataset/hgan/training_state.pt")
[ "$model" = hgan-frozen-smooth ] &&
  variant=(--model hgan --teacher-from "zoo/training/$dataset-hgan-frozen/teacher.pt" --real-label 0.9)
[ "$model" = hgan-frozen-slow-d ] &&
  variant=(--model hgan --teacher-from "zoo/training/$dataset-hgan-frozen/teacher.pt" --d-lr 5e-5)

case $action in
  train)
    mkdir -p "$run"
    if [ ! -f "$run/training_state.pt" ] && [ -f "$saved/training_state.pt" ]; then
      cp "$saved/training_state.pt" "$run/"
      if [ -f "$saved/teacher.pt" ]; then cp "$saved/teacher.pt" "$run/"; fi
      mkdir -p "$run/snapshots"
      for snapshot in "$saved"/step_*.pt; do
        if [ -f "$snapshot" ] && [ ! -f "$run/snapshots/$(basename "$snapshot")" ]; then cp "$snapshot" "$run/snapshots/"; fi
      done
      echo "restored $run from $saved"
    fi
    resume=()
    [ -f "$run/training_state.pt" ] && resume=(--resume)
    OMP_NUM_THREADS=${THREADS:-1} nohup python -m defense_hgan train-generator "${variant[@]}" --dataset "$dataset" \
      --steps "$steps" --batch-size "$batch" --sample-every 1000 --checkpoint-every 200 --snapshot-every 1000 \
      --seed 0 --device cpu --data-root "$data" --out "$run" "${resume[@]}" >> "$run.log" 2>&1 &
    echo "training $model in $run (log $run.log, pid $!)"
    ;;
  curve)
    OMP_NUM_THREADS=${THREADS:-1} python benchmarks/training_curve.py score "$run" --classifier "$classifier" \
      --dataset "$dataset" --data-root "$data" --every "${EVERY:-2000}" ${UNTIL:+--until "$UNTIL"} \
      --out "${CURVE:-benchmarks/results/training_curves/$dataset-$model.csv}"
    ;;
  save)
    mkdir -p "$saved"
    cp "$run/training_state.pt" "$run/generator.pt" "$saved/"
    if [ -f "$run/teacher.pt" ]; then cp "$run/teacher.pt" "$saved/"; fi
    for snapshot in "$run"/snapshots/step_*.pt; do
      [ -f "$snapshot" ] || continue  # no snapshots: the pattern itself
      name=$(basename "$snapshot")
      step=${name#step_}; step=$((10#${step%.pt}))
      if (( step % ${EVERY:-2000} == 0 )) && [ ! -f "$saved/$name" ]; then cp "$snapshot" "$saved/"; fi
    done
    echo "saved $run -> $saved ($(du -sh "$saved" | cut -f1))"
    ;;
  *)
    echo "unknown action $action; expected train, curve or save" >&2
    exit 2
    ;;
esac
