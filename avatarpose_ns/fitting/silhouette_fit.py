"""Refine body shape (and pose) so that the SMPL meshes fill the multi-view foreground masks.

An initialisation fitted to 3D keypoints gets joint angles roughly right but the shape
(betas: bone lengths, girth) poorly: a few noisy joints over a few frames say little
about it, and pose refinement cannot repair it (see `eval.shape_error`).  The masks of
every view and frame do say it.  This fit moves each person's betas (shared by all
frames) and per-frame pose, orientation and translation so that

- every (sampled) mesh vertex projects inside the union foreground mask of every view
  ("inside": the mask's distance transform at the projected vertex), and
- every point of the masks' outline lies close to some projected vertex of someone
  ("coverage": the distance from each outline point to the nearest projected vertex),

with Geman-McClure robust residuals in units of a fraction of the image diagonal, an L2
prior holding the pose near the initialisation and a weak shape prior.  Occlusion between
people needs no special care: a hidden vertex still projects inside the union mask.

Pure torch + OpenCV (distance transforms, outlines); the projection is the same OpenCV
camera model as the 2D keypoint fit (`smpl_fit_2d.project_points_torch`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import cv2
import numpy as np
import torch

from avatarpose_ns.body.body_model import BodyModel
from avatarpose_ns.fitting.smpl_fit import _geman_mcclure
from avatarpose_ns.fitting.smpl_fit_2d import MIN_DEPTH_M, TorchCameras, image_diagonals, project_points_torch
from avatarpose_ns.io.cameras import CameraCalib
from avatarpose_ns.io.easymocap import SmplSequence


@dataclass
class SilhouetteFitConfig:
    iterations: int = 300
    """Adam steps over all people, frames and views at once"""
    lr: float = 0.03
    """Adam learning rate (radians, metres and betas alike)"""
    vertex_stride: int = 8
    """use every k-th mesh vertex (the built-in body has 14116, SMPL 6890)"""
    outline_points: int = 300
    """outline pixels sampled per view and frame"""
    pixel_sigma_diagonal: float = 0.01
    """residual unit as a fraction of the image diagonal"""
    robust_scale: float = 10.0
    """Geman-McClure scale in residual units: pixels farther than this stop pulling"""
    coverage_weight: float = 1.0
    pose_weight: float = 0.001
    """L2 on the per-frame body pose change (radians squared, summed over joints)"""
    shape_weight: float = 1e-3
    """L2 on the betas (a standard normal shape prior, as in the keypoint fits)"""
    seed: int = 0


def mask_distance_to_foreground(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool -> (H, W) float32 Euclidean distance (pixels) to the nearest foreground pixel (0 inside)."""
    if not mask.any():
        return np.full(mask.shape, float(np.hypot(*mask.shape)), dtype=np.float32)
    return cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE).astype(np.float32)


def mask_outline(mask: np.ndarray) -> np.ndarray:
    """(K, 2) pixel coordinates (u, v) of the foreground pixels that touch the background (4-neighbours)."""
    eroded = cv2.erode(mask.astype(np.uint8), np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8),
                       borderType=cv2.BORDER_REPLICATE).astype(bool)
    v, u = np.nonzero(mask & ~eroded)
    return np.stack([u, v], axis=-1).astype(np.float64)


def _check(cameras: Sequence[CameraCalib], masks: np.ndarray, init: Mapping[int, SmplSequence]) -> None:
    if masks.ndim != 4 or masks.shape[0] != len(cameras):
        raise ValueError(f"masks must be (C={len(cameras)}, F, H, W), got {masks.shape}")
    if not init:
        raise ValueError("no people to fit")
    for person, seq in init.items():
        if seq.num_frames != masks.shape[1]:
            raise ValueError(f"person {person}: {seq.num_frames} frames of SMPL parameters, {masks.shape[1]} of masks")
        for name in ("betas", "body_pose", "global_orient", "transl"):
            if not np.all(np.isfinite(getattr(seq, name))):
                raise ValueError(f"person {person}: '{name}' of the initialisation is not finite")


def fit_shape_to_silhouettes(
    body_model: BodyModel,
    cameras: Sequence[CameraCalib],
    masks: np.ndarray,
    init: Mapping[int, SmplSequence],
    config: SilhouetteFitConfig | None = None,
    progress: bool = False,
) -> dict[int, SmplSequence]:
    """Fit everyone's betas and per-frame pose to union foreground masks.

    cameras: C calibrations; masks: (C, F, H, W) bool union masks of the same (distorted)
    images, in camera order; init: person id -> SmplSequence over the same F frames.
    Returns person id -> refined SmplSequence (frame ids kept).  progress: show a rich
    progress bar (a few hundred steps take one to three minutes on two CPU cores).
    """
    config = config or SilhouetteFitConfig()
    masks = np.asarray(masks, dtype=bool)
    _check(cameras, masks, init)
    num_cameras, num_frames, height, width = masks.shape
    dtype, device = body_model.dtype, body_model.joint_template.device
    people = sorted(init)
    rig = TorchCameras.from_calibs(cameras, dtype=dtype, device=device)
    sigma = torch.tensor(config.pixel_sigma_diagonal * image_diagonals(cameras), dtype=dtype, device=device)

    # per view and frame: the distance field (for "inside") and a sample of the outline (for "coverage")
    distance = torch.tensor(np.stack([[mask_distance_to_foreground(m) for m in view] for view in masks]),
                            dtype=dtype, device=device).reshape(num_cameras * num_frames, 1, height, width)
    rng = np.random.default_rng(config.seed)
    outline = np.zeros((num_cameras, num_frames, config.outline_points, 2))
    outline_valid = np.zeros((num_cameras, num_frames, config.outline_points), dtype=bool)
    for c in range(num_cameras):
        for f in range(num_frames):
            points = mask_outline(masks[c, f])
            if len(points) > config.outline_points:
                points = points[rng.choice(len(points), config.outline_points, replace=False)]
            outline[c, f, :len(points)] = points
            outline_valid[c, f, :len(points)] = True
    outline_t = torch.tensor(outline, dtype=dtype, device=device)
    outline_valid_t = torch.tensor(outline_valid, device=device)

    as_tensor = lambda a: torch.tensor(np.asarray(a), dtype=dtype, device=device)  # noqa: E731
    start = {name: torch.stack([as_tensor(getattr(init[p], name)).reshape(num_frames if name != "betas" else 1, -1)
                                for p in people]) for name in ("betas", "body_pose", "global_orient", "transl")}
    delta = {name: torch.zeros_like(value, requires_grad=True) for name, value in start.items()}
    optimizer = torch.optim.Adam(delta.values(), lr=config.lr)
    vertex_ids = torch.arange(0, body_model.num_vertices, config.vertex_stride, device=device)
    num_people = len(people)

    def posed_vertices() -> torch.Tensor:
        """(P, F, Vs, 3) sampled vertices of everyone in every frame."""
        params = {name: (start[name] + delta[name]) for name in start}
        betas = params["betas"].expand(-1, num_frames, -1)
        out = body_model(betas=betas.reshape(num_people * num_frames, -1),
                         body_pose=params["body_pose"].reshape(num_people * num_frames, -1),
                         global_orient=params["global_orient"].reshape(num_people * num_frames, 3),
                         transl=params["transl"].reshape(num_people * num_frames, 3))
        return out.vertices[:, vertex_ids].reshape(num_people, num_frames, -1, 3)

    def loss_terms() -> dict[str, torch.Tensor]:
        vertices = posed_vertices()
        uv, depth = project_points_torch(vertices, rig)  # (C, P, F, Vs, 2), (C, P, F, Vs, 1)
        uv = uv.permute(0, 2, 1, 3, 4).reshape(num_cameras, num_frames, -1, 2)  # (C, F, P*Vs, 2)
        in_front = (depth[..., 0] > MIN_DEPTH_M).permute(0, 2, 1, 3).reshape(num_cameras, num_frames, -1)
        scale = sigma[:, None, None]
        # inside: the distance field at each projected vertex (bilinear; outside the image: its border)
        grid = torch.stack([uv[..., 0] / (width - 1), uv[..., 1] / (height - 1)], dim=-1) * 2.0 - 1.0
        sampled = torch.nn.functional.grid_sample(distance, grid.reshape(num_cameras * num_frames, 1, -1, 2),
                                                  mode="bilinear", padding_mode="border", align_corners=True)
        sampled = sampled.reshape(num_cameras, num_frames, -1)
        inside = _geman_mcclure((sampled / scale) ** 2, config.robust_scale)
        inside = (inside * in_front).sum() / in_front.sum().clamp(min=1)
        # coverage: each outline point to its nearest projected vertex
        with torch.no_grad():  # which vertex is nearest needs no gradient; the distance to it does
            nearest_index = torch.cdist(outline_t, uv).argmin(dim=-1)  # (C, F, K)
        nearest_uv = torch.gather(uv, 2, nearest_index[..., None].expand(-1, -1, -1, 2))
        nearest = (nearest_uv - outline_t).pow(2).sum(-1).clamp(min=1e-12).sqrt()  # (C, F, K)
        coverage = _geman_mcclure((nearest / scale) ** 2, config.robust_scale)
        coverage = (coverage * outline_valid_t).sum() / outline_valid_t.sum().clamp(min=1)
        pose = delta["body_pose"].pow(2).sum(-1).mean()
        shape = (start["betas"] + delta["betas"]).pow(2).sum(-1).mean()
        return {"inside": inside, "coverage": config.coverage_weight * coverage,
                "pose": config.pose_weight * pose, "shape": config.shape_weight * shape}

    def step() -> None:
        loss = sum(loss_terms().values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    if progress:
        from rich.progress import track

        for _ in track(range(config.iterations), description="silhouette fit"):
            step()
    else:
        for _ in range(config.iterations):
            step()

    with torch.no_grad():
        final = {name: (start[name] + delta[name]).cpu().double().numpy() for name in start}
    return {p: SmplSequence(betas=final["betas"][i, 0], body_pose=final["body_pose"][i],
                            global_orient=final["global_orient"][i], transl=final["transl"][i],
                            frames=init[p].frames.copy())
            for i, p in enumerate(people)}
