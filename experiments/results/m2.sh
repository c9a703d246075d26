#!/usr/bin/env bash
# docs/results/m2.md's runs and tables (about two and a half hours on two shared cores).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
M="$PY -m experiments.results.m2_measure"
# the table: the ssvae's defaults against the classifier alone, and α = 46 at 8×8
$M runs/m2 defaults --seeds 0,1,2,3,4 --epochs 15 --num-train 2000 --labels 100
$M runs/m2 defaults --seeds 0,1,2 --epochs 30 --num-train 2000 --labels 1000
$M runs/m2 defaults --seeds 0,1,2,3,4 --epochs 30 --data digits --labels 100
$M runs/m2 defaults --seeds 0,1,2 --epochs 30 --data digits --labels 1000
$M runs/m2 aux-46 --seeds 0,1,2 --epochs 30 --data digits --labels 100
# the cause: one seed, 28×28, 100 labels, each variant changing the defaults
$M runs/m2-cause defaults,hidden-128,lesson7,labeled-16-aux-46,hidden-128-aux-6000,\
hidden-128-latent-2,hidden-128-latent-32,hidden-128-labeled-64,hidden-1024,aux-46 \
    --epochs 10 --num-train 2000
# the choices, on held-out training images (no test image read): width and α at 28×28 (five
# seeds, 10 epochs) and 8×8 (three, 30 epochs), the labeled rows per minibatch at 28×28 (five)
V="$M runs/m2-validation hidden-128,defaults,hidden-1024,aux-46"
$V --seeds 0,1,2,3,4 --epochs 10 --num-train 2000 --validation 500
$V --seeds 0,1,2 --epochs 30 --data digits --validation 300
$M runs/m2-validation labeled-alike,labeled-64 --seeds 0,1,2,3,4 --epochs 10 --num-train 2000 \
    --validation 500
$PY -m experiments.results.m2_tables docs/results/m2 runs/m2/*/*-seed*
$PY -m experiments.results.m2_tables --cause docs/results/m2 runs/m2-cause/*/*-seed*
$PY -m experiments.results.m2_tables --validation docs/results/m2 runs/m2-validation/*/*-seed*
