#!/usr/bin/env bash
# Lesson 7's runs and tables (make lessons runs this after experiments.lessons; times: README).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
SS="--model ssvae --likelihood continuous-bernoulli --hidden-dims 128 --latent-dim 8
    --batch-size 64 --lr 0.002 --labeled-batch 0 --epochs 30 --iwae-samples 10 --grad-draws 2
    --jobs 2 --force"
for n in 100 300; do
  seeds=$([ $n = 100 ] && echo 4 || echo 3)
  $PY -m experiments.compare $SS --guide m2-enum --elbos enum --aux-weight 46 \
      --labels $n --seeds $seeds --out runs/lesson7/ssvae-$n-aux
  $PY -m experiments.compare $SS --guide m2-enum --elbos enum,trace/m2 \
      --labels $n --seeds $seeds --out runs/lesson7/ssvae-$n
done
$PY -m experiments.compare $SS --guide m2-enum --elbos enum --aux-weight 46 --seeds 3 \
    --out runs/lesson7/ssvae-all-aux
CV="--model cvae --guide normal --elbos trace --hidden-dims 128 --latent-dim 2 --batch-size 64
    --lr 0.001 --epochs 30 --iwae-samples 1000 --grad-draws 2 --seeds 3 --jobs 2 --force"
for k in 1 2 3; do
  $PY -m experiments.compare $CV --visible $k --out runs/lesson7/cvae-$k
done
$PY -m experiments.results.labels runs/lesson7 docs/results/lesson7
cp runs/lesson7/ssvae-100-aux/runs/enum-seed0/accuracy.png \
   runs/lesson7/ssvae-100-aux/runs/enum-seed0/style.png docs/results/lesson7/
cp runs/lesson7/cvae-1/runs/trace-seed0/completions.png docs/results/lesson7/
