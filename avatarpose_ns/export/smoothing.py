"""Optional temporal smoothing of an exported motion (off unless asked for).

Per-frame pose estimates jitter by a few millimetres from frame to frame; animators often
prefer a steadier curve at the price of softened fast motion. A Gaussian of ``sigma``
frames is run along time over:

* each joint's rotation as a unit quaternion (signs first made continuous, so q and -q do
  not cancel), then renormalised: for small per-frame changes this is the usual
  normalised-quaternion average, close to the rotation mean;
* the translation.

The shape (betas) is untouched. Sequence ends are padded by repeating the end frames
(``mode="nearest"``), so a still sequence stays still. The frames are taken as evenly
spaced; sigma 0 returns the sequence unchanged.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.spatial.transform import Rotation

from avatarpose_ns.export.rig import continuous_quaternions
from avatarpose_ns.io.easymocap import SmplSequence


def smooth_rotvecs(rotvecs: np.ndarray, sigma: float) -> np.ndarray:
    """(F, J * 3) axis-angle rotations -> the same shape, each joint Gaussian-smoothed over the F frames."""
    frames = len(rotvecs)
    quats = Rotation.from_rotvec(rotvecs.reshape(-1, 3)).as_quat().reshape(frames, -1, 4)
    quats = gaussian_filter1d(continuous_quaternions(quats), sigma, axis=0, mode="nearest")
    quats /= np.linalg.norm(quats, axis=-1, keepdims=True)
    return Rotation.from_quat(quats.reshape(-1, 4)).as_rotvec().reshape(rotvecs.shape)


def smooth_sequence(seq: SmplSequence, sigma: float) -> SmplSequence:
    """``seq`` with its rotations and translation Gaussian-smoothed over ``sigma`` frames (0: unchanged)."""
    if sigma < 0:
        raise ValueError(f"smoothing sigma must be >= 0 frames, got {sigma}")
    if sigma == 0 or seq.num_frames < 2:
        return seq
    return SmplSequence(
        betas=seq.betas.copy(), frames=seq.frames.copy(),
        body_pose=smooth_rotvecs(seq.body_pose, sigma), global_orient=smooth_rotvecs(seq.global_orient, sigma),
        transl=gaussian_filter1d(seq.transl, sigma, axis=0, mode="nearest"),
    )
