"""2D people detector of `avatarpose-prepare`: mediapipe's BlazePose, run in ``.venv-prepare``.

Run as a script by that venv's python (``scripts/setup_prepare.sh`` makes it), it imports only
numpy, OpenCV and mediapipe, never this package. Per image it writes ``<output>/<cam>/<frame:06d>.npz``
with ``keypoints`` (P, 33, 3: pixel x, y and visibility) and ``masks`` (P, H, W uint8, the
segmentation probability x 255 inside the person's box).

mediapipe 0.10.21's wheel ships the legacy ``solutions.pose`` graph with its full landmark model
(``pose_landmark_full.tflite``, ``model_complexity=1``; the lite and heavy models would be
downloaded at run time) and works offline. That graph finds one person an image, so people are
found in turn: after each detection its box is painted over with the image's median colour and
the image searched again, until nobody is found or ``--max-people`` are. (The Tasks API
``PoseLandmarker`` finds several people at once but needs a ``.task`` bundle whose models carry
normalisation metadata; the wheel's bare .tflite files are refused.)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np


def detect_people(pose, image: np.ndarray, max_people: int, min_visibility: float = 0.5,
                  pad: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    height, width = image.shape[:2]
    work = image.copy()
    fill = np.median(image.reshape(-1, 3), axis=0).astype(np.uint8)
    keypoints, masks = [], []
    for _ in range(max_people):
        result = pose.process(cv2.cvtColor(work, cv2.COLOR_BGR2RGB))
        if result.pose_landmarks is None:
            break
        kp = np.array([[lm.x * width, lm.y * height, lm.visibility] for lm in result.pose_landmarks.landmark])
        seen = kp[:, 2] > min_visibility
        if seen.sum() < 4:
            break
        lo, hi = kp[seen, :2].min(0), kp[seen, :2].max(0)
        margin = pad * (hi - lo).max()
        x0, y0 = np.floor(np.maximum(lo - margin, 0)).astype(int)
        x1, y1 = np.ceil(np.minimum(hi + margin, [width, height])).astype(int)
        mask = np.zeros((height, width), np.uint8)
        if result.segmentation_mask is not None:
            probability = np.clip(result.segmentation_mask * 255.0, 0, 255).astype(np.uint8)
            mask[y0:y1, x0:x1] = probability[y0:y1, x0:x1]
        keypoints.append(kp)
        masks.append(mask)
        work[y0:y1, x0:x1] = fill
    if not keypoints:
        return np.zeros((0, 33, 3)), np.zeros((0, height, width), np.uint8)
    return np.stack(keypoints), np.stack(masks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=Path, required=True, help="json list of [camera, frame, image path]")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--max-people", type=int, default=4)
    args = parser.parse_args()
    import mediapipe as mp

    jobs = json.loads(args.jobs.read_text())
    with mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1, enable_segmentation=True,
                                min_detection_confidence=0.5) as pose:
        for i, (cam, frame, path) in enumerate(jobs):
            image = cv2.imread(path)
            if image is None:
                raise SystemExit(f"{path}: unreadable image")
            keypoints, masks = detect_people(pose, image, args.max_people)
            out = args.output / cam / f"{int(frame):06d}.npz"
            out.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(out, keypoints=keypoints.astype(np.float32), masks=masks)
            print(f"{i + 1}/{len(jobs)} {cam} {frame}: {len(keypoints)} people", flush=True)


if __name__ == "__main__":
    main()
