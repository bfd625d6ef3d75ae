#!/bin/bash
# HGAN Tables 8 (MNIST) and 9 (CIFAR-10): Defense-GAN (L=200, R=10) with one zoo generator, under one threat model.
#
#   bash benchmarks/paper_tables.sh DATASET MODEL THREAT
#     DATASET: mnist (classifier zoo/mnist-a) or cifar10 (zoo/cifar10-fast); MODEL: wgan-gp, hgan, ... (zoo/DATASET-MODEL)
#     THREAT: oblivious or bpda
#   GENERATOR=PATH replaces zoo/DATASET-MODEL/generator.pt, e.g. a trained snapshot; name MODEL after it
#   (hgan-frozen-10k): MODEL's first part (hgan, wgan-gp, ...) picks the paper row it goes beside
#   CLASSIFIER=PATH replaces the dataset's classifier, e.g. Defense-GAN-Rec's, tuned on the generator's
#   reconstructions (tune-classifier); name MODEL after both (hgan-frozen-10k-rec)
#
# oblivious: the first 500 MNIST or 200 CIFAR-10 test images. bpda: the first 100; the attacker's gradients come from
# a cheaper projection (L=50, R=2; scored with L=200, R=10) and CW runs 20 iterations (ART's line search costs several
# projections per iteration), followed by Carlini et al.'s sanity checks (PGD under BPDA at 1/4 to 2x eps, at eps 1,
# and with twice the iterations, on the same images). Results go to
# benchmarks/results/paper_tables/DATASET-MODEL/THREAT/; rerun the same command to resume an interrupted run. Then
# `python benchmarks/defense_table.py` writes the tables. CHUNK=50 halves the images attacked and saved at a time
# (default 100), for runs whose chunk would outlast a session (WGAN-GP BPDA: CW, 40 min per 50 images). OUT=DIR
# writes there instead, and N=COUNT attacks the first COUNT images instead of 500/200/100, for runs that are not table
# rows (benchmarks/bpda_cost.py's comparison of settings). LAUNCH (default `python -m`) runs the module, e.g.
# LAUNCH="torchrun --standalone --nproc-per-node 2 -m --" with OMP_NUM_THREADS=1: the ranks share out the chunks, same
# numbers (the `--` keeps torchrun from reading evaluate's flags as its own: --n is ambiguous to it).
# ADVERSARIAL_CACHE=DIR keeps the oblivious rows' adversarial images in DIR and reuses them: they depend on the
# classifier, images, attack settings and seed, not on the generator, so another generator's oblivious row skips
# crafting (CW-L2 was half the CIFAR-10 HGAN row's time); defense_hgan/adversarial_cache.py.
# BPDA=converged (issue 25) adds APGD-CE and APGD-DLR, warm-starts the attacker's projection (10 steps from each
# image's previous latent) and runs PGD 100 iterations at step 0.03 (eps / 10), so that twice the iterations leave
# the accuracy within 0.02: about an hour for the 10,000-step frozen-teacher HGAN at one thread.
set -euo pipefail
dataset=$1 model=$2 threat=$3
source "$(dirname "${BASH_SOURCE[0]}")/dataset_classifier.sh" "$dataset"
classifier=${CLASSIFIER:-$classifier}
# Table 8 uses 500 MNIST test images; Table 9 200 CIFAR-10 ones (the projection costs more there)
oblivious_n=500
[ "$dataset" = cifar10 ] && oblivious_n=200
common=("$classifier" "${GENERATOR:-zoo/$dataset-$model/generator.pt}" --dataset "$dataset" --threat "$threat"
        --L 200 --R 10 --seed 0 --device "${DEVICE:-auto}" --data-root "${DATA_ROOT:-data}"
        --out "${OUT:-benchmarks/results/paper_tables/$dataset-$model/$threat}" --chunk "${CHUNK:-100}")
read -ra launch <<< "${LAUNCH:-python -m}"
evaluate=("${launch[@]}" defense_hgan evaluate)
case $threat in
  oblivious)
    cache=()
    [ -n "${ADVERSARIAL_CACHE:-}" ] && cache=(--adversarial-cache "$ADVERSARIAL_CACHE")
    "${evaluate[@]}" "${common[@]}" "${cache[@]}" --attacks fgsm,pgd,cw --n "${N:-$oblivious_n}" ;;
  bpda)
    bpda=("${common[@]}" --n "${N:-100}" --attacker-L 50 --attacker-R 2 --sanity)
    case ${BPDA:-paper} in
      paper) "${evaluate[@]}" "${bpda[@]}" --attacks fgsm,pgd,cw --settings "{cw: {max_iter: 20}}" ;;
      converged) "${evaluate[@]}" "${bpda[@]}" --attacker-warm-L 10 \
                   --attacks fgsm,pgd,apgd-ce,apgd-dlr,cw --settings "{pgd: {max_iter: 100, eps_step: 0.03}, cw: {max_iter: 20}}" ;;
      *) echo "BPDA must be paper or converged, got $BPDA" >&2; exit 2 ;;
    esac ;;
  *) echo "THREAT must be oblivious or bpda, got $threat" >&2; exit 2 ;;
esac
