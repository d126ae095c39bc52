#!/usr/bin/env bash
# One set-up path for everyone (README, CI, tests): a .venv at the repo root
# with torch installed first, then this package in editable mode with [dev].
# Re-running it on a good .venv only checks and returns in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv"
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3

# open3d (pulled in by nerfstudio) needs libusb at import time.
if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then
    echo "[setup] installing Debian package libusb-1.0-0"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq libusb-1.0-0
fi

# The Khronos glTF validator (npm) for the animation export's test; skipped there without node.
if command -v npm >/dev/null 2>&1 && [ ! -d scripts/gltf_validator/node_modules/gltf-validator ]; then
    echo "[setup] installing the glTF validator (npm) into scripts/gltf_validator"
    npm ci --prefix scripts/gltf_validator --no-audit --no-fund --loglevel=error \
        || echo "[setup] npm install of gltf-validator failed; its test will be skipped"
fi

stamp="$VENV/.avatarpose-setup-stamp"
want=$(sha1sum pyproject.toml scripts/setup.sh | sha1sum | cut -c1-40)
if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
   && "$VENV/bin/python" -c "import torch, smplx, nerfstudio, avatarpose_ns" 2>/dev/null; then
    echo "[setup] .venv is up to date"
    exit 0
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
echo "[setup] installing torch 2.14.1 / torchvision 0.29.1"
"$VENV/bin/python" -m pip install -q torch==2.14.1 torchvision==0.29.1
echo "[setup] installing avatarpose-ns (editable, with dev extra) and nerfstudio; this takes a few minutes the first time"
"$VENV/bin/python" -m pip install -q -e ".[dev]"
"$VENV/bin/python" -c "import torch, smplx, nerfstudio, avatarpose_ns"
echo "$want" > "$stamp"
echo "[setup] done: $VENV"
