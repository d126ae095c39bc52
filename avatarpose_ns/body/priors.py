"""Pose priors that need no learned model: L2, SMPLify's elbow/knee angle prior, joint velocity.

All functions take batched tensors: body_pose (F, 69) in axis-angle, joints (F, J, 3).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

# (index into body_pose, sign): SMPLify's bending prior penalises exp(sign * angle)^2,
# i.e. bending elbows and knees the wrong way. body_pose starts at joint 1, so joint j's
# axis c sits at 3 * (j - 1) + c: left elbow (18) y, right elbow (19) y, knees (4, 5) x.
ANGLE_PRIOR_TERMS = ((3 * 17 + 1, 1.0), (3 * 18 + 1, -1.0), (3 * 3 + 0, -1.0), (3 * 4 + 0, -1.0))


def angle_prior(body_pose: torch.Tensor) -> torch.Tensor:
    """SMPLify bending prior per frame. (F, 69) -> (F,)"""
    index = torch.tensor([i for i, _ in ANGLE_PRIOR_TERMS], device=body_pose.device)
    sign = torch.tensor([s for _, s in ANGLE_PRIOR_TERMS], device=body_pose.device, dtype=body_pose.dtype)
    return torch.exp(body_pose[:, index] * sign).pow(2).sum(dim=-1)


def l2_pose_prior(body_pose: torch.Tensor) -> torch.Tensor:
    """Squared norm of the body pose per frame. (F, 69) -> (F,)"""
    return body_pose.pow(2).sum(dim=-1)


def correction_prior(body_pose: torch.Tensor, body_pose_init: torch.Tensor, joints: Sequence[int]) -> torch.Tensor:
    """Squared size of the correction to the initialisation at some joints, per frame.

    A Gaussian prior centred on the initial pose, for joints the images constrain too weakly
    to correct (at low resolution, the wrists: their rotation places the hand joints).
    body_pose, body_pose_init (F, 69); joints: SMPL joint indices (1..23) -> (F,)
    """
    if any(not 1 <= int(j) <= 23 for j in joints):
        raise ValueError(f"correction prior joints {tuple(joints)}: SMPL body joints are 1..23")
    slots = torch.tensor([3 * (int(j) - 1) + c for j in joints for c in range(3)], device=body_pose.device)
    return (body_pose[:, slots] - body_pose_init[:, slots]).pow(2).sum(dim=-1)


def temporal_smoothness(values: torch.Tensor, order: int = 1) -> torch.Tensor:
    """Mean squared finite difference along dim 0 (order 1: velocity, 2: acceleration). (F, ...) -> scalar"""
    if values.shape[0] <= order:
        return values.new_zeros(())
    difference = values
    for _ in range(order):
        difference = difference[1:] - difference[:-1]
    return difference.pow(2).flatten(1).sum(dim=-1).mean()
