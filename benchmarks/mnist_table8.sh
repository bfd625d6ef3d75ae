#!/bin/bash
# HGAN Table 8 on MNIST: Defense-GAN (L=200, R=10) with one zoo generator, under one threat model.
#
#   bash benchmarks/mnist_table8.sh MODEL THREAT     # MODEL: wgan-gp, hgan, ... (zoo/mnist-MODEL); THREAT: oblivious or bpda
#
# oblivious: the first 500 test images. bpda: the first 100; the attacker's gradients come from a cheaper
# projection (L=50, R=2; scored with L=200, R=10) and CW runs 20 iterations (ART's line search costs several
# projections per iteration). Results go to benchmarks/results/table8/mnist-MODEL/THREAT/; rerun the same
# command to resume an interrupted run. Then `python benchmarks/defense_table.py` writes the table.
set -euo pipefail
model=$1 threat=$2
common=(zoo/mnist-a/classifier.pt "zoo/mnist-$model/generator.pt" --dataset mnist --attacks fgsm,pgd,cw
        --threat "$threat" --L 200 --R 10 --seed 0 --device "${DEVICE:-auto}" --data-root "${DATA_ROOT:-data}"
        --out "benchmarks/results/table8/mnist-$model/$threat")
case $threat in
  oblivious) python -m defense_hgan evaluate "${common[@]}" --n 500 ;;
  bpda) python -m defense_hgan evaluate "${common[@]}" --n 100 --attacker-L 50 --attacker-R 2 \
          --settings "{cw: {max_iter: 20}}" ;;
  *) echo "THREAT must be oblivious or bpda, got $threat" >&2; exit 2 ;;
esac
