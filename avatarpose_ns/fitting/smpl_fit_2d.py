"""Fit SMPL to multi-view 2D keypoints: the "SMPL fitted" baseline of AvatarPose (ECCV 2024, Table 3).

One person at a time, all frames at once: starting from an initialisation
(usually `smpl_fit.fit_smpl_to_joints` on triangulated 3D keypoints), the body's
24 joints are projected through every calibrated, distorted camera and pulled
onto the detected 2D keypoints with a robust (Geman-McClure), confidence-weighted
reprojection error, plus the pose priors of `avatarpose_ns/body/priors.py`, a shape prior and
temporal smoothness. Betas are shared by all frames.

The projection is OpenCV's pinhole + Brown-Conrady model (k1 k2 p1 p2 k3) written
in torch, so that gradients flow to the SMPL parameters; it equals
`cv2.projectPoints` (and so `io.cameras.project_points`).
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from avatarpose_ns.body.body_model import BodyModel
from avatarpose_ns.body.priors import angle_prior, l2_pose_prior, temporal_smoothness
from avatarpose_ns.fitting.smpl_fit import geman_mcclure
from avatarpose_ns.io.cameras import CameraCalib
from avatarpose_ns.io.easymocap import SmplSequence

NUM_JOINTS = 24
MIN_DEPTH_M = 1e-3  # points closer than this to (or behind) a camera's image plane are not used


@dataclass
class KeypointFit2DConfig:
    """Weights are relative to the data term: per frame, the mean over views of the summed robust
    squared reprojection errors in units of sigma = pixel_sigma_diagonal x the image diagonal (so the
    priors keep their meaning whatever the number of cameras and the resolution).

    Defaults were chosen on two generated sequences (demo hug, seed-1 handshake; see
    benchmarks/RESULTS.md): all weights but the joint smoothness barely matter there (< 1 mm MPJPE
    over 0.25x..4x), and that one pulls the two sequences in opposite directions (0: 13.6 / 12.3 mm,
    0.2: 23.3 / 9.7 mm at 8 frames over 2.4 s), so it sits in between. The simulated 2D detections
    have no gross outliers; the Geman-McClure scale (5 sigma, 18 px at 256 px) is kept for real ones.
    """

    iterations: int = 400  # L-BFGS iterations over all parameters
    global_iterations: int = 0  # optional first stage: orientation and translation only
    pixel_sigma_diagonal: float = 0.01  # residual scale as a fraction of each image's diagonal
    robust_scale: float = 5.0  # Geman-McClure scale in sigmas: detections beyond it stop pulling
    confidence_power: float = 1.0  # weight = confidence ** power
    pose_l2_weight: float = 0.02
    angle_prior_weight: float = 0.05
    shape_weight: float = 0.05  # |betas|^2
    joint_sigma_m: float = 0.02  # unit of the joint smoothness term
    joint_smoothness_weight: float = 0.02  # on joint acceleration (in joint_sigma_m): constant velocity is free
    pose_smoothness_weight: float = 0.05  # on body_pose velocity


# ----------------------------------------------------------------------------- projection


@dataclass
class TorchCameras:
    """A stack of C OpenCV cameras as tensors: R (C, 3, 3), T (C, 3), K (C, 3, 3), dist (C, 5)."""

    R: torch.Tensor
    T: torch.Tensor
    K: torch.Tensor
    dist: torch.Tensor

    @classmethod
    def from_calibs(cls, cameras: Sequence[CameraCalib], dtype: torch.dtype = torch.float64,
                    device: torch.device | str | None = None) -> TorchCameras:
        if len(cameras) == 0:
            raise ValueError("need at least one camera")

        def stack(name: str) -> torch.Tensor:
            return torch.tensor(np.stack([getattr(c, name) for c in cameras]), dtype=dtype, device=device)

        return cls(R=stack("R"), T=stack("T"), K=stack("K"), dist=stack("dist"))

    def __len__(self) -> int:
        return self.R.shape[0]


def project_points_torch(points: torch.Tensor, cameras: TorchCameras) -> tuple[torch.Tensor, torch.Tensor]:
    """Project world points into every camera with OpenCV's distortion model (as cv2.projectPoints).

    points: (..., 3) world coordinates, projected into each of the C cameras.
    Returns pixels (C, ..., 2) and camera-frame depths (C, ..., 1). Like cv2.projectPoints, only
    fx, fy, cx, cy of K are used (no skew). Points with depth below MIN_DEPTH_M are divided by
    MIN_DEPTH_M instead: finite, but meaningless; callers mask them with the returned depth.
    """
    num_cameras = len(cameras)
    flat = points.reshape(-1, 3)
    camera = torch.einsum("cij,nj->cni", cameras.R, flat) + cameras.T[:, None, :]
    depth = camera[..., 2:3]
    xy = camera[..., :2] / depth.clamp(min=MIN_DEPTH_M)
    x, y = xy[..., 0], xy[..., 1]
    k1, k2, p1, p2, k3 = (cameras.dist[:, i, None] for i in range(5))
    r2 = x * x + y * y
    radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
    xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
    yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
    fx, fy = cameras.K[:, 0, 0, None], cameras.K[:, 1, 1, None]
    cx, cy = cameras.K[:, 0, 2, None], cameras.K[:, 1, 2, None]
    uv = torch.stack([fx * xd + cx, fy * yd + cy], dim=-1)
    shape = (num_cameras, *points.shape[:-1])
    return uv.reshape(*shape, 2), depth.reshape(*shape, 1)


def image_diagonals(cameras: Sequence[CameraCalib]) -> np.ndarray:
    """Image diagonal in pixels per camera; from the principal point when the size is unknown. (C,)"""
    sizes = []
    for cam in cameras:
        if cam.width > 0 and cam.height > 0:
            sizes.append((cam.width, cam.height))
        else:
            sizes.append((2.0 * (cam.K[0, 2] + 0.5), 2.0 * (cam.K[1, 2] + 0.5)))
    return np.array([np.hypot(w, h) for w, h in sizes], dtype=np.float64)


# ----------------------------------------------------------------------------- fitting


def _check_inputs(cameras: Sequence[CameraCalib], keypoints2d: np.ndarray, init: SmplSequence,
                  num_betas: int) -> None:
    if keypoints2d.ndim != 4 or keypoints2d.shape[2:] != (NUM_JOINTS, 3):
        raise ValueError(f"keypoints2d must have shape (cameras, frames, {NUM_JOINTS}, 3) as (u, v, confidence), "
                         f"got {keypoints2d.shape}")
    num_cameras, num_frames = keypoints2d.shape[:2]
    if len(cameras) != num_cameras:
        raise ValueError(f"{len(cameras)} cameras given but keypoints2d holds {num_cameras} views")
    if num_frames != init.num_frames:
        raise ValueError(f"keypoints2d holds {num_frames} frames but the initialisation has {init.num_frames}")
    if num_frames == 0:
        raise ValueError("keypoints2d holds no frames")
    if not np.all(np.isfinite(keypoints2d)):
        bad = np.argwhere(~np.isfinite(keypoints2d).all(-1))[0]
        raise ValueError(f"keypoints2d has NaN or infinite values (first at view {bad[0]}, frame {bad[1]}, "
                         f"joint {bad[2]}); mark missing detections with confidence 0 instead")
    if np.any(keypoints2d[..., 2] < 0):
        raise ValueError("keypoints2d confidences must be >= 0")
    if init.betas.shape[0] != num_betas or init.body_pose.shape[1] != 69:
        raise ValueError(f"initialisation has {init.betas.shape[0]} betas and {init.body_pose.shape[1]} pose values, "
                         f"the body model expects {num_betas} and 69")
    for name in ("betas", "body_pose", "global_orient", "transl"):
        if not np.all(np.isfinite(getattr(init, name))):
            raise ValueError(f"initialisation '{name}' has NaN or infinite values")


def fit_smpl_to_keypoints2d(
    body_model: BodyModel,
    cameras: Sequence[CameraCalib] | Mapping[str, CameraCalib],
    keypoints2d: np.ndarray,
    init: SmplSequence,
    config: KeypointFit2DConfig | None = None,
) -> SmplSequence:
    """Refine one person's SMPL sequence so that its joints reproject onto multi-view 2D keypoints.

    cameras: C calibrations in the order of keypoints2d's first axis (a dict is taken in its order);
    keypoints2d: (C, F, 24, 3) distorted pixels (u, v) and confidence (0 = not detected), SMPL joint
    order; init: the starting SmplSequence over the same F frames (its frame ids are kept).
    Raises ValueError on mismatched shapes, NaN/inf keypoints or negative confidences.
    """
    config = config or KeypointFit2DConfig()
    cameras = list(cameras.values()) if isinstance(cameras, Mapping) else list(cameras)
    keypoints2d = np.asarray(keypoints2d, dtype=np.float64)
    _check_inputs(cameras, keypoints2d, init, body_model.num_betas)
    num_cameras, num_frames = keypoints2d.shape[:2]

    dtype = body_model.dtype
    device = body_model.joint_template.device
    rig = TorchCameras.from_calibs(cameras, dtype=dtype, device=device)
    as_tensor = lambda a: torch.tensor(np.asarray(a), dtype=dtype, device=device)  # noqa: E731
    target = as_tensor(keypoints2d[..., :2])
    sigma = as_tensor(config.pixel_sigma_diagonal * image_diagonals(cameras))[:, None, None]  # (C, 1, 1)
    weight = as_tensor(keypoints2d[..., 2] ** config.confidence_power)  # (C, F, 24)

    # L-BFGS works on z = (theta - theta_init) * scale, scaled to unit curvature per coordinate
    initial = {name: as_tensor(value) for name, value in (
        ("betas", init.betas[None]), ("body_pose", init.body_pose), ("global_orient", init.global_orient),
        ("transl", init.transl))}
    scales = {name: as_tensor(value) for name, value in
              _parameter_scales(body_model, cameras, init, sigma[:, 0, 0].cpu().numpy(), config).items()}
    steps = {name: torch.zeros_like(value, requires_grad=True) for name, value in initial.items()}

    def parameters() -> tuple[torch.Tensor, ...]:
        return tuple(initial[name] + steps[name] / scales[name]
                     for name in ("betas", "body_pose", "global_orient", "transl"))

    def loss_fn() -> torch.Tensor:
        betas, body_pose, global_orient, transl = parameters()
        joints = body_model.joints_only(betas, body_pose, global_orient, transl)  # (F, 24, 3)
        uv, depth = project_points_torch(joints, rig)  # (C, F, 24, 2), (C, F, 24, 1)
        squared = (uv - target).pow(2).sum(-1) / sigma**2
        in_front = (depth[..., 0] > MIN_DEPTH_M).to(dtype)
        data = (geman_mcclure(squared, config.robust_scale) * weight * in_front).sum() / (num_frames * num_cameras)
        loss = data + config.shape_weight * betas.pow(2).sum()
        loss = loss + config.pose_l2_weight * l2_pose_prior(body_pose).sum() / num_frames
        loss = loss + config.angle_prior_weight * angle_prior(body_pose).sum() / num_frames
        loss = loss + config.joint_smoothness_weight * temporal_smoothness(joints / config.joint_sigma_m, order=2)
        loss = loss + config.pose_smoothness_weight * temporal_smoothness(body_pose)
        return loss

    # the tensors are tiny: extra intra-op threads only add hand-over latency (on a loaded 2-core
    # machine torch.sin on 200 numbers took 15 ms with 2 threads, 4 us with 1), so fit on one
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _optimise(loss_fn, config, steps)
    finally:
        torch.set_num_threads(threads)

    with torch.no_grad():
        betas, body_pose, global_orient, transl = parameters()
    return SmplSequence(
        betas=betas[0].cpu().double().numpy(),
        body_pose=body_pose.cpu().double().numpy(),
        global_orient=global_orient.cpu().double().numpy(),
        transl=transl.cpu().double().numpy(),
        frames=init.frames.copy(),
    )


def _parameter_scales(body_model: BodyModel, cameras: Sequence[CameraCalib], init: SmplSequence,
                      sigma_px: np.ndarray, config: KeypointFit2DConfig) -> dict[str, np.ndarray]:
    """Square root of each parameter's approximate curvature in the loss (a diagonal preconditioner).

    Turning joint j by an angle moves its descendants by about angle x their distance to j, so the
    data term's curvature in a rotation is (pixels per metre / sigma)^2 x the sum of those squared
    lever arms; a translation moves all 24 joints, a beta moves each joint along its shape direction.
    Without this, the hip's rotation is ~1e3 times stiffer than the wrist's and L-BFGS crawls.
    """
    num_frames = init.num_frames
    with torch.no_grad():
        betas = torch.tensor(init.betas[None], dtype=body_model.dtype, device=body_model.joint_template.device)
        rest = body_model.rest_joints(betas)[0].cpu().double().numpy()  # (24, 3)
        shapedirs = body_model.joint_shapedirs.cpu().double().numpy()  # (24, 3, B)
        root = body_model.joints_only(betas, torch.tensor(init.body_pose[:1], dtype=body_model.dtype),
                                      torch.tensor(init.global_orient[:1], dtype=body_model.dtype),
                                      torch.tensor(init.transl[:1], dtype=body_model.dtype))[0, 0].cpu().double().numpy()
    # pixels per metre at the person, in units of sigma, squared and averaged over the views
    depth = np.array([max(cam.world_to_camera(root[None])[0, 2], 0.1) for cam in cameras])
    focal = np.array([0.5 * (cam.K[0, 0] + cam.K[1, 1]) for cam in cameras])
    gain = float(np.mean((focal / depth / sigma_px) ** 2))

    parents = [int(p) for p in body_model.parents]
    descendants: list[list[int]] = [[] for _ in range(len(parents))]
    for joint in range(1, len(parents)):
        parent = parents[joint]
        while parent >= 0:
            descendants[parent].append(joint)
            parent = parents[parent]
    lever2 = np.array([sum(float(np.sum((rest[d] - rest[j]) ** 2)) for d in descendants[j])
                       for j in range(len(parents))])

    # per-frame parameters: data and priors are means over frames, hence the 1 / F
    pose_curvature = 2.0 * gain * np.repeat(lever2[1:], 3) + 2.0 * config.pose_l2_weight
    pose_curvature += 4.0 * config.pose_smoothness_weight * (num_frames > 1)
    orient_curvature = np.full(3, 2.0 * gain * lever2[0])
    transl_curvature = np.full(3, 2.0 * gain * len(parents))
    betas_curvature = 2.0 * gain * np.sum(shapedirs**2, axis=(0, 1)) + 2.0 * config.shape_weight
    return {
        "betas": np.sqrt(betas_curvature)[None],
        "body_pose": np.sqrt(np.broadcast_to(pose_curvature / num_frames, init.body_pose.shape)),
        "global_orient": np.sqrt(np.broadcast_to(orient_curvature / num_frames, init.global_orient.shape)),
        "transl": np.sqrt(np.broadcast_to(transl_curvature / num_frames, init.transl.shape)),
    }


def _optimise(loss_fn, config: KeypointFit2DConfig, steps: dict[str, torch.Tensor]) -> None:
    """L-BFGS: optionally orientation and translation first, then all parameters."""
    stages = ((config.global_iterations, [steps["global_orient"], steps["transl"]]),
              (config.iterations, list(steps.values())))
    for iterations, params in stages:
        if iterations <= 0:
            continue
        optimizer = torch.optim.LBFGS(params, lr=1.0, max_iter=iterations, history_size=50,
                                      tolerance_grad=1e-9, tolerance_change=1e-12, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn()
            loss.backward()
            return loss

        optimizer.step(closure)
