#!/usr/bin/env bash
# The GPU figures issue 4 asks for, in one run (about 10 minutes on one H100/H200):
#   0. the unit tests of the CUDA paths;
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
# Needs torch, torchvision, h5py, numpy, pandas, scipy, scikit-learn, astropy, matplotlib,
# pillow, pyyaml (and firstgalaxydata, only to build the FIRST stores). A step that fails is
# recorded in OUT_DIR/failures.txt and the others still run; the exit status says whether any failed.
set -uo pipefail
out=$(realpath -m "${1:?usage: gpu_checks.sh OUT_DIR [CACHE_DIR] [EPOCHS]}")
cache=$(realpath -m "${2:-$(dirname "$0")/runs/ablation}")
epochs=${3:-100}
python=${PYTHON:-python3}
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH=workflow${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$out"
: >"$out/failures.txt"
step() {  # NAME COMMAND...: run it, its output to OUT_DIR/NAME.txt, a failure recorded
    local name=$1
    shift
    if ! "$@" 2>&1 | tee "$out/$name.txt"; then
        echo "$name" >>"$out/failures.txt"
    fi
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$out/gpu.txt" 2>&1 || true
# The CUDA paths of training and features first (seconds; skipped on the CPU): bf16, channels_last,
# fixed batch norm, determinism. Needs pytest.
step gpu_tests "$python" -m pytest -q -p no:cacheprovider tests/unit/test_training.py tests/unit/test_features.py -k "gpu or cuda"
for batch in 64 1024; do
    step "bench_train_b$batch" "$python" benchmarks/bench_train.py --size 64 --batch "$batch"
done
# train.deterministic: false, for its price in speed
step bench_train_b1024_autotune "$python" benchmarks/bench_train.py --size 64 --batch 1024 --autotune
ablate() {  # NAME DATASET CROP_SIZE RECIPE [ablate_recipe options]
    local name=$1 dataset=$2 crop=$3 recipe=$4
    shift 4
    step "ablate_$name" "$python" benchmarks/ablate_recipe.py --dataset "$dataset" --size 64 --crop-size "$crop" \
        --power 0.5 "$@" --epochs "$epochs" --baselines --recipes "$recipe" --cache "$cache" --out "$out/ablation.csv"
}
ablate mirabest mirabest 0 radio
ablate first first 100 radio
ablate first_aligned first 100 radio+rotate=false --align
ablate first_aligned_layer4 first 100 radio+rotate=false+train_from=layer4 --align
if [ -s "$out/failures.txt" ]; then
    echo "failed: $(tr '\n' ' ' <"$out/failures.txt")" >&2
    exit 1
fi
