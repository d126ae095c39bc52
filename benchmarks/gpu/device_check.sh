#!/usr/bin/env bash
# The prepared device check, one call on a bare CUDA machine (torch, numpy, scipy and opencv
# there; no nerfstudio, no smplx). It needs, carried from the CPU machine:
#   .whl/        smplx as a py3.12 wheel
#   .gpucache/   the built-in body model (AVATARPOSE_CACHE), written by any run here
#   data/demo    the demo sequence (its frame 0 gives the rays)
# and writes every log and JSON to $OUT (default /tmp/device-check):
#   1. nearest-vertex search on the GPU, brute force against the grid, three cell sizes;
#   2. bench_phases at the released sizes with the CUDA path checks and a profile of three
#      avatar steps (where the time goes), then the released schedule extrapolated;
#   3. bench_phases at the lite sizes.
#     bash benchmarks/gpu/device_check.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/device-check}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "could not install the carried wheels"; exit 1; }
export PYTHONPATH=/tmp/site AVATARPOSE_CACHE=$PWD/.gpucache PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/nvidia-smi.txt"
python3 benchmarks/bench_nearest_vertex.py --device cuda --sizes 65536 1048576 4194304 --methods cdist grid \
    --cell-sizes 0.02 0.03 0.04 2>&1 | tee "$OUT/nearest_vertex.log"
python3 benchmarks/bench_phases.py --profile --json "$OUT/released.json" 2>&1 | tee "$OUT/released.log"
python3 benchmarks/bench_phases.py --skip-checks --field small --num-samples 32 --min-step 0.01 \
    --rays-per-person 1024 --json "$OUT/lite.json" 2>&1 | tee "$OUT/lite.log"
