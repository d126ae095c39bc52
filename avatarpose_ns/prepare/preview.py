"""A preview image per view (detections, reprojected skeletons, masks) and the closing summary."""

from __future__ import annotations

from pathlib import Path
from collections.abc import Sequence

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from avatarpose_ns.io.cameras import CameraCalib, project_points
from avatarpose_ns.prepare.skeletons import SMPL_BONES

COLOURS = ((66, 135, 245), (245, 99, 66), (80, 200, 120), (230, 200, 40), (200, 80, 220), (40, 210, 230))


def draw_view(image: np.ndarray, cam: CameraCalib, people: dict[int, tuple[np.ndarray, np.ndarray | None]],
              masks: dict[int, np.ndarray]) -> np.ndarray:
    """people: pid -> (24, 4) SMPL-mapped 3D joints with confidence, (24, 3) this view's 2D detection or None.
    The detection is drawn thin, the triangulated joints' reprojection thick, masks tinted."""
    out = image.astype(np.float32)
    for pid, mask in masks.items():
        colour = np.array(COLOURS[pid % len(COLOURS)], np.float32)
        out[mask] = 0.55 * out[mask] + 0.45 * colour
    out = out.astype(np.uint8)
    scale = max(1, round(max(image.shape[:2]) / 500))
    for pid, (joints3d, det2d) in people.items():
        colour = tuple(int(v) for v in COLOURS[pid % len(COLOURS)])
        if det2d is not None:
            for a, b in SMPL_BONES:
                if det2d[a, 2] > 0 and det2d[b, 2] > 0:
                    cv2.line(out, tuple(np.round(det2d[a, :2]).astype(int)), tuple(np.round(det2d[b, :2]).astype(int)),
                             (255, 255, 255), scale, cv2.LINE_AA)
        valid = joints3d[:, 3] > 0
        uv = np.full((24, 2), np.nan)
        if valid.any():
            uv[valid] = project_points(joints3d[valid, :3], cam)
        for a, b in SMPL_BONES:
            if valid[a] and valid[b]:
                cv2.line(out, tuple(np.round(uv[a]).astype(int)), tuple(np.round(uv[b]).astype(int)), colour,
                         2 * scale, cv2.LINE_AA)
        if valid.any():
            anchor = np.round(np.nanmin(uv[valid], axis=0)).astype(int)
            cv2.putText(out, str(pid), tuple(anchor), cv2.FONT_HERSHEY_SIMPLEX, 0.8 * scale, colour, 2 * scale)
    cv2.putText(out, cam.name, (10 * scale, 30 * scale), cv2.FONT_HERSHEY_SIMPLEX, 0.8 * scale, (255, 255, 255),
                2 * scale)
    return out


def print_summary(console: Console, frames: Sequence[int], cam_names: Sequence[str],
                  people_per_frame: dict[int, int], detected: dict[int, list[int]],
                  errors_px: dict[str, list[float]], timings: dict[str, float], dropped: Sequence[str]) -> None:
    table = Table(title="people per frame")
    table.add_column("frame")
    table.add_column("triangulated")
    table.add_column("detected per view (" + " ".join(cam_names) + ")")
    for frame in frames:
        table.add_row(str(frame), str(people_per_frame.get(frame, 0)), " ".join(str(n) for n in detected[frame]))
    console.print(table)
    table = Table(title="reprojection error of the triangulated keypoints (inlier views)")
    for column in ("camera", "keypoints", "mean px", "median px", "90th pct px"):
        table.add_column(column)
    for cam in cam_names:
        e = np.asarray(errors_px.get(cam, []))
        if e.size:
            table.add_row(cam, str(e.size), f"{e.mean():.2f}", f"{np.median(e):.2f}", f"{np.percentile(e, 90):.2f}")
        else:
            table.add_row(cam, "0", "-", "-", "-")
    console.print(table)
    console.print("time per step: " + ", ".join(f"{k} {v / 60:.2f} min" for k, v in timings.items()))
    if dropped:
        console.print(f"left out ({len(dropped)}): " + "; ".join(dropped[:6]) + (" ..." if len(dropped) > 6 else ""))


def write_preview(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
