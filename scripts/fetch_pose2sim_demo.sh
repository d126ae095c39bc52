#!/usr/bin/env bash
# Pose2Sim's multi-person demo capture (four 1088x1920 60 fps videos of 100 frames and a Qualisys
# calibration; BSD-3-Clause, from the pose2sim wheel on PyPI) into data/pose2sim_demo/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=data/pose2sim_demo
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
if [ -f "$DEST/calibration/Calib.qca.txt" ] && [ "$(ls "$DEST"/videos/*.mp4 2>/dev/null | wc -l)" -eq 4 ]; then
    echo "[fetch_pose2sim_demo] $DEST is there"; exit 0
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$PY" -m pip download -q pose2sim==0.10.49 --no-deps -d "$tmp"
mkdir -p "$DEST"
"$PY" - "$tmp"/pose2sim-0.10.49-py3-none-any.whl "$DEST" <<'PYEOF'
import sys, zipfile
from pathlib import Path
wheel, dest = sys.argv[1], Path(sys.argv[2])
prefix = "Pose2Sim/Demo_MultiPerson/"
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith(prefix + "videos/") or name.startswith(prefix + "calibration/"):
            target = dest / name[len(prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(z.read(name))
PYEOF
echo "[fetch_pose2sim_demo] wrote $DEST (videos/, calibration/Calib.qca.txt)"
