#!/usr/bin/env bash
# The runs behind docs/results/evaluation.md and docs/guide/evaluating-log-likelihood.md:
# a VAE on the bundled digits in four variants (the standard prior or the VampPrior, the
# diagonal Gaussian guide or the amortized IAF), all four for 10 epochs in $OUT-10, the two
# diagonal ones for 30 in $OUT, each scored by ELBO, IWAE-5000 and AIS; the lvm on the ring,
# where log p(x) is exact; BDMC's gap against the annealing steps on the 30-epoch standard VAE.
# Hours on 2 busy shared cores. Then:
#   python -m experiments.results.evaluation_table runs/evaluation
#   python -m experiments.results.evaluation_table runs/evaluation-10 docs/results/evaluation-10.json
set -euo pipefail
cd "$(dirname "$0")/../.."   # the repository root
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/evaluation}
VAE="--model vae --data digits --latent-dim 8 --hidden-dims 200 --batch-size 64 --lr 0.003
     --iwae-samples 5000 --pseudo-inputs 50 --no-progress --force"
AIS="--num-points 100 --steps 200 --chains 8 --leapfrog-steps 5 --iwae-samples 5000"
variant() {   # folder, name, epochs, then its flags
  local folder=$1 name=$2 epochs=$3; shift 3
  $PY -m experiments.train $VAE --epochs "$epochs" "$@" --out "$folder/$name" \
      > "$folder/$name.log"
  $PY -m experiments.ais --run "$folder/$name" $AIS > "$folder/$name-ais.log" 2>/dev/null
}
mkdir -p "$OUT" "$OUT-10"
{ variant "$OUT" standard 30; variant "$OUT-10" iaf 10 --guide iaf;
  variant "$OUT-10" standard 10; } &
{ variant "$OUT" vamp 30 --prior vamp; variant "$OUT-10" vamp-iaf 10 --prior vamp --guide iaf;
  variant "$OUT-10" vamp 10 --prior vamp; } &
wait
$PY -m experiments.train --model lvm --data ring --latent-dim 2 --hidden-dims 64 --epochs 30 \
    --iwae-samples 1000 --no-progress --force --out "$OUT/lvm" > "$OUT/lvm.log"
$PY -m experiments.ais --run "$OUT/lvm" --num-points 100 --steps 200 --chains 8 \
    --leapfrog-steps 5 --iwae-samples 1000 --bdmc 50 > "$OUT/lvm-ais.log" 2>/dev/null
# BDMC's gap against the annealing steps on the standard VAE (bdmc_steps.json)
$PY -m experiments.results.bdmc_steps "$OUT/standard" > "$OUT/bdmc-steps.log" 2>/dev/null
