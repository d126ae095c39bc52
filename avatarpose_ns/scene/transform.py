"""The internal scene frame of the dataparsers and the way back to the input world.

nerfstudio wants the subject near the origin, +z up and inside a small scene box;
users want every export in their own world frame and units. The dataparsers
therefore apply one similarity transform to everything they hand to nerfstudio:

    x_scene = scale * (R @ x_world + t)

``R`` turns the input's up axis into +z (identity for z-up worlds such as
EasyMocap's), ``t`` moves the people's centre to the origin and ``scale`` makes
them fit the scene box. ``[R | t]`` and ``scale`` are exactly nerfstudio's
``dataparser_transform`` and ``dataparser_scale`` (see
``transform_poses_to_original_space``).

SMPL parameters are never scaled (the body model is in metres): the model poses
bodies in the input world and maps the posed points with ``to_scene``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from avatarpose_ns.io.easymocap import SmplSequence

ArrayLike = np.ndarray | torch.Tensor

UP_AXES = ("+z", "-z", "+y", "-y", "+x", "-x")


def up_rotation(up_axis: str) -> np.ndarray:
    """The rotation (3, 3) that turns the input world's ``up_axis`` into +z."""
    axes = {
        "+z": np.eye(3),
        "-z": np.diag([1.0, -1.0, -1.0]),
        "+y": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]]),
        "-y": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]),
        "+x": np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]),
        "-x": np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]]),
    }
    if up_axis not in axes:
        raise ValueError(f"world up axis must be one of {UP_AXES}, got {up_axis!r}")
    return axes[up_axis]


@dataclass(frozen=True)
class SceneTransform:
    """``x_scene = scale * (rotation @ x_world + translation)``."""

    rotation: np.ndarray  # (3, 3)
    translation: np.ndarray  # (3,)
    scale: float

    @classmethod
    def identity(cls) -> SceneTransform:
        return cls(np.eye(3), np.zeros(3), 1.0)

    @property
    def matrix(self) -> np.ndarray:
        """(3, 4) ``[R | t]``: nerfstudio's ``dataparser_transform``."""
        return np.concatenate([self.rotation, self.translation[:, None]], axis=1)

    def to_scene(self, points: ArrayLike) -> ArrayLike:
        """World points (..., 3) to scene points (numpy or torch, dtype kept)."""
        rotation, translation = self._as(points)
        return self.scale * (points @ rotation.T + translation)

    def to_world(self, points: ArrayLike) -> ArrayLike:
        """Scene points (..., 3) back to the input world frame and units."""
        rotation, translation = self._as(points)
        return (points / self.scale - translation) @ rotation

    def camera_to_scene(self, c2w: np.ndarray) -> np.ndarray:
        """Camera-to-world poses (N, 3, 4), any axis convention, to scene camera-to-world poses."""
        out = np.empty_like(c2w)
        out[:, :, :3] = self.rotation @ c2w[:, :, :3]
        out[:, :, 3] = self.to_scene(c2w[:, :, 3])
        return out

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form, as stored in the dataparser metadata."""
        return {"rotation": self.rotation.tolist(), "translation": self.translation.tolist(), "scale": self.scale}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SceneTransform:
        return cls(np.asarray(data["rotation"], dtype=np.float64), np.asarray(data["translation"], dtype=np.float64),
                   float(data["scale"]))

    def _as(self, points: ArrayLike) -> tuple[ArrayLike, ArrayLike]:
        if isinstance(points, torch.Tensor):
            return (torch.as_tensor(self.rotation, dtype=points.dtype, device=points.device),
                    torch.as_tensor(self.translation, dtype=points.dtype, device=points.device))
        return self.rotation, self.translation


def fit_scene_transform(points: np.ndarray, rotation: np.ndarray, box_half: float = 1.0,
                        margin_m: float = 0.3) -> SceneTransform:
    """Centre ``points`` (N, 3 world; the people's joints over all frames) and scale them into the cube
    ``[-box_half, box_half]^3``. ``margin_m`` pads the joints' box for the body surface (head top, hands,
    feet lie beyond the joints). The scale is isotropic so that the scene keeps its shape."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    points = points[np.isfinite(points).all(axis=1)]
    if len(points) == 0:
        raise ValueError("cannot place the scene: no finite joint positions")
    rotated = points @ rotation.T
    lo, hi = rotated.min(axis=0), rotated.max(axis=0)
    centre = (lo + hi) / 2.0
    half = float(((hi - lo) / 2.0 + margin_m).max())
    return SceneTransform(np.asarray(rotation, dtype=np.float64), -centre, box_half / half)


def transform_smpl(seq: SmplSequence, rotation: np.ndarray, translation: np.ndarray,
                   root_joint: np.ndarray) -> SmplSequence:
    """SMPL parameters of the same bodies after the rigid map ``x -> R x + t`` of the world.

    smplx rotates about the rest-pose root joint ``j0`` (for these betas), so with ``G`` the global
    orientation: ``G' = R G`` and ``transl' = R (transl + j0) + t - j0``. ``rotation`` (3, 3) or
    per frame (F, 3, 3), ``translation`` (3,) or (F, 3). Also converts EasyMocap's Rh/Th, which
    apply such a map after posing the model with zero translation.
    """
    rotation = np.broadcast_to(np.asarray(rotation, dtype=np.float64), (seq.num_frames, 3, 3))
    translation = np.broadcast_to(np.asarray(translation, dtype=np.float64), (seq.num_frames, 3))
    j0 = np.asarray(root_joint, dtype=np.float64).reshape(3)
    orient = Rotation.from_matrix(rotation) * Rotation.from_rotvec(seq.global_orient)
    transl = np.einsum("fij,fj->fi", rotation, seq.transl + j0) + translation - j0
    return SmplSequence(seq.betas.copy(), seq.body_pose.copy(), orient.as_rotvec(), transl, seq.frames.copy())
