#!/usr/bin/env bash
# The 2D detector of `avatarpose-prepare` (mediapipe's pose landmarker) in a venv of its own,
# .venv-prepare at the repo root: mediapipe 0.10.21 needs protobuf>=4.25.3 and
# opencv-contrib-python, nerfstudio 1.1.5 pins protobuf<=3.20.3 and the main venv has
# opencv-python; both in one venv would break one of them. The main code runs the detector
# as a subprocess of this venv's python (avatarpose_ns/prepare/detect_mediapipe.py) and reads
# the detections it writes. Re-running it on a good venv returns in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="$(pwd)/.venv-prepare"
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
MEDIAPIPE=mediapipe==0.10.21

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import mediapipe, cv2, numpy" 2>/dev/null \
   && [ "$("$VENV/bin/python" -c 'import mediapipe; print(mediapipe.__version__)')" = "${MEDIAPIPE#*==}" ]; then
    echo "[setup_prepare] .venv-prepare is up to date"
    exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
echo "[setup_prepare] installing $MEDIAPIPE into $VENV"
"$VENV/bin/python" -m pip install -q "$MEDIAPIPE"
"$VENV/bin/python" -c "import mediapipe, cv2, numpy; print('[setup_prepare] mediapipe', mediapipe.__version__, 'numpy', numpy.__version__, 'cv2', cv2.__version__)"
