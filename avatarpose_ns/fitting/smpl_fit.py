"""Fit SMPL to per-frame 3D joints (one person, many frames) with priors and temporal smoothing.

This is how a keypoint-based initialisation becomes SMPL parameters: the
generator uses it on its simulated keypoints, the dataparsers on a user's
EasyMocap `keypoints3d`. Only joints are evaluated (no vertices), so a whole
sequence fits in about a second on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from avatarpose_ns.body.body_model import BodyModel
from avatarpose_ns.body.skeleton import JOINT_INDEX, SMPL_PARENTS
from avatarpose_ns.body.priors import angle_prior, l2_pose_prior, temporal_smoothness
from avatarpose_ns.io.easymocap import SmplSequence

TORSO_JOINTS = tuple(JOINT_INDEX[n] for n in (
    "pelvis", "left_hip", "right_hip", "spine1", "spine2", "spine3", "neck",
    "left_collar", "right_collar", "left_shoulder", "right_shoulder",
))


@dataclass
class FitConfig:
    """Weights are relative to the data term, a squared error in units of `joint_sigma_m`."""

    torso_iterations: int = 50
    full_iterations: int = 500
    joint_sigma_m: float = 0.02
    robust_scale: float = 5.0  # Geman-McClure scale in sigmas: outlier joints stop pulling beyond this
    pose_l2_weight: float = 0.02
    angle_prior_weight: float = 0.05
    shape_weight: float = 0.05
    joint_smoothness_weight: float = 0.05  # on joint acceleration: constant velocity is free
    pose_smoothness_weight: float = 0.05


def _kabsch(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Rotation R minimising sum |R s - t|^2 for centred point sets. (N, 3), (N, 3) -> (3, 3)"""
    h = source.T @ target
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    return vt.T @ np.diag([1.0, 1.0, d]) @ u.T


def _initial_rigid(rest_joints: np.ndarray, targets: np.ndarray, conf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame global orientation (axis-angle) and translation aligning the rest torso to the targets."""
    import cv2

    orients, transls = [], []
    torso = np.array(TORSO_JOINTS)
    last_rotation = np.eye(3)
    for frame_targets, frame_conf in zip(targets, conf):
        valid = torso[frame_conf[torso] > 0]
        if len(valid) >= 3:
            src = rest_joints[valid] - rest_joints[valid].mean(0)
            dst = frame_targets[valid] - frame_targets[valid].mean(0)
            last_rotation = _kabsch(src, dst)
            offset = frame_targets[valid].mean(0) - (last_rotation @ rest_joints[valid].T).T.mean(0)
        else:
            seen = frame_conf > 0
            centre = frame_targets[seen].mean(0) if seen.any() else np.zeros(3)
            offset = centre - last_rotation @ rest_joints.mean(0)
        # smplx rotates about the root joint: transl = offset + R j0 - j0
        root = rest_joints[0]
        transls.append(offset + last_rotation @ root - root)
        orients.append(cv2.Rodrigues(last_rotation)[0].reshape(3))
    return np.array(orients), np.array(transls)


def _swing(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Smallest rotation turning direction `source` into direction `target`. (3,), (3,) -> (3, 3)"""
    a = source / (np.linalg.norm(source) + 1e-12)
    b = target / (np.linalg.norm(target) + 1e-12)
    axis = np.cross(a, b)
    sin, cos = np.linalg.norm(axis), float(np.dot(a, b))
    if sin < 1e-8:
        if cos > 0:
            return np.eye(3)
        ortho = np.cross(a, [1.0, 0, 0] if abs(a[0]) < 0.9 else [0, 1.0, 0])
        axis, sin, cos = ortho / np.linalg.norm(ortho), 0.0, -1.0
        return 2 * np.outer(axis, axis) - np.eye(3)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]]) / sin
    return np.eye(3) + sin * k + (1 - cos) * k @ k


def _initial_body_pose(rest_joints: np.ndarray, targets: np.ndarray, conf: np.ndarray,
                       global_orient: np.ndarray) -> np.ndarray:
    """Local joint rotations that point every rest bone along its observed direction. -> (F, 69)

    Walking down the tree, each joint turns its bones (to its children) onto the
    target bones; a good start keeps the fit out of the local minima of far-off arm poses.
    """
    import cv2

    parents = SMPL_PARENTS
    children = {j: [c for c in range(24) if parents[c] == j] for j in range(24)}
    poses = np.zeros((len(targets), 69))
    for f, (frame_targets, frame_conf) in enumerate(zip(targets, conf)):
        world = [np.eye(3)] * 24
        world[0] = cv2.Rodrigues(global_orient[f])[0]
        for j in range(1, 24):
            parent_rot = world[parents[j]]
            kids = [c for c in children[j] if frame_conf[c] > 0 and frame_conf[j] > 0]
            if not kids:
                world[j] = parent_rot
            elif len(kids) == 1:
                c = kids[0]
                world[j] = _swing(parent_rot @ (rest_joints[c] - rest_joints[j]), frame_targets[c] - frame_targets[j]) @ parent_rot
            else:
                src = np.stack([parent_rot @ (rest_joints[c] - rest_joints[j]) for c in kids])
                dst = np.stack([frame_targets[c] - frame_targets[j] for c in kids])
                world[j] = _kabsch(src, dst) @ parent_rot
            poses[f, 3 * (j - 1): 3 * j] = cv2.Rodrigues(parent_rot.T @ world[j])[0].reshape(3)
    return poses


def geman_mcclure(squared: torch.Tensor, scale: float) -> torch.Tensor:
    """Geman-McClure robust penalty of squared residuals: ~squared near 0, bounded by scale**2, so one
    wrong observation cannot pull a fit far (used by every fit of this package)."""
    return squared * scale**2 / (squared + scale**2)


def fit_smpl_to_joints(
    body_model: BodyModel,
    joints: np.ndarray,
    confidence: np.ndarray | None = None,
    frames: np.ndarray | None = None,
    config: FitConfig | None = None,
) -> SmplSequence:
    """Fit one person's SMPL parameters to 3D joints over time.

    joints: (F, 24, 3) metres, SMPL joint order; confidence: (F, 24), 0 = missing.
    Betas are shared by all frames; pose, orientation and translation are per frame.
    """
    config = config or FitConfig()
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (24, 3):
        raise ValueError(f"fit_smpl_to_joints expects joints of shape (F, 24, 3), got {joints.shape}")
    confidence = np.ones(joints.shape[:2]) if confidence is None else np.asarray(confidence, dtype=np.float64)
    confidence = np.where(np.isfinite(joints).all(-1), confidence, 0.0)
    joints = np.nan_to_num(joints)
    num_frames = joints.shape[0]
    frames = np.arange(num_frames) if frames is None else np.asarray(frames)

    dtype = body_model.dtype
    rest = body_model.rest_joints(torch.zeros(1, body_model.num_betas, dtype=dtype))[0].detach().double().numpy()
    orient0, transl0 = _initial_rigid(rest, joints, confidence)

    target = torch.tensor(joints, dtype=dtype)
    weight = torch.tensor(confidence, dtype=dtype)
    betas = torch.zeros(1, body_model.num_betas, dtype=dtype, requires_grad=True)
    pose0 = _initial_body_pose(rest, joints, confidence, orient0)
    body_pose = torch.tensor(pose0, dtype=dtype, requires_grad=True)
    global_orient = torch.tensor(orient0, dtype=dtype, requires_grad=True)
    transl = torch.tensor(transl0, dtype=dtype, requires_grad=True)

    torso_mask = torch.zeros(24, dtype=dtype)
    torso_mask[list(TORSO_JOINTS)] = 1.0

    def loss_fn(joint_mask: torch.Tensor, with_pose: bool) -> torch.Tensor:
        predicted = body_model.joints_only(betas, body_pose if with_pose else body_pose.detach(), global_orient, transl)
        squared = (predicted - target).pow(2).sum(-1) / config.joint_sigma_m**2
        data = (geman_mcclure(squared, config.robust_scale) * weight * joint_mask).sum() / num_frames
        loss = data + config.shape_weight * betas.pow(2).sum()
        loss = loss + config.joint_smoothness_weight * temporal_smoothness(predicted / config.joint_sigma_m, order=2)
        if with_pose:
            loss = loss + config.pose_l2_weight * l2_pose_prior(body_pose).sum() / num_frames
            loss = loss + config.angle_prior_weight * angle_prior(body_pose).sum() / num_frames
            loss = loss + config.pose_smoothness_weight * temporal_smoothness(body_pose)
        return loss

    # torso first (orientation, translation, shape), then everything; L-BFGS converges in far
    # fewer evaluations than Adam on this small smooth problem
    stages = ((config.torso_iterations, torso_mask, False, [betas, global_orient, transl]),
              (config.full_iterations, torch.ones(24, dtype=dtype), True, [betas, body_pose, global_orient, transl]))
    for iterations, joint_mask, with_pose, params in stages:
        optimizer = torch.optim.LBFGS(params, lr=1.0, max_iter=iterations, history_size=50,
                                      tolerance_grad=1e-9, tolerance_change=1e-12, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(joint_mask, with_pose)
            loss.backward()
            return loss

        optimizer.step(closure)

    return SmplSequence(
        betas=betas.detach()[0].double().numpy(),
        body_pose=body_pose.detach().double().numpy(),
        global_orient=global_orient.detach().double().numpy(),
        transl=transl.detach().double().numpy(),
        frames=frames,
    )
