#!/usr/bin/env bash
# Set up (if needed), generate the built-in demo sequence and evaluate its initialisation.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
DATA=${DATA:-data/demo}
if [ ! -f "$DATA/meta.json" ]; then
    .venv/bin/avatarpose-synth --preset demo --output "$DATA"
fi
echo "preview of the demo sequence: $DATA/preview.png"
.venv/bin/avatarpose-eval --pred "$DATA/smpl_init/smpl.npz" --gt "$DATA/smpl_gt/smpl.npz"
