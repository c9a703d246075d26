#!/usr/bin/env bash
# The runs behind the seeds table of docs/results/evaluation.md: a VAE on the bundled digits in
# four variants (the standard prior or the VampPrior, the diagonal Gaussian guide or the
# amortized IAF), each for 30 epochs from seeds 0, 1 and 2, scored by its test ELBO, IWAE-5000,
# AIS on the first 100 test images (IWAE-5000 on the same images beside it) and the collapse
# diagnostics, into $OUT/seed-S/VARIANT; a run that finished is not trained again. AIS takes 50
# steps, not evaluation.sh's 200: under the IAF guide every HMC step inverts the flow to score
# q(z|x), and 200 steps took over 15 minutes per run on 2 cores shared with 3 other engineers
# (BDMC's gap on the standard VAE is 0.007 ± 0.040 nats at 30 steps). About 40 minutes. Then:
#   python -m experiments.results.evaluation_seeds runs/evaluation-seeds
set -euo pipefail
cd "$(dirname "$0")/../.."   # the repository root
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/evaluation-seeds}
SEEDS=${SEEDS:-0 1 2}
VAE="--model vae --data digits --latent-dim 8 --hidden-dims 200 --batch-size 64 --lr 0.003
     --iwae-samples 5000 --pseudo-inputs 50 --epochs 30 --threads 1 --no-progress --force"
AIS="--num-points 100 --steps 50 --chains 8 --leapfrog-steps 5 --iwae-samples 5000"
variant() {   # seed, name, then its flags
  local seed=$1 name=$2; shift 2
  local folder="$OUT/seed-$seed"
  mkdir -p "$folder"
  [ -f "$folder/$name/summary.json" ] ||
    $PY -m experiments.train $VAE --seed "$seed" "$@" --out "$folder/$name" > "$folder/$name.log"
  $PY -m experiments.ais --run "$folder/$name" $AIS > "$folder/$name-ais.log" 2>/dev/null
}
for seed in $SEEDS; do variant "$seed" standard; variant "$seed" iaf --guide iaf; done &
for seed in $SEEDS; do variant "$seed" vamp --prior vamp; variant "$seed" vamp-iaf --prior vamp --guide iaf; done &
wait
