#!/usr/bin/env bash
# The runs behind docs/results/evaluation.md and docs/guide/evaluating-log-likelihood.md:
# a VAE on the bundled digits with the standard prior or the VampPrior, the diagonal Gaussian
# guide or the amortized IAF, each scored by ELBO, IWAE and AIS; the lvm on the ring, where
# log p(x) is exact; BDMC against the steps. Hours on 2 busy shared cores. Then:
# python -m experiments.results.evaluation_table
set -euo pipefail
cd "$(dirname "$0")/../.."   # the repository root
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/evaluation}
VAE="--model vae --data digits --latent-dim 8 --hidden-dims 200 --batch-size 64 --lr 0.003
     --epochs 30 --iwae-samples 5000 --pseudo-inputs 50 --no-progress --force"
AIS="--num-points 100 --steps 200 --chains 8 --leapfrog-steps 5 --iwae-samples 5000"
variant() {   # name, then its flags
  local name=$1; shift
  $PY -m experiments.train $VAE "$@" --out "$OUT/$name" > "$OUT/$name.log"
  $PY -m experiments.ais --run "$OUT/$name" $AIS > "$OUT/$name-ais.log" 2>/dev/null
}
mkdir -p "$OUT"
{ variant standard; variant iaf --guide iaf; } &
{ variant vamp --prior vamp; variant vamp-iaf --prior vamp --guide iaf; } &
wait
$PY -m experiments.train --model lvm --data ring --latent-dim 2 --hidden-dims 64 --epochs 30 \
    --iwae-samples 1000 --no-progress --force --out "$OUT/lvm" > "$OUT/lvm.log"
$PY -m experiments.ais --run "$OUT/lvm" --num-points 100 --steps 200 --chains 8 \
    --leapfrog-steps 5 --iwae-samples 1000 --bdmc 50 > "$OUT/lvm-ais.log" 2>/dev/null
# BDMC's gap against the annealing steps on the standard VAE (bdmc_steps.json)
$PY -m experiments.results.bdmc_steps "$OUT/standard" > "$OUT/bdmc-steps.log" 2>/dev/null
