"""Avatar-phase and pose-phase losses (AvatarPose sections 3.1 and 3.2). Pure functions, torch only.

Shapes: R rays, L people, N samples per ray (merged), F frames, P people with pose state.

Each ``*_loss`` function returns an unweighted scalar; :func:`avatar_losses` and
:func:`pose_losses` return dicts of weighted scalars (nerfstudio sums a model's loss dict
into the training loss and logs each entry). Terms whose weight is 0 or whose inputs are
not given are left out of the dicts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from avatarpose_ns.body.priors import angle_prior, correction_prior, l2_pose_prior, temporal_smoothness

# log(1 + e^-1): makes the hard-surface penalty exactly 0 at 0 and 1.
HARD_SURFACE_OFFSET = math.log1p(math.exp(-1.0))


# --------------------------------------------------------------------------- weights


@dataclass
class AvatarLossWeights:
    """Avatar-phase weights (docs/design.md#losses, the released configuration)."""

    rgb: float = 1.0
    """Huber RGB, delta ``huber_delta``."""
    huber_delta: float = 0.1
    alpha: float = 0.1
    """MSE of the rendered accumulation against the foreground mask."""
    layer_entropy: float = 1e-3
    """-sum_l alpha_l log alpha_l (eq. 7)."""
    hard_surface_alpha: float = 0.1
    hard_surface_weights: float = 0.1
    density_outside: float = 1.0
    """Mean density at points the occupancy grid marks empty, evaluated every step. (The
    upstream code adds it with weight 20 only on the steps that update the grid, every
    20 steps: the same weight per step on average.)"""


@dataclass
class PoseLossWeights:
    """Pose-phase weights (docs/design.md#losses)."""

    rgb: float = 10.0
    huber_delta: float = 0.1
    mask: float = 0.05
    """Binary cross-entropy of the accumulation against the foreground mask."""
    l2_pose: float = 1e-3
    angle_prior: float = 1e-2
    collision: float = 5e-3
    correction: float = 0.0
    """Squared correction of `correction_joints` away from the initialisation (a Gaussian prior
    centred on it). Off by default, as released; see benchmarks/RESULTS.md for its effect."""
    correction_joints: tuple[int, ...] = (20, 21)
    """SMPL joints it holds (default the wrists, whose rotation places the hand joints)."""
    smoothness: float = 1.0
    """First differences over frames of the translation."""
    smoothness_pose: float = 0.0
    """First differences over frames of the joint angles (axis-angle). The released configuration
    weights it 1.0; it is off by default because on a keypoint-fitted initialisation, whose wrist
    and shoulder angles jump between frames, it moved the poses away from the truth even at
    0.014 (demo: MPJPE 45 -> 64 mm in 120 steps) while the images could not hold them."""
    smoothness_acceleration: float = 0.0
    """Optional second differences (the upstream tracking mode weights both 1:1)."""


# --------------------------------------------------------------------------- primitives


def rgb_huber_loss(rgb: torch.Tensor, target: torch.Tensor, delta: float = 0.1) -> torch.Tensor:
    """Huber loss, mean over all channels: 0.5 x^2 if |x| < delta else delta (|x| - delta / 2).

    rgb, target (R, 3) -> scalar. The caller sets target pixels outside the foreground mask
    to the background colour used in the rendering.
    """
    return F.huber_loss(rgb, target, reduction="mean", delta=delta)


def alpha_mask_loss(accumulation: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE between the rendered opacity and the foreground mask (eq. 6). (R,), (R,) -> scalar"""
    return (accumulation - mask.to(accumulation.dtype)).pow(2).mean()


def layer_entropy_loss(person_accumulation: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Layer entropy (eq. 7): mean over rays of -sum_l alpha_l log alpha_l.

    person_accumulation (R, L) -> scalar. log is taken of alpha clamped to >= eps, so
    alpha = 0 contributes 0 with a finite gradient.
    """
    a = person_accumulation
    return -(a * torch.log(a.clamp_min(eps))).sum(dim=-1).mean()


def hard_surface_penalty(values: torch.Tensor) -> torch.Tensor:
    """Element-wise -log(exp(-x) + exp(-(1 - x))) + log(1 + e^-1).

    The InstantAvatar / AvatarPose hard-surface regulariser: 0 at x = 0 and x = 1, largest
    (about 0.120) at x = 0.5, smooth, so opacities are pushed towards empty or solid.
    """
    return HARD_SURFACE_OFFSET - torch.logaddexp(-values, values - 1.0)


def hard_surface_loss(values: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of :func:`hard_surface_penalty` over all entries, or over ``valid`` ones.

    values: per-ray accumulation (R,) or sorted sample weights (R, N); valid: same shape, bool.
    """
    penalty = hard_surface_penalty(values)
    if valid is None:
        return penalty.mean()
    valid = valid.to(penalty.dtype)
    return (penalty * valid).sum() / valid.sum().clamp_min(1.0)


def density_regulariser(densities: torch.Tensor) -> torch.Tensor:
    """Mean |sigma| over the given points (e.g. where the occupancy grid says empty); 0 if none."""
    if densities.numel() == 0:
        return densities.new_zeros(())
    return densities.abs().mean()


def mask_bce_loss(accumulation: torch.Tensor, mask: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Binary cross-entropy of the rendered opacity (a probability) against the mask (eq. 10).

    accumulation, mask (R,) -> scalar: mean of -(m log a + (1 - m) log(1 - a)). The opacity is
    clamped to [eps, 1 - eps] in value only; the gradient passes straight through the clamp,
    so rays with (nearly) zero or full opacity still receive a gradient.
    """
    a = accumulation + (accumulation.clamp(eps, 1.0 - eps) - accumulation).detach()
    m = mask.to(a.dtype)
    return -(m * torch.log(a) + (1.0 - m) * torch.log1p(-a)).mean()


def densities_to_opacities(densities: torch.Tensor, step: float | torch.Tensor = 0.01) -> torch.Tensor:
    """alpha = 1 - exp(-relu(sigma) * step), element-wise; step a float or broadcastable tensor.

    The upstream collision term uses a fixed step of 0.01 (scene units) rather than each
    sample's own interval, so that the penalty does not depend on the sampling density.
    """
    return -torch.expm1(-torch.relu(densities) * step)


def collision_loss(
    opacities: torch.Tensor,
    valid: torch.Tensor | None = None,
    inside_threshold: float = 0.0,
    normalize: str = "colliding",
) -> torch.Tensor:
    """Collision loss (eq. 12): penalise points occupied by two avatars at once.

    Args:
        opacities: (..., L) opacity alpha_q of every person's field q at each sample point
            (any leading shape, e.g. (R, N, L) or (R, L_src, S, L)). The samples of person p
            carry their own field's value in column p; the caller evaluates the other
            people's fields at the same points (see :func:`densities_to_opacities`).
        valid: (...) bool, points to consider (e.g. the compositor's valid mask), or None.
        inside_threshold: a person counts as present at a point where alpha > this.
        normalize: "colliding" divides by the number of points inside at least two avatars
            (the set S of the paper; upstream code), "all" by the number of valid points.

    Per point the penalty is sum over unordered pairs p < q of alpha_p alpha_q, counted only
    where both alpha_p and alpha_q exceed ``inside_threshold`` (for two people: alpha_1 alpha_2).
    Returns a scalar; 0 (with a zero gradient) when no point collides.
    """
    a = opacities
    if valid is not None:
        a = torch.where(valid[..., None].to(torch.bool), a, torch.zeros_like(a))
    inside = (a > inside_threshold).to(a.dtype)
    a_in = a * inside
    num_people = a.shape[-1]
    upper = torch.ones(num_people, num_people, dtype=torch.bool, device=a.device).triu(1)
    pair = (a_in[..., :, None] * a_in[..., None, :] * upper).sum(dim=(-2, -1))
    colliding = (inside.sum(dim=-1) >= 2).to(a.dtype)
    if normalize == "colliding":
        count = colliding.sum()
    elif normalize == "all":
        count = valid.to(a.dtype).sum() if valid is not None else a.new_tensor(float(pair.numel()))
    else:
        raise ValueError(f"normalize must be 'colliding' or 'all', got {normalize!r}")
    return (pair * colliding).sum() / count.clamp_min(1.0)


def pose_prior_losses(body_pose: torch.Tensor) -> dict[str, torch.Tensor]:
    """Unweighted L2 pose prior and SMPLify elbow/knee angle prior, means over frames (and people).

    body_pose (F, 69) or (P, F, 69) axis-angle -> {"l2_pose": scalar, "angle_prior": scalar}.
    """
    flat = body_pose.reshape(-1, body_pose.shape[-1])
    return {"l2_pose": l2_pose_prior(flat).mean(), "angle_prior": angle_prior(flat).mean()}


def smoothness_loss(values: torch.Tensor, order: int = 1) -> torch.Tensor:
    """Mean squared finite difference over frames.

    values (F, D...) for one person, or (P, F, D...) for several (the per-person means are
    averaged) -> scalar.
    """
    if values.dim() >= 3:
        per_person = values.shape[0]
        return temporal_smoothness(values.transpose(0, 1), order=order) / per_person
    return temporal_smoothness(values, order=order)


# --------------------------------------------------------------------------- phase bundles


def avatar_losses(
    rgb: torch.Tensor,
    target_rgb: torch.Tensor,
    accumulation: torch.Tensor,
    fg_mask: torch.Tensor,
    person_accumulation: torch.Tensor | None = None,
    sample_weights: torch.Tensor | None = None,
    density_outside: torch.Tensor | None = None,
    weights: AvatarLossWeights | None = None,
) -> dict[str, torch.Tensor]:
    """Weighted avatar-phase losses.

    Args:
        rgb, target_rgb: (R, 3); the target is background colour outside the mask.
        accumulation: (R,) rendered opacity; fg_mask: (R,) in {0, 1} (or soft).
        person_accumulation: (R, L) for the layer entropy (skipped when None).
        sample_weights: (R, N) sorted composite weights for the weight hard-surface term.
        density_outside: (M,) densities at points the occupancy grid marks empty.
        weights: :class:`AvatarLossWeights` (defaults when None).

    Returns {"rgb_loss", "alpha_loss", "layer_entropy_loss", "hard_surface_alpha_loss",
    "hard_surface_weights_loss", "density_outside_loss"}, each
    already weighted, the ones without inputs or with weight 0 left out.
    """
    w = weights or AvatarLossWeights()
    out: dict[str, torch.Tensor] = {}
    if w.rgb:
        out["rgb_loss"] = w.rgb * rgb_huber_loss(rgb, target_rgb, w.huber_delta)
    if w.alpha:
        out["alpha_loss"] = w.alpha * alpha_mask_loss(accumulation, fg_mask)
    if w.layer_entropy and person_accumulation is not None:
        out["layer_entropy_loss"] = w.layer_entropy * layer_entropy_loss(person_accumulation)
    if w.hard_surface_alpha:
        out["hard_surface_alpha_loss"] = w.hard_surface_alpha * hard_surface_loss(accumulation)
    if w.hard_surface_weights and sample_weights is not None:
        out["hard_surface_weights_loss"] = w.hard_surface_weights * hard_surface_loss(sample_weights)
    if w.density_outside and density_outside is not None:
        out["density_outside_loss"] = w.density_outside * density_regulariser(density_outside)
    return out


def pose_losses(
    rgb: torch.Tensor,
    target_rgb: torch.Tensor,
    accumulation: torch.Tensor,
    fg_mask: torch.Tensor,
    body_pose: torch.Tensor | None = None,
    transl: torch.Tensor | None = None,
    smooth_pose: torch.Tensor | None = None,
    collision_opacities: torch.Tensor | None = None,
    weights: PoseLossWeights | None = None,
    body_pose_init: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Weighted pose-phase losses.

    Args:
        rgb, target_rgb: (R, 3); accumulation, fg_mask: (R,).
        body_pose: (F, 69) or (P, F, 69) current body poses, for the L2 and angle priors.
        transl: (F, 3) or (P, F, 3) translations over the whole sequence, for smoothness.
        smooth_pose: joint angles for smoothness, (F, D) or (P, F, D); defaults to body_pose
            (pass global orientation concatenated with it to smooth that too).
        collision_opacities: (..., L) per-person opacities at sample points, see
            :func:`collision_loss`.
        weights: :class:`PoseLossWeights` (defaults when None).
        body_pose_init: the initial body poses, shaped like body_pose, for the correction prior.

    Returns {"rgb_loss", "mask_loss", "l2_pose_loss", "angle_prior_loss", "correction_loss",
    "collision_loss", "smoothness_loss"}, each weighted, the ones without inputs or with
    weight 0 left out.
    """
    w = weights or PoseLossWeights()
    out: dict[str, torch.Tensor] = {}
    if w.rgb:
        out["rgb_loss"] = w.rgb * rgb_huber_loss(rgb, target_rgb, w.huber_delta)
    if w.mask:
        out["mask_loss"] = w.mask * mask_bce_loss(accumulation, fg_mask)
    if body_pose is not None and (w.l2_pose or w.angle_prior):
        priors = pose_prior_losses(body_pose)
        if w.l2_pose:
            out["l2_pose_loss"] = w.l2_pose * priors["l2_pose"]
        if w.angle_prior:
            out["angle_prior_loss"] = w.angle_prior * priors["angle_prior"]
    if w.correction and body_pose is not None and body_pose_init is not None:
        flat, flat_init = body_pose.reshape(-1, body_pose.shape[-1]), body_pose_init.reshape(-1, body_pose.shape[-1])
        out["correction_loss"] = w.correction * correction_prior(flat, flat_init, w.correction_joints).mean()
    if w.collision and collision_opacities is not None:
        out["collision_loss"] = w.collision * collision_loss(collision_opacities)
    if smooth_pose is None:
        smooth_pose = body_pose
    terms = [(w.smoothness, transl), (w.smoothness_pose, smooth_pose)]
    terms = [(weight, x) for weight, x in terms if weight and x is not None]
    if terms:
        total = sum(weight * smoothness_loss(x, 1) for weight, x in terms)
        if w.smoothness_acceleration:
            total = total + sum(w.smoothness_acceleration * smoothness_loss(x, 2) for _, x in terms)
        out["smoothness_loss"] = total
    return out
