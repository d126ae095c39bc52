"""2D detections on disk: ``<root>/<cam>/<frame:06d>.npz`` with ``keypoints`` (P, K, 3) and ``masks``
(P, H, W uint8), written by ``detect_mediapipe.py`` in its own venv or by any other detector."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from collections.abc import Sequence

import numpy as np

from avatarpose_ns.commands import InputError

DETECTOR_SCRIPT = Path(__file__).with_name("detect_mediapipe.py")
REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON_ENV = "AVATARPOSE_PREPARE_PYTHON"


class DetectionError(InputError):
    """Detections missing or unreadable; the message names the file."""


def detector_python() -> Path:
    """The python of the detector's venv: ``$AVATARPOSE_PREPARE_PYTHON`` or ``.venv-prepare`` at the repo root."""
    path = Path(os.environ.get(PYTHON_ENV, REPO_ROOT / ".venv-prepare" / "bin" / "python"))
    if not path.is_file():
        raise DetectionError(f"{path}: the detector's python is missing; run scripts/setup_prepare.sh (or set "
                             f"{PYTHON_ENV}, or pass --detections with precomputed ones)")
    return path


def run_detector(images: dict[tuple[str, int], Path], output: Path, max_people: int) -> None:
    """Run mediapipe on every image in its venv, writing ``output/<cam>/<frame>.npz``; progress on stdout."""
    output.mkdir(parents=True, exist_ok=True)
    jobs = output / "jobs.json"
    jobs.write_text(json.dumps([[cam, frame, str(path)] for (cam, frame), path in sorted(images.items())]))
    command = [str(detector_python()), str(DETECTOR_SCRIPT), "--jobs", str(jobs), "--output", str(output),
               "--max-people", str(max_people)]
    env = {**os.environ, "GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(command, env=env, stdout=sys.stdout, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise DetectionError(f"{DETECTOR_SCRIPT}: the detector failed (exit {done.returncode}):\n{done.stderr[-2000:]}")


def read_detections(root: Path, cameras: Sequence[str], frames: Sequence[int]) -> tuple[list[list[np.ndarray]],
                                                                                         dict[tuple[str, int], Path]]:
    """Keypoints per frame and camera (frames x cameras lists of (P, K, 3)) and the file of each view."""
    keypoints, files = [], {}
    for frame in frames:
        row = []
        for cam in cameras:
            path = root / cam / f"{frame:06d}.npz"
            if not path.is_file():
                raise DetectionError(f"{path}: detections of camera '{cam}' frame {frame} not found")
            try:
                with np.load(path) as data:
                    kp = np.asarray(data["keypoints"], dtype=np.float64)
            except Exception as err:
                raise DetectionError(f"{path}: unreadable detections ({type(err).__name__}: {err})") from None
            if kp.ndim != 3 or kp.shape[-1] != 3:
                raise DetectionError(f"{path}: keypoints have shape {kp.shape}, expected (people, keypoints, 3)")
            row.append(kp)
            files[cam, frame] = path
        keypoints.append(row)
    return keypoints, files


def read_masks(path: Path) -> np.ndarray | None:
    """(P, H, W) uint8 segmentation probabilities of one view, or None when the detector gave none."""
    with np.load(path) as data:
        return np.asarray(data["masks"]) if "masks" in data.files else None
