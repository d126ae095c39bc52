"""Simulated keypoint detections that err the way real multi-view estimators do.

A real estimator (e.g. 4DAssociation: 2D detections, association, triangulation)
is accurate on a clear torso and wrong where people touch and hide each other:
wrists and elbows of arms in contact, joints seen by few cameras, depth along
the viewing rays, now and then a left/right swap of a limb for a few frames,
with errors that persist over consecutive frames. This module reproduces those
patterns from the exact renders' visibility, so the initialisation is as hard
as a real one and no easier than isotropic noise would make it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avatarpose_ns.body.skeleton import JOINT_INDEX, SMPL_JOINT_NAMES
from avatarpose_ns.io.cameras import CameraCalib, project_points

# per-joint error scale (metres) of an unoccluded, untouched joint
_BASE_SIGMA = {
    "pelvis": 0.011, "spine1": 0.013, "spine2": 0.013, "spine3": 0.013, "neck": 0.013, "head": 0.016,
    "left_collar": 0.014, "right_collar": 0.014, "left_shoulder": 0.016, "right_shoulder": 0.016,
    "left_hip": 0.016, "right_hip": 0.016, "left_knee": 0.018, "right_knee": 0.018,
    "left_ankle": 0.020, "right_ankle": 0.020, "left_foot": 0.023, "right_foot": 0.023,
    "left_elbow": 0.023, "right_elbow": 0.023, "left_wrist": 0.029, "right_wrist": 0.029,
    "left_hand": 0.032, "right_hand": 0.032,
}
_LIMB_SWAPS = (  # (left joints, right joints) swapped together
    (("left_shoulder", "left_elbow", "left_wrist", "left_hand"),
     ("right_shoulder", "right_elbow", "right_wrist", "right_hand")),
    (("left_knee", "left_ankle", "left_foot"), ("right_knee", "right_ankle", "right_foot")),
)


@dataclass
class KeypointNoiseConfig:
    """Strength of each error pattern; `scale` multiplies all of them."""

    scale: float = 1.0
    occlusion_gain: float = 1.0  # sigma x (1 + gain x share of views where another person hides the joint)
    contact_gain: float = 2.0  # sigma x (1 + gain x closeness to another person's joints)
    contact_radius_m: float = 0.25
    depth_ratio: float = 1.0  # extra error along the mean viewing direction, relative to sigma
    temporal_correlation: float = 0.75  # AR(1) coefficient of the error from frame to frame
    confusion: float = 0.2  # pull towards the nearest joint of another person, times closeness
    swap_probability: float = 0.02  # per person, limb and frame: start of a left/right swap
    swap_frames: tuple[int, int] = (1, 3)
    miss_occlusion: float = 0.75  # joints hidden in more than this share of views may be missed
    miss_probability: float = 0.5
    pixel_sigma: float = 2.0  # 2D detections
    pixel_sigma_occluded: float = 8.0
    miss_probability_2d: float = 0.4


def occlusion_by_others(
    joints: np.ndarray, cameras: list[CameraCalib], person_maps: list[np.ndarray], depth_maps: list[np.ndarray]
) -> np.ndarray:
    """Per view, whether each joint is hidden by another person or outside the image.

    joints: (K, F, 24, 3); person_maps[c]: (F, H, W) int, depth_maps[c]: (F, H, W).
    Returns (C, K, F, 24) bool.
    """
    num_people, num_frames = joints.shape[:2]
    hidden = np.zeros((len(cameras), num_people, num_frames, 24), dtype=bool)
    for c, cam in enumerate(cameras):
        flat = joints.reshape(-1, 3)
        uv = np.round(project_points(flat, cam)).astype(np.int64).reshape(num_people, num_frames, 24, 2)
        z = cam.world_to_camera(flat)[:, 2].reshape(num_people, num_frames, 24)
        inside = (uv[..., 0] >= 0) & (uv[..., 0] < cam.width) & (uv[..., 1] >= 0) & (uv[..., 1] < cam.height) & (z > 0)
        u = np.clip(uv[..., 0], 0, cam.width - 1)
        v = np.clip(uv[..., 1], 0, cam.height - 1)
        frame_index = np.broadcast_to(np.arange(num_frames)[None, :, None], u.shape)
        owner = person_maps[c][frame_index, v, u]
        surface = depth_maps[c][frame_index, v, u]
        person_index = np.broadcast_to(np.arange(num_people)[:, None, None], u.shape)
        by_other = (owner >= 0) & (owner != person_index) & (surface < z)
        hidden[c] = ~inside | by_other
    return hidden


def _closeness(joints: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """How close each joint is to another person (1 touching .. 0 beyond radius), and that nearest joint.

    joints: (K, F, 24, 3) -> closeness (K, F, 24), nearest (K, F, 24, 3)
    """
    num_people = joints.shape[0]
    closeness = np.zeros(joints.shape[:3])
    nearest = joints.copy()
    for p in range(num_people):
        others = np.concatenate([joints[q] for q in range(num_people) if q != p], axis=1)  # (F, 24*(K-1), 3)
        distance = np.linalg.norm(joints[p][:, :, None] - others[:, None], axis=-1)  # (F, 24, N)
        index = distance.argmin(-1)
        d = np.take_along_axis(distance, index[..., None], -1)[..., 0]
        closeness[p] = np.clip(1.0 - d / radius, 0.0, 1.0)
        nearest[p] = np.take_along_axis(others, np.broadcast_to(index[..., None], index.shape + (3,)), 1)
    return closeness, nearest


def simulate_keypoints3d(
    joints: np.ndarray, cameras: list[CameraCalib], hidden: np.ndarray, rng: np.random.Generator,
    config: KeypointNoiseConfig | None = None,
) -> np.ndarray:
    """Noisy 3D keypoints with confidences. joints (K, F, 24, 3), hidden (C, K, F, 24) -> (K, F, 24, 4)"""
    config = config or KeypointNoiseConfig()
    num_people, num_frames = joints.shape[:2]
    sigma0 = np.array([_BASE_SIGMA[name] for name in SMPL_JOINT_NAMES]) * config.scale
    occlusion = hidden.mean(axis=0)  # (K, F, 24)
    closeness, nearest = _closeness(joints, config.contact_radius_m)
    sigma = sigma0 * (1 + config.occlusion_gain * occlusion) * (1 + config.contact_gain * closeness)

    # mean viewing direction over the views that see the joint: triangulation is weakest along it
    centres = np.stack([cam.center for cam in cameras])  # (C, 3)
    rays = joints[None] - centres[:, None, None, None]  # (C, K, F, 24, 3)
    rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
    seen = (~hidden)[..., None].astype(float)
    view_dir = (rays * seen).sum(0) + 1e-6 * rays.sum(0)
    view_dir /= np.linalg.norm(view_dir, axis=-1, keepdims=True)

    # temporally correlated error: AR(1) with stationary variance 1
    rho = config.temporal_correlation
    white = rng.normal(size=(num_people, num_frames, 24, 4))
    unit = np.empty_like(white)
    unit[:, 0] = white[:, 0]
    for f in range(1, num_frames):
        unit[:, f] = rho * unit[:, f - 1] + np.sqrt(1 - rho**2) * white[:, f]
    error = sigma[..., None] * unit[..., :3]
    error += (config.depth_ratio * sigma * unit[..., 3])[..., None] * view_dir
    error += (config.confusion * closeness)[..., None] * (nearest - joints)
    noisy = joints + error

    for p in range(num_people):
        for left, right in _LIMB_SWAPS:
            left_idx = [JOINT_INDEX[n] for n in left]
            right_idx = [JOINT_INDEX[n] for n in right]
            f = 0
            while f < num_frames:
                if rng.random() < config.swap_probability:
                    length = int(rng.integers(config.swap_frames[0], config.swap_frames[1] + 1))
                    span = slice(f, min(f + length, num_frames))
                    noisy[p, span, left_idx], noisy[p, span, right_idx] = (
                        noisy[p, span, right_idx].copy(), noisy[p, span, left_idx].copy())
                    f += length
                f += 1

    confidence = np.clip(1.0 - 0.6 * occlusion - 0.3 * closeness, 0.2, 1.0)
    missed = (occlusion > config.miss_occlusion) & (rng.random(occlusion.shape) < config.miss_probability)
    confidence[missed] = 0.0
    return np.concatenate([noisy, confidence[..., None]], axis=-1)


def simulate_keypoints2d(
    joints: np.ndarray, cam: CameraCalib, hidden: np.ndarray, rng: np.random.Generator,
    config: KeypointNoiseConfig | None = None,
) -> np.ndarray:
    """Noisy 2D detections in one view. joints (K, F, 24, 3), hidden (K, F, 24) -> (K, F, 24, 3) as (u, v, conf)

    joints: where the detector places the joints before pixel noise. The generator passes the
    simulated 3D keypoints (`simulate_keypoints3d`), not the ground truth: errors that come from
    contact and occlusion are shared by all views, only the pixel noise is independent per view.
    """
    config = config or KeypointNoiseConfig()
    uv = project_points(joints.reshape(-1, 3), cam).reshape(*joints.shape[:3], 2)
    sigma = np.where(hidden, config.pixel_sigma_occluded, config.pixel_sigma) * config.scale
    uv = uv + sigma[..., None] * rng.normal(size=uv.shape)
    confidence = np.where(hidden, 0.35, 0.9) + rng.uniform(-0.05, 0.05, size=hidden.shape)
    missed = hidden & (rng.random(hidden.shape) < config.miss_probability_2d)
    outside = (uv[..., 0] < 0) | (uv[..., 0] >= cam.width) | (uv[..., 1] < 0) | (uv[..., 1] >= cam.height)
    confidence[missed | outside] = 0.0
    return np.concatenate([uv, confidence[..., None]], axis=-1)
