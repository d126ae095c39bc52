"""Camera paths in nerfstudio's scene frame (+z up, the people's centre at the origin), with a time per view.

The model draws the frame that the camera's time selects (`avatarpose_ns.scene.timeline`); a path
without times would show frame 0 only. Every path here therefore pairs each view with a time that
sweeps the sequence once, and `camera_path_json` writes it in the format of nerfstudio's viewer
(`render_time` per keyframe), which `ns-render camera-path` also reads.

Poses are camera-to-world (N, 3, 4), OpenGL axes (the camera looks along -z, +y is up), as in
nerfstudio's `Cameras`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial.transform import Rotation, Slerp


def look_at(position: np.ndarray, target: np.ndarray, up: np.ndarray = np.array([0.0, 0.0, 1.0])) -> np.ndarray:
    """Camera-to-world (3, 4) at `position` looking at `target`, its image's up as close to `up` as it can be."""
    position, target = np.asarray(position, dtype=np.float64), np.asarray(target, dtype=np.float64)
    back = position - target
    norm = np.linalg.norm(back)
    if norm == 0:
        raise ValueError("camera position and target coincide")
    back /= norm
    right = np.cross(up, back)
    if np.linalg.norm(right) < 1e-8:
        raise ValueError("camera looks along the up axis: no image up direction")
    right /= np.linalg.norm(right)
    cam_up = np.cross(back, right)
    return np.stack([right, cam_up, back, position], axis=1)


def orbit_poses(num_views: int, radius: float, height: float, start_azimuth: float = 0.0, turns: float = 1.0,
                target: np.ndarray = np.zeros(3)) -> np.ndarray:
    """`num_views` cameras on a circle of `radius` about the z axis at `height`, all looking at `target`,
    starting at `start_azimuth` (radians from +x towards +y) and going `turns` times round (a full turn
    does not repeat its first view)."""
    if num_views < 1 or radius <= 0:
        raise ValueError(f"an orbit needs at least one view and a positive radius (got {num_views}, {radius})")
    step = 2 * math.pi * turns / (num_views if abs(turns) >= 1 else max(num_views - 1, 1))
    azimuths = start_azimuth + step * np.arange(num_views)
    positions = np.stack([radius * np.cos(azimuths), radius * np.sin(azimuths), np.full(num_views, height)], 1)
    return np.stack([look_at(p, target) for p in positions])


def azimuth(points: np.ndarray) -> np.ndarray:
    """Angle about the z axis (radians, from +x towards +y) of points (..., 3)."""
    return np.arctan2(points[..., 1], points[..., 0])


def through_cameras_poses(c2w: np.ndarray, steps_per_camera: int) -> np.ndarray:
    """A closed loop through the cameras (N, 3, 4), taken in order of their azimuth about the z axis, with
    `steps_per_camera` views from each camera to the next: positions move on the cylinder about z
    (azimuth, distance and height interpolated, so the path goes round the people instead of cutting
    through them), orientations are slerped."""
    c2w = np.asarray(c2w, dtype=np.float64)
    if len(c2w) < 2 or steps_per_camera < 1:
        raise ValueError(f"a path through cameras needs at least 2 cameras and 1 step (got {len(c2w)}, "
                         f"{steps_per_camera})")
    order = np.argsort(azimuth(c2w[:, :, 3]))
    c2w = c2w[order]
    poses = []
    for index in range(len(c2w)):
        a, b = c2w[index], c2w[(index + 1) % len(c2w)]
        az_a, az_b = azimuth(a[:, 3]), azimuth(b[:, 3])
        if az_b <= az_a:
            az_b += 2 * math.pi
        r_a, r_b = np.linalg.norm(a[:2, 3]), np.linalg.norm(b[:2, 3])
        slerp = Slerp([0.0, 1.0], Rotation.from_matrix(np.stack([a[:, :3], b[:, :3]])))
        for s in np.arange(steps_per_camera) / steps_per_camera:
            angle, r, z = az_a + s * (az_b - az_a), r_a + s * (r_b - r_a), a[2, 3] + s * (b[2, 3] - a[2, 3])
            pose = np.empty((3, 4))
            pose[:, :3] = slerp([s]).as_matrix()[0]
            pose[:, 3] = [r * math.cos(angle), r * math.sin(angle), z]
            poses.append(pose)
    return np.stack(poses)


def sweep_times(num_views: int) -> np.ndarray:
    """One time per view, 0 at the first and 1 at the last: the path plays the sequence once."""
    if num_views <= 1:
        return np.zeros(max(num_views, 0))
    return np.linspace(0.0, 1.0, num_views)


def vertical_fov_degrees(fy: float, height: int) -> float:
    """The vertical field of view (degrees) of a pinhole camera; nerfstudio's camera paths store this."""
    return math.degrees(2 * math.atan(0.5 * height / fy))


def camera_path_json(c2w: np.ndarray, times: np.ndarray, fov_degrees: float, width: int, height: int,
                     fps: float) -> dict:
    """A camera path as nerfstudio's viewer writes it (what `ns-render camera-path` reads): one keyframe
    per view with its pose (4x4, row-major, scene frame), field of view and `render_time`."""
    if len(c2w) != len(times):
        raise ValueError(f"{len(c2w)} poses but {len(times)} times")
    views = []
    for pose, time in zip(np.asarray(c2w, dtype=np.float64), np.asarray(times, dtype=np.float64)):
        matrix = np.eye(4)
        matrix[:3] = pose
        views.append({"camera_to_world": matrix.flatten().tolist(), "fov": float(fov_degrees),
                      "aspect": width / height, "render_time": float(time)})
    return {"camera_type": "perspective", "render_height": int(height), "render_width": int(width),
            "fps": float(fps), "seconds": len(views) / float(fps), "is_cycle": False, "smoothness_value": 0.0,
            "crop": None, "camera_path": views}
