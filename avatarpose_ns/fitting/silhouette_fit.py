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

Where per-person masks exist, each person's outline must be covered by that person's own
vertices: where two people touch, one person's arm can no longer stand in for the other's.
An occlusion boundary in a person's mask is still covered by that person, whose body goes on
behind the occluder.

A keypoint detector that swaps a limb's left and right for a few frames leaves the
initialisation in a basin the masks cannot pull it out of (the legs cross).  After the fit,
each leg and arm is tried swapped (mirrored rotations), refined briefly, and kept per person
and frame where the masks prefer it.  So is a frame restarted from its neighbours' poses, for
the frames whose detections were garbage (an elbow tens of centimetres off).

Pure torch + OpenCV (distance transforms, outlines); the projection is the same OpenCV
camera model as the 2D keypoint fit (`smpl_fit_2d.project_points_torch`).
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Mapping, Sequence

import cv2
import numpy as np
import torch
from scipy.spatial.transform import Rotation

from avatarpose_ns.body.body_model import BodyModel
from avatarpose_ns.fitting.smpl_fit import geman_mcclure
from avatarpose_ns.fitting.smpl_fit_2d import (MIN_DEPTH_M, NUM_JOINTS, TorchCameras, image_diagonals,
                                               project_points_torch)
from avatarpose_ns.io.cameras import CameraCalib
from avatarpose_ns.io.easymocap import SmplSequence


@dataclass
class SilhouetteFitConfig:
    iterations: int = 600
    """Adam steps over all people, frames and views at once (300 stop short of the body's size)"""
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
    coverage_robust_scale: float | None = None
    """Geman-McClure scale of the coverage term alone (None: robust_scale): outline points farther from
    every vertex than this (a skirt's hem, a blob) stop pulling the body out to them"""
    pose_weight: float = 0.001
    """L2 on the per-frame body pose change (radians squared, summed over joints)"""
    shape_weight: float = 1e-3
    """L2 on the betas (a standard normal shape prior, as in the keypoint fits)"""
    shape_init_weight: float = 0.0
    """L2 on the betas' change from the initialisation's (whose bone lengths the keypoints gave)"""
    clothing_allowance_m: float = 0.0
    """outline points this close to the body (metres, at the body's depth) cost nothing in the coverage
    term: clothes stand off the body, and a bare body stretched to cover them grows too large"""
    keypoint_weight: float = 0.0
    """weight of the 2D keypoints' reprojection term, where detections are given (0: masks alone).
    Clothes and hair move a silhouette but not a detected joint: the keypoints keep a bare body that
    the coverage term would stretch into a skirt or sleeve where the detector put the limbs"""
    keypoint_robust_scale: float = 5.0
    """Geman-McClure scale of the keypoint residuals (in pixel_sigma_diagonal units): a swapped or
    wrong detection farther than this stops pulling"""
    clothing_layer: bool = True
    """fit a clothing layer with the body: per-vertex outward offsets along the normals, one set per
    person shared by all frames, so that clothes and hair are explained by the layer and not by a
    bare body grown into them or limbs splayed into a skirt (the masks then see the clothed body).
    On by default: 1.7 to 17 mm better on the clothed, segmenter-masked bench twins, -0.8 to +0.6 mm
    on the clean ones (benchmarks/RESULTS.md); the fit takes about a third longer"""
    layer_lr: float = 0.002
    """Adam learning rate of the layer's offsets (metres)"""
    layer_weight: float = 0.01
    """L2 on the offsets in centimetres (mean over vertices): the layer is no thicker than the masks ask"""
    layer_smoothness_weight: float = 1.0
    """L2 on the offset difference across each mesh edge, in centimetres: garments are smooth"""
    use_person_masks: bool = True
    """cover each person's outline with that person's own vertices, where per-person masks are given"""
    person_mask_trust: bool = False
    """judge each person mask per view and frame against the current bodies: where more than
    person_mask_trust_share of its outline lies nearer another person's projected body than its own
    (by person_mask_trust_margin), the label looks swapped or bled, and that outline is covered by
    anyone's vertices there (the union's rule) instead of its own person's"""
    person_mask_trust_share: float = 0.5
    """share of a person mask's outline nearer someone else above which that mask is not trusted"""
    person_mask_trust_margin: float = 1.0
    """how much nearer another person an outline point must lie to count against its mask (residual units)"""
    view_robust_scale: float | None = None
    """weigh each view's share of a frame's mask loss by 1 / (1 + (loss / (s * median over views))^2),
    the weights recomputed (without gradient) at every step: a view whose masks disagree with what
    the others support (a swap, a bled or missed part) stops pulling the pose (None: all views alike)"""
    swap_iterations: int = 100
    """steps refining each hypothesis (limb swaps, a restart from the neighbouring frames) before choosing (0: off)"""
    swap_margin: float = 0.002
    """a swap must lower its frame's mask loss by this much (the loss is a mean robust residual, 0 to 1)"""
    swap_motion_margin: float = 0.01
    """where a swap's mask loss is within swap_margin of the fitted pose's (the masks cannot tell the
    sides apart), it is kept if it brings the person's vertices nearer to the neighbouring frames'
    by this many metres (mean over vertices; 0 turns this off)"""
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


NEAREST_SLICE_ELEMENTS = 1 << 20
"""distances held at once by `nearest_indices` (4 MB of float32): a slice that stays in the CPU's cache
is searched about three times faster than the whole (..., K, V) matrix at once, with the same result"""


def nearest_indices(outline: torch.Tensor, covering: torch.Tensor,
                    slice_elements: int | None = None) -> torch.Tensor:
    """Index of each outline point's nearest covering point. (..., K, 2), (..., V, 2) -> (..., K) long

    `torch.cdist(outline, covering).argmin(-1)` computed over slices of the leading (batch) dimensions:
    each batch element's distances are computed exactly as in one call, so the indices are identical.
    slice_elements: distances per slice (None: NEAREST_SLICE_ELEMENTS).
    """
    slice_elements = NEAREST_SLICE_ELEMENTS if slice_elements is None else slice_elements
    batch = torch.broadcast_shapes(outline.shape[:-2], covering.shape[:-2])
    num_outline, num_covering = outline.shape[-2], covering.shape[-2]
    flat_outline = outline.expand(*batch, num_outline, outline.shape[-1]).reshape(-1, num_outline, outline.shape[-1])
    flat_covering = covering.expand(*batch, num_covering, covering.shape[-1]).reshape(-1, num_covering,
                                                                                       covering.shape[-1])
    step = max(1, slice_elements // max(1, num_outline * num_covering))
    parts = [torch.cdist(flat_outline[i:i + step], flat_covering[i:i + step]).argmin(dim=-1)
             for i in range(0, flat_outline.shape[0], step)]
    return torch.cat(parts).reshape(*batch, num_outline)


def nearest_cover_distance(outline: torch.Tensor, covering: torch.Tensor) -> torch.Tensor:
    """Distance from each outline point to its nearest covering point.  (..., K, 2), (..., V, 2) -> (..., K)

    Which point is nearest is chosen without gradient; the distance to it carries the gradient,
    so only the nearest covering point of each outline point is pulled.
    """
    with torch.no_grad():
        nearest_index = nearest_indices(outline, covering)  # (..., K)
    nearest = torch.gather(covering, -2, nearest_index[..., None].expand(*nearest_index.shape, 2))
    return (nearest - outline).pow(2).sum(-1).clamp(min=1e-12).sqrt()


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
    person_masks: np.ndarray | None = None,
    keypoints2d: np.ndarray | None = None,
) -> dict[int, SmplSequence]:
    """Fit everyone's betas and per-frame pose to union foreground masks.

    cameras: C calibrations; masks: (C, F, H, W) bool union masks of the same (distorted)
    images, in camera order; init: person id -> SmplSequence over the same F frames.
    person_masks: optional (C, F, P, H, W) bool visible part of each person, people in the
    order of sorted(init).  With them, each person's outline must be covered by that
    person's own vertices, which keeps one person's limb from standing in for another's
    where they touch; without them, any person's vertex covers any outline point.
    keypoints2d: optional (C, F, P, 24, 3) detections (u, v, confidence; 0 = not detected) of the
    24 SMPL joints in the same images, people in sorted(init) order; used when
    config.keypoint_weight > 0.
    Returns person id -> refined SmplSequence (frame ids kept).  progress: show a rich
    progress bar (a few hundred steps take one to three minutes on two CPU cores).
    """
    config = config or SilhouetteFitConfig()
    masks = np.asarray(masks, dtype=bool)
    _check(cameras, masks, init)
    if person_masks is not None and not config.use_person_masks:
        person_masks = None
    if person_masks is not None:
        person_masks = np.asarray(person_masks, dtype=bool)
        if person_masks.shape != masks.shape[:2] + (len(init),) + masks.shape[2:]:
            raise ValueError(f"person masks must be (C, F, P={len(init)}, H, W) like the union masks "
                             f"{masks.shape}, got {person_masks.shape}")
    if keypoints2d is not None and config.keypoint_weight > 0:
        keypoints2d = np.asarray(keypoints2d, dtype=np.float64)
        expected = masks.shape[:2] + (len(init), NUM_JOINTS, 3)
        if keypoints2d.shape != expected:
            raise ValueError(f"2D keypoints must be (C, F, P, J, 3) = {expected}, got {keypoints2d.shape}")
        if not np.all(np.isfinite(keypoints2d)):
            raise ValueError("2D keypoints hold NaN or infinite values; mark a missed joint with confidence 0")
    else:
        keypoints2d = None
    evidence = _MaskEvidence(cameras, masks, person_masks, config, body_model, keypoints2d)
    people = sorted(init)
    as_tensor = lambda a: torch.tensor(np.asarray(a), dtype=evidence.dtype, device=evidence.device)  # noqa: E731
    params = {name: torch.stack([as_tensor(getattr(init[p], name)).reshape(evidence.num_frames if name != "betas"
                                                                           else 1, -1) for p in people])
              for name in PARAMETERS}
    if config.clothing_layer:  # just above zero: the offsets are a ReLU, whose gradient vanishes at 0
        params["offsets"] = torch.full((len(people), body_model.num_vertices), 1e-3, dtype=evidence.dtype,
                                       device=evidence.device)
    params = _optimise(body_model, evidence, params, config, config.iterations, fit_betas=True,
                       description="silhouette fit" if progress else None)
    if config.swap_iterations > 0:
        params = _try_hypotheses(body_model, evidence, params, config,
                                 description="swap and restart hypotheses" if progress else None)

    final = {name: value.cpu().double().numpy() for name, value in params.items()}
    return {p: SmplSequence(betas=final["betas"][i, 0], body_pose=final["body_pose"][i],
                            global_orient=final["global_orient"][i], transl=final["transl"][i],
                            frames=init[p].frames.copy())
            for i, p in enumerate(people)}


PARAMETERS = ("betas", "body_pose", "global_orient", "transl")


class _MaskEvidence:
    """What the masks say, per camera and frame: the distance field to the foreground (for
    "inside") and a sample of the outline of each person or of everyone (for "coverage")."""

    def __init__(self, cameras: Sequence[CameraCalib], masks: np.ndarray, person_masks: np.ndarray | None,
                 config: SilhouetteFitConfig, body_model: BodyModel, keypoints2d: np.ndarray | None = None) -> None:
        self.num_cameras, self.num_frames, self.height, self.width = masks.shape
        self.dtype, self.device = body_model.dtype, body_model.joint_template.device
        self.config = config
        self.per_person = person_masks is not None
        self.rig = TorchCameras.from_calibs(cameras, dtype=self.dtype, device=self.device)
        self.sigma = torch.tensor(config.pixel_sigma_diagonal * image_diagonals(cameras), dtype=self.dtype,
                                  device=self.device)  # (C,) residual unit in pixels
        self.distance = torch.tensor(np.stack([[mask_distance_to_foreground(m) for m in view] for view in masks]),
                                     dtype=self.dtype, device=self.device)  # (C, F, H, W)
        outline_masks = person_masks if person_masks is not None else masks[:, :, None]  # (C, F, G, H, W)
        groups = outline_masks.shape[2]
        rng = np.random.default_rng(config.seed)
        outline = np.zeros((self.num_cameras, self.num_frames, groups, config.outline_points, 2))
        valid = np.zeros((self.num_cameras, self.num_frames, groups, config.outline_points), dtype=bool)
        for c in range(self.num_cameras):
            for f in range(self.num_frames):
                for g in range(groups):
                    points = mask_outline(outline_masks[c, f, g])
                    if len(points) > config.outline_points:
                        points = points[rng.choice(len(points), config.outline_points, replace=False)]
                    outline[c, f, g, :len(points)] = points
                    valid[c, f, g, :len(points)] = True
        self.outline = torch.tensor(outline, dtype=self.dtype, device=self.device)  # (C, F, G, K, 2)
        self.outline_valid = torch.tensor(valid, device=self.device)  # (C, F, G, K)
        self.keypoints = None if keypoints2d is None else torch.tensor(keypoints2d, dtype=self.dtype,
                                                                       device=self.device)  # (C, F, P, J, 3)

    def keypoint_losses(self, joints: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """The keypoint term of each frame (`keypoint_reprojection_loss`) for joints (P, N, J, 3) posed
        in the frames `frames` (N,) -> (N,); zeros without detections."""
        if self.keypoints is None:
            return joints.new_zeros(len(frames))
        uv, depth = project_points_torch(joints, self.rig)  # (C, P, N, J, 2), (C, P, N, J, 1)
        detected = self.keypoints[:, frames].permute(0, 2, 1, 3, 4)  # (C, P, N, J, 3)
        return keypoint_reprojection_loss(uv, depth[..., 0], detected, self.sigma, self.config.keypoint_robust_scale)

    def frame_losses(self, vertices: torch.Tensor, frames: torch.Tensor, joints: torch.Tensor | None = None
                     ) -> torch.Tensor:
        """Loss of each frame: the masks' (inside + coverage) and, with joints (P, N, J, 3) and
        detections, the keypoints'.  vertices (P, N, Vs, 3) posed in the frames `frames` (N,)
        (indices into the evidence, repeats allowed) -> (N,)"""
        config = self.config
        num_cameras, num = self.num_cameras, len(frames)
        uv_people, depth = project_points_torch(vertices, self.rig)  # (C, P, N, Vs, 2), (C, P, N, Vs, 1)
        uv_people = uv_people.permute(0, 2, 1, 3, 4)  # (C, N, P, Vs, 2)
        uv = uv_people.reshape(num_cameras, num, -1, 2)  # (C, N, P*Vs, 2)
        in_front = (depth[..., 0] > MIN_DEPTH_M).permute(0, 2, 1, 3).reshape(num_cameras, num, -1)
        scale = self.sigma[:, None, None]
        # inside: the distance field at each projected vertex (bilinear; outside the image: its border)
        grid = torch.stack([uv[..., 0] / (self.width - 1), uv[..., 1] / (self.height - 1)], dim=-1) * 2.0 - 1.0
        distance = self.distance[:, frames].reshape(num_cameras * num, 1, self.height, self.width)
        sampled = torch.nn.functional.grid_sample(distance, grid.reshape(num_cameras * num, 1, -1, 2),
                                                  mode="bilinear", padding_mode="border", align_corners=True)
        inside = geman_mcclure((sampled.reshape(num_cameras, num, -1) / scale) ** 2, config.robust_scale)
        inside_sum, inside_count = (inside * in_front).sum(dim=2), in_front.sum(dim=2)  # (C, N)
        # coverage: each outline point to its nearest projected vertex (of its own person, or of anyone)
        covering = uv_people if self.per_person else uv[:, :, None]  # (C, N, G, V', 2)
        outline, valid = self.outline[:, frames], self.outline_valid[:, frames]
        nearest = nearest_cover_distance(outline, covering)  # (C, N, G, K)
        if self.per_person and config.person_mask_trust:
            anyone = nearest_cover_distance(outline, uv[:, :, None].expand(-1, -1, outline.shape[2], -1, -1))
            trusted = person_mask_trusted(nearest.detach() / scale[..., None], anyone.detach() / scale[..., None],
                                          valid, config.person_mask_trust_margin, config.person_mask_trust_share)
            nearest = torch.where(trusted[..., None], nearest, anyone)
        if config.clothing_allowance_m > 0:  # the allowance in pixels at each group's median depth
            group_depth = depth[..., 0].permute(0, 2, 1, 3)  # (C, N, P, Vs)
            group_depth = group_depth.reshape(num_cameras, num, -1) if not self.per_person else group_depth
            group_depth = group_depth.detach().reshape(num_cameras, num, covering.shape[2], -1).median(-1).values
            allowance = config.clothing_allowance_m * self.rig.K[:, 0, 0, None, None] / group_depth.clamp(min=MIN_DEPTH_M)
            nearest = torch.relu(nearest - allowance[..., None])
        coverage_scale = config.robust_scale if config.coverage_robust_scale is None else config.coverage_robust_scale
        coverage = geman_mcclure((nearest / scale[..., None]) ** 2, coverage_scale) * valid
        coverage_sum, coverage_count = coverage.sum(dim=(2, 3)), valid.sum(dim=(2, 3))  # (C, N)
        if config.view_robust_scale is not None:
            view_loss = (inside_sum / inside_count.clamp(min=1)
                         + config.coverage_weight * coverage_sum / coverage_count.clamp(min=1)).detach()
            weight = view_weights(view_loss, config.view_robust_scale)  # (C, N)
            inside_sum, inside_count = inside_sum * weight, inside_count * weight
            coverage_sum, coverage_count = coverage_sum * weight, coverage_count * weight
        inside = inside_sum.sum(0) / inside_count.sum(0).clamp(min=1e-9)
        coverage = coverage_sum.sum(0) / coverage_count.sum(0).clamp(min=1e-9)
        loss = inside + config.coverage_weight * coverage
        if joints is not None and self.keypoints is not None:
            loss = loss + config.keypoint_weight * self.keypoint_losses(joints, frames)
        return loss


def person_mask_trusted(own: torch.Tensor, anyone: torch.Tensor, valid: torch.Tensor, margin: float,
                        share: float) -> torch.Tensor:
    """Which person masks to trust, from each outline point's distance to its own person's nearest
    projected vertex and to anyone's. own, anyone, valid (..., G, K) (distances in residual units)
    -> (..., G) bool: False where more than `share` of the valid outline points lie nearer someone
    else's body than their own by more than `margin` (a mask whose label was swapped with another
    person's, or into which a neighbour bled). A mask without outline points is trusted."""
    elsewhere = ((anyone < own - margin) & valid).sum(-1).to(own.dtype)
    return elsewhere <= share * valid.sum(-1).to(own.dtype)


def view_weights(view_loss: torch.Tensor, scale: float) -> torch.Tensor:
    """Robust weight of each view's mask loss within its frame. view_loss (C, N) -> (C, N):
    1 / (1 + (loss / (scale * median over views))^2), so that a view several times worse than the
    typical one (its masks wrong) counts little; the weights of a frame are scaled to sum to C."""
    typical = view_loss.median(dim=0, keepdim=True).values.clamp(min=1e-9)
    weight = 1.0 / (1.0 + (view_loss / (scale * typical)) ** 2)
    return weight * view_loss.shape[0] / weight.sum(0, keepdim=True).clamp(min=1e-12)


def keypoint_reprojection_loss(uv: torch.Tensor, depth: torch.Tensor, detected: torch.Tensor, sigma: torch.Tensor,
                               robust_scale: float) -> torch.Tensor:
    """Confidence-weighted mean Geman-McClure reprojection error of each frame, in squared sigma units.

    uv (C, P, N, J, 2) projected joints, depth (C, P, N, J) their camera depths, detected (C, P, N, J, 3)
    detections (u, v, confidence), sigma (C,) the residual unit in pixels -> (N,). Joints behind a
    camera and undetected ones (confidence 0) do not count; a frame without any detection costs 0.
    """
    squared = (uv - detected[..., :2]).pow(2).sum(-1) / sigma[:, None, None, None] ** 2
    weight = detected[..., 2] * (depth > MIN_DEPTH_M)
    robust = geman_mcclure(squared, robust_scale) * weight
    return robust.sum(dim=(0, 1, 3)) / weight.sum(dim=(0, 1, 3)).clamp(min=1e-9)


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Unit area-weighted vertex normals. vertices (B, V, 3), faces (T, 3) long -> (B, V, 3)"""
    a, b, c = (vertices[:, faces[:, k]] for k in range(3))
    face_normals = torch.cross(b - a, c - a, dim=-1)  # (B, T, 3), length = twice the area
    normals = torch.zeros_like(vertices)
    for k in range(3):
        normals = normals.index_add(1, faces[:, k], face_normals)
    return normals / normals.norm(dim=-1, keepdim=True).clamp(min=1e-12)


def mesh_edges(faces: torch.Tensor) -> torch.Tensor:
    """(E, 2) long: each undirected edge of a triangle mesh once. faces (T, 3) long"""
    edges = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).sort(dim=1).values
    return torch.unique(edges, dim=0)


def _pose(body_model: BodyModel, params: dict[str, torch.Tensor], vertex_stride: int
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Every vertex_stride-th vertex (P, F, Vs, 3) and the joints (P, F, J, 3) of everyone in every frame.

    With a clothing layer (params["offsets"] (P, V) metres) the vertices are those of the clothed
    surface: each moved out along its posed normal by its ReLU'd offset."""
    num_people, num_frames = params["body_pose"].shape[:2]
    rows = num_people * num_frames
    out = body_model(betas=params["betas"].expand(-1, num_frames, -1).reshape(rows, -1),
                     body_pose=params["body_pose"].reshape(rows, -1),
                     global_orient=params["global_orient"].reshape(rows, 3),
                     transl=params["transl"].reshape(rows, 3))
    vertex_ids = torch.arange(0, body_model.num_vertices, vertex_stride, device=out.vertices.device)
    vertices = out.vertices
    if "offsets" in params:
        normals = vertex_normals(vertices, body_model.faces.to(vertices.device))[:, vertex_ids]
        thickness = torch.relu(params["offsets"])[:, None, vertex_ids].expand(-1, num_frames, -1).reshape(rows, -1)
        vertices = vertices[:, vertex_ids] + normals * thickness[..., None]
    else:
        vertices = vertices[:, vertex_ids]
    return (vertices.reshape(num_people, num_frames, -1, 3),
            out.joints.reshape(num_people, num_frames, -1, 3))


def _optimise(body_model: BodyModel, evidence: _MaskEvidence, start: dict[str, torch.Tensor],
              config: SilhouetteFitConfig, iterations: int, fit_betas: bool, frames: torch.Tensor | None = None,
              description: str | None = None) -> dict[str, torch.Tensor]:
    """Adam on the change from `start` (P, F', ...) whose frame k shows evidence frame frames[k]
    (default: all frames in order).  The pose prior holds the body pose near `start`."""
    frames = torch.arange(evidence.num_frames, device=evidence.device) if frames is None else frames
    names = [*PARAMETERS, *(["offsets"] if "offsets" in start else [])]
    free = [name for name in names if fit_betas or name not in ("betas", "offsets")]
    delta = {name: torch.zeros_like(start[name], requires_grad=name in free) for name in names}
    groups = [{"params": [delta[name]], "lr": config.layer_lr if name == "offsets" else config.lr} for name in free]
    optimizer = torch.optim.Adam(groups, lr=config.lr)
    edges = mesh_edges(body_model.faces.to(evidence.device)) if "offsets" in free else None
    # frames with the same evidence (hypotheses of one frame) are separate problems: sum over them
    copies = torch.bincount(frames, minlength=evidence.num_frames)[frames].to(evidence.dtype)

    def step() -> None:
        params = {name: start[name] + delta[name] for name in names}
        vertices, joints = _pose(body_model, params, config.vertex_stride)
        loss = (evidence.frame_losses(vertices, frames, joints) / copies).sum() / evidence.num_frames
        loss = loss + config.pose_weight * delta["body_pose"].pow(2).sum(-1).mean()
        if fit_betas:
            loss = loss + config.shape_weight * params["betas"].pow(2).sum(-1).mean()
            loss = loss + config.shape_init_weight * delta["betas"].pow(2).sum(-1).mean()
        if edges is not None:
            centimetres = 100.0 * torch.relu(params["offsets"])
            loss = loss + config.layer_weight * centimetres.pow(2).mean()
            loss = loss + config.layer_smoothness_weight * (centimetres[:, edges[:, 0]]
                                                            - centimetres[:, edges[:, 1]]).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    steps = range(iterations)
    if description is not None:
        from rich.progress import track

        steps = track(steps, description=description)
    for _ in steps:
        step()
    return {name: (start[name] + delta[name]).detach() for name in names}


def swap_limbs(body_pose: torch.Tensor, limb: Sequence[tuple[int, int]]) -> torch.Tensor:
    """Give each left joint of a limb the mirrored rotation of its right partner and vice versa.

    body_pose (..., 69) axis-angle of SMPL joints 1..23; limb: (left joint, right joint) pairs.
    Mirroring across the body's sagittal plane (SMPL x is the body's left) maps an axis-angle
    (x, y, z) to (x, -y, -z): flexion is kept, twist and abduction change side.
    """
    swapped = body_pose.clone()
    mirror = torch.tensor([1.0, -1.0, -1.0], dtype=body_pose.dtype, device=body_pose.device)
    for left, right in limb:
        a, b = slice(3 * (left - 1), 3 * left), slice(3 * (right - 1), 3 * right)
        swapped[..., a], swapped[..., b] = body_pose[..., b] * mirror, body_pose[..., a] * mirror
    return swapped


def exchange_limb_positions(body_model: BodyModel, params: dict[str, torch.Tensor], limb: Sequence[tuple[int, int]],
                            steps: int = 100, lr: float = 0.05) -> torch.Tensor:
    """Body poses (P, F, 69) whose left limb lies where the right one was, and vice versa.

    A detector that swaps the labels of two legs standing side by side leaves crossed legs: each
    leg where the other should be. Mirroring the rotations (`swap_limbs`) keeps them crossed; this
    moves every joint of the limb below its first pair (for the legs: knees, ankles, feet) onto
    its partner's position by a short Adam fit of the limb's rotations (inverse kinematics).
    params as in the fit: betas (P, 1, 10), body_pose (P, F, 69), global_orient and transl (P, F, 3).
    """
    num_people, num_frames = params["body_pose"].shape[:2]
    rows = num_people * num_frames
    common = dict(betas=params["betas"].expand(-1, num_frames, -1).reshape(rows, -1).detach(),
                  global_orient=params["global_orient"].reshape(rows, 3).detach(),
                  transl=params["transl"].reshape(rows, 3).detach())
    start = params["body_pose"].reshape(rows, 23, 3).detach()
    with torch.no_grad():  # the joints alone: the vertices would take most of the time and are not used
        joints = body_model.joints_only(body_pose=start.reshape(rows, -1), **common)
    lower = [joint for pair in limb[1:] for joint in pair]
    partner = [joint for left, right in limb[1:] for joint in (right, left)]
    target = joints[:, partner]
    moving = torch.zeros(1, 23, 1, dtype=start.dtype, device=start.device)
    moving[0, [joint - 1 for pair in limb for joint in pair]] = 1.0
    delta = torch.zeros_like(start, requires_grad=True)
    optimizer = torch.optim.Adam([delta], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            pose = (start + delta * moving).reshape(rows, -1)
            loss = (body_model.joints_only(body_pose=pose, **common)[:, lower] - target).square().sum(-1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return (start + delta.detach() * moving).reshape(num_people, num_frames, -1)


# (left, right) SMPL joint pairs that turn together when a keypoint detector swaps a limb's sides
LEG_JOINTS = ((1, 2), (4, 5), (7, 8), (10, 11))  # hips, knees, ankles, feet
ARM_JOINTS = ((13, 14), (16, 17), (18, 19), (20, 21), (22, 23))  # collars, shoulders, elbows, wrists, hands


def pose_from_neighbours(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each frame's pose as its neighbouring frames put it: the restart for a frame whose own is garbage.

    params: body_pose (P, F, 69), global_orient and transl (P, F, 3). Returns the same keys and
    shapes: every joint rotation (and the root's) halfway between frames t - 1 and t + 1 on the
    shortest arc, the translation at their midpoint; the first and last frames copy their one
    neighbour (a single frame is returned unchanged).
    """
    if params["body_pose"].shape[1] < 2:
        return {name: params[name].clone() for name in ("body_pose", "global_orient", "transl")}

    def rotation_midpoint(value: torch.Tensor) -> torch.Tensor:
        before, after = (Rotation.from_rotvec(v.reshape(-1, 3).cpu().double().numpy())
                         for v in _neighbour_frames(value))
        halfway = before * Rotation.from_rotvec(0.5 * (before.inv() * after).as_rotvec())
        return torch.tensor(halfway.as_rotvec(), dtype=value.dtype, device=value.device).reshape(value.shape)

    before, after = _neighbour_frames(params["transl"])
    return {"body_pose": rotation_midpoint(params["body_pose"]),
            "global_orient": rotation_midpoint(params["global_orient"]),
            "transl": 0.5 * (before + after)}


def _try_hypotheses(body_model: BodyModel, evidence: _MaskEvidence, params: dict[str, torch.Tensor],
                    config: SilhouetteFitConfig, description: str | None) -> dict[str, torch.Tensor]:
    """Keep, per person and frame, a left/right-swapped pair of legs or arms, or a restart from the
    neighbouring frames, where the evidence prefers it.

    A keypoint detector that swaps a limb's sides for a few frames leaves the initialisation in a
    basin the masks cannot pull it out of (the legs then cross).  Each hypothesis is refined for
    `swap_iterations` steps (betas fixed) and kept for a person and frame when its mask loss, with
    everyone else as fitted, is lower than the fitted pose's by `swap_margin`.
    The hypotheses: legs mirrored, arms mirrored (`swap_limbs`), legs moved onto each other's
    places (`exchange_limb_positions`, for crossed legs), and the whole pose from the neighbouring
    frames (`pose_from_neighbours`, for a frame whose detections were garbage). Where the two legs
    (or arms) look alike, a swapped pair covers the same pixels as the true one and the masks
    cannot decide; then the swap is kept if it moves the person's vertices nearer to where the
    neighbouring frames put them (`motion_from_neighbours`) by `swap_motion_margin`. The restart
    from the neighbours must win on the masks alone: it is always near them.
    """
    num_people, num_frames = params["body_pose"].shape[:2]
    fitted_pose = {name: params[name] for name in ("body_pose", "global_orient", "transl")}
    hypotheses = [dict(fitted_pose, body_pose=swap_limbs(params["body_pose"], LEG_JOINTS)),
                  dict(fitted_pose, body_pose=swap_limbs(params["body_pose"], ARM_JOINTS)),
                  dict(fitted_pose, body_pose=exchange_limb_positions(body_model, params, LEG_JOINTS)),
                  pose_from_neighbours(params)]
    motion_margins = [config.swap_motion_margin] * 3 + [0.0]
    each_frame = torch.arange(num_frames, device=evidence.device)
    frames = each_frame.repeat(len(hypotheses))  # every hypothesis for every frame
    candidates = {name: params["betas"] if name == "betas" else torch.cat([h[name] for h in hypotheses], dim=1)
                  for name in PARAMETERS}
    if "offsets" in params:  # the clothing layer as fitted, on every hypothesis
        candidates["offsets"] = params["offsets"]
    candidates = _optimise(body_model, evidence, candidates, config, config.swap_iterations, fit_betas=False,
                           frames=frames, description=description)
    with torch.no_grad():
        fitted_vertices, fitted_joints = _pose(body_model, params, config.vertex_stride)  # (P, F, Vs|J, 3)
        candidate_vertices, candidate_joints = _pose(body_model, candidates, config.vertex_stride)  # (P, H*F, ..)
        fitted_loss = evidence.frame_losses(fitted_vertices, each_frame, fitted_joints)  # (F,)
        fitted_motion = motion_from_neighbours(fitted_vertices, fitted_vertices)  # (P, F)
        best = {name: value.clone() for name, value in params.items()}
        best_loss = fitted_loss[None].repeat(num_people, 1)  # (P, F)
        swapped = torch.zeros(num_people, num_frames, dtype=torch.bool, device=evidence.device)
        for k, motion_margin in enumerate(motion_margins):
            span = slice(k * num_frames, (k + 1) * num_frames)
            motion = motion_from_neighbours(candidate_vertices[:, span], fitted_vertices)  # (P, F)
            for person in range(num_people):
                mixed, mixed_joints = fitted_vertices.clone(), fitted_joints.clone()
                mixed[person] = candidate_vertices[person, span]
                mixed_joints[person] = candidate_joints[person, span]
                loss = evidence.frame_losses(mixed, each_frame, mixed_joints)
                better = keep_swap(loss, best_loss[person], fitted_loss, motion[person], fitted_motion[person],
                                   swapped[person], config.swap_margin, motion_margin)
                for name in ("body_pose", "global_orient", "transl"):
                    best[name][person, better] = candidates[name][person, span][better]
                best_loss[person, better] = loss[better]
                swapped[person] |= better
    return best


def keep_swap(loss: torch.Tensor, best_loss: torch.Tensor, fitted_loss: torch.Tensor, motion: torch.Tensor,
              fitted_motion: torch.Tensor, swapped: torch.Tensor, margin: float, motion_margin: float) -> torch.Tensor:
    """Which frames take a swap hypothesis. All (F,): its mask loss, the best loss so far, the fitted
    pose's loss, its and the fitted pose's `motion_from_neighbours`, and whether an earlier hypothesis
    was already taken. The masks decide where they prefer it by `margin`; where it is no worse than
    the fitted pose by `margin` (limbs that look alike), the neighbouring frames decide, by
    `motion_margin` metres (0: they never do)."""
    better = loss < best_loss - margin
    if motion_margin > 0:
        alike = (loss <= fitted_loss + margin) & ~swapped
        better |= alike & (motion < fitted_motion - motion_margin)
    return better


def motion_from_neighbours(vertices: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
    """How far each frame's vertices lie from where the neighbouring frames put them.

    vertices, neighbours (P, F, V, 3) -> (P, F) metres: the mean over vertices of the distance from
    vertices[:, t] to the midpoint of neighbours[:, t - 1] and neighbours[:, t + 1] (to the one
    neighbour at either end; zeros for a single frame). The midpoint is where a body moving at
    constant speed would be, so a limb whose sides swapped for one frame lies far from it.
    """
    num_frames = vertices.shape[1]
    if num_frames < 2:
        return vertices.new_zeros(vertices.shape[:2])
    before, after = _neighbour_frames(neighbours)
    return (vertices - 0.5 * (before + after)).norm(dim=-1).mean(dim=-1)


def _neighbour_frames(value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(P, F, ...) -> frames t - 1 and t + 1 of every frame t, each (P, F, ...); F >= 2. Frame 0 has
    only frame 1, so both are frame 1; the last frame likewise has only the one before."""
    before = torch.cat([value[:, 1:2], value[:, :-1]], dim=1)
    after = torch.cat([value[:, 1:], value[:, -2:-1]], dim=1)
    return before, after
