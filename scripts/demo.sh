#!/usr/bin/env bash
# The main job on the built-in demo: set up (if needed), generate the demo sequence (if missing),
# train avatarpose-lite on the CPU (avatars and poses, alternating), export the poses, meshes and animation
# (GLB, BVH), and print the initialisation's and the result's pose metrics side by side.
# The viewer can be opened during training at http://localhost:7007 (it closes when training ends).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
DATA=${DATA:-data/demo}
RUN=${RUN:-outputs/demo-run}
if [ ! -f "$DATA/meta.json" ]; then
    .venv/bin/avatarpose-synth --preset demo --output-dir "$DATA"
fi
echo "preview of the demo sequence: $DATA/preview.png"
.venv/bin/ns-train avatarpose-lite --data "$DATA" --output-dir "$RUN" --timestamp latest \
    --vis viewer+tensorboard --viewer.quit-on-train-completion True "$@" \
    easymocap-data --eval-cameras 05
CONFIG=$(ls -d "$RUN"/*/avatarpose-lite/latest/config.yml | head -n 1)
.venv/bin/avatarpose-export poses --load-config "$CONFIG" --output-dir "$RUN/export"
.venv/bin/avatarpose-export meshes --load-config "$CONFIG" --output-dir "$RUN/export"
.venv/bin/avatarpose-export animation --load-config "$CONFIG" --output-dir "$RUN/export"
.venv/bin/avatarpose-eval --pred "$RUN/export/smpl.npz" --gt "$DATA/smpl_gt/smpl.npz" \
    --baseline "$DATA/smpl_init/smpl.npz" --json "$RUN/export/metrics.json"
