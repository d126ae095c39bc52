"""Render a camera path with times through a trained model, frame by frame, and a strip of some of its views.

nerfstudio's own path renderer (`ns-render camera-path`) reads the same camera_path.json and carries
its times, but insists on ffmpeg even for single images; this loop needs none and builds its cameras
with nerfstudio's own reader (`get_path_from_json`), so both render the same views.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from nerfstudio.cameras.camera_paths import get_path_from_json

from avatarpose_ns.scene.timeline import time_to_frame_position


@dataclass(frozen=True)
class RenderedPath:
    """What `render_path` wrote: one PNG per view, and the frame number each view shows."""

    images: list[Path]
    frame_numbers: list[int]


def render_path(model, camera_path: dict, output_dir: Path, downscale: float = 1.0) -> RenderedPath:
    """Render every view of `camera_path` (nerfstudio's camera_path.json layout) with `model` (an
    AvatarPoseModel in eval mode) into output_dir/<index>.png."""
    cameras = get_path_from_json(camera_path)
    if cameras.times is None:
        raise ValueError("the camera path has views without a render_time: the model would not know the frame")
    if downscale != 1.0:
        cameras.rescale_output_resolution(1.0 / downscale)
    cameras = cameras.to(model.device)
    output_dir.mkdir(parents=True, exist_ok=True)
    images, frames = [], []
    for index in range(len(cameras)):
        with torch.no_grad():
            outputs = model.get_outputs_for_camera(cameras[index:index + 1])
        rgb = (outputs["rgb"].clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)
        path = output_dir / f"{index:05d}.png"
        if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            raise OSError(f"{path}: could not write the image")
        images.append(path)
        position = int(time_to_frame_position(float(cameras.times[index]), model.num_frames))
        frames.append(int(model.frame_numbers[position]))
    return RenderedPath(images, frames)


def strip_indices(num_views: int, count: int) -> list[int]:
    """`count` views spread evenly from the first to the last (fewer when the path is shorter)."""
    count = max(1, min(count, num_views))
    return sorted({int(round(i)) for i in np.linspace(0, num_views - 1, count)})


def write_strip(rendered: RenderedPath, count: int, path: Path) -> Path:
    """Some views side by side, each labelled with the frame it shows, as one PNG."""
    tiles = []
    for index in strip_indices(len(rendered.images), count):
        image = cv2.imread(str(rendered.images[index]))
        label = f"view {index}, frame {rendered.frame_numbers[index]}"
        scale = max(image.shape[0] / 512, 0.35)
        cv2.putText(image, label, (6, int(22 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (40, 40, 40),
                    max(1, int(round(2 * scale))), cv2.LINE_AA)
        tiles.append(image)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.concatenate(tiles, axis=1), [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise OSError(f"{path}: could not write the strip")
    return path
