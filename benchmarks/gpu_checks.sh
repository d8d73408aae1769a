#!/usr/bin/env bash
# The GPU figures issue 4 asks for, in one run (about 10 minutes on one H100/H200):
#   1. bench_train at 64 px, batch 64 and 1024 (and 1024 with cuDNN autotuning): img/s of
#      the ceiling, ours and the per-sample DataLoader, and the model FLOP utilisation;
#   2. the `radio` recipe at its long budget (EPOCHS at 64 px) on MiraBest and on FIRST,
#      with both cost-free baselines, from ablate_recipe; FIRST also aligned (no rotations),
#      training the whole backbone and only its last stage (train_from: layer4).
#
#   bash benchmarks/gpu_checks.sh OUT_DIR [CACHE_DIR] [EPOCHS]
#
# CACHE_DIR holds ablate_recipe's image stores (store_64_0_p0.5.h5 under mirabest/,
# store_64_100_p0.5.h5 and store_64_100_p0.5_aligned.h5 under first/). Where the datasets' sources are not at hand
# (firstgalaxydata not installed, no ../shared/data), copy stores built elsewhere into it.
# Needs torch, torchvision, h5py, numpy, pandas, scikit-learn, astropy, matplotlib.
set -euo pipefail
out=${1:?usage: gpu_checks.sh OUT_DIR [CACHE_DIR] [EPOCHS]}
cache=${2:-benchmarks/runs/ablation}
epochs=${3:-100}
python=${PYTHON:-python3}
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH=workflow${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$out/gpu.txt" 2>&1 || true
for batch in 64 1024; do
    "$python" benchmarks/bench_train.py --size 64 --batch "$batch" 2>&1 | tee "$out/bench_train_b$batch.txt"
done
# train.deterministic: false, for its price in speed
"$python" benchmarks/bench_train.py --size 64 --batch 1024 --autotune 2>&1 | tee "$out/bench_train_b1024_autotune.txt"
ablate() {  # NAME DATASET CROP_SIZE RECIPE [ablate_recipe options]
    local name=$1 dataset=$2 crop=$3 recipe=$4
    shift 4
    "$python" benchmarks/ablate_recipe.py --dataset "$dataset" --size 64 --crop-size "$crop" --power 0.5 "$@" \
        --epochs "$epochs" --baselines --recipes "$recipe" --cache "$cache" --out "$out/ablation.csv" 2>&1 \
        | tee "$out/ablate_$name.txt"
}
ablate mirabest mirabest 0 radio
ablate first first 100 radio
ablate first_aligned first 100 radio+rotate=false --align
ablate first_aligned_layer4 first 100 radio+rotate=false+train_from=layer4 --align
