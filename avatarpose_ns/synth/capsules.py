"""A capsule proxy of the SMPL body, for cheap, differentiable contact and collision terms.

Each capsule is a segment between two joints with a radius. Points sampled along
the segments of one person are tested against the segments of another; the
overlap depth relu(r_a + r_b - distance) is what the motion solver pushes to zero.
"""

from __future__ import annotations

import torch

# (joint a, joint b, radius in metres), slightly thinner than the mesh so touching is allowed;
# hand capsules run past the knuckle joint to the fingertips
BODY_CAPSULES: tuple[tuple[int, int, float], ...] = (
    (0, 3, 0.13), (3, 6, 0.13), (6, 9, 0.14), (9, 12, 0.08),   # torso and neck
    (12, 15, 0.10),                                            # head
    (13, 16, 0.06), (14, 17, 0.06),                            # shoulders
    (16, 18, 0.045), (17, 19, 0.045), (18, 20, 0.035), (19, 21, 0.035),  # arms
    (20, 22, 0.03), (21, 23, 0.03),                            # hands (see _FINGERTIP_REACH)
    (1, 4, 0.07), (2, 5, 0.07), (4, 7, 0.045), (5, 8, 0.045),  # legs
    (7, 10, 0.035), (8, 11, 0.035),                            # feet
)
_SAMPLES_PER_CAPSULE = 6
_FINGERTIP_REACH = 1.8  # fingertips lie this many wrist-to-knuckle lengths from the wrist


HAND_JOINTS = (20, 21, 22, 23)


def capsule_points(joints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Points along every capsule axis, their radii and whether they lie on a hand.

    (B, 24, 3) -> (B, N, 3), (N,), (N,) bool
    """
    a = torch.tensor([c[0] for c in BODY_CAPSULES], device=joints.device)
    b = torch.tensor([c[1] for c in BODY_CAPSULES], device=joints.device)
    radius = torch.tensor([c[2] for c in BODY_CAPSULES], dtype=joints.dtype, device=joints.device)
    on_hand = torch.tensor([c[0] in HAND_JOINTS for c in BODY_CAPSULES], device=joints.device)
    reach = torch.where(on_hand, _FINGERTIP_REACH, 1.0).to(joints.dtype)
    s = torch.linspace(0.0, 1.0, _SAMPLES_PER_CAPSULE, dtype=joints.dtype, device=joints.device)
    start = joints[:, a]  # (B, C, 3)
    end = start + (joints[:, b] - start) * reach[None, :, None]
    points = start[:, :, None] + (end - start)[:, :, None] * s[None, None, :, None]  # (B, C, S, 3)
    return (points.flatten(1, 2), radius.repeat_interleave(_SAMPLES_PER_CAPSULE),
            on_hand.repeat_interleave(_SAMPLES_PER_CAPSULE))


def capsule_overlap(joints_a: torch.Tensor, joints_b: torch.Tensor, hands_may_touch: bool = False) -> torch.Tensor:
    """Overlap depth between the capsule proxies of two people, per point pair. (B, 24, 3) x2 -> (B, N, N)

    With `hands_may_touch`, hand-to-hand overlap is not counted: that is how people hold hands.
    """
    points_a, radius, on_hand = capsule_points(joints_a)
    points_b, _, _ = capsule_points(joints_b)
    distance = torch.cdist(points_a, points_b)
    overlap = torch.relu(radius[None, :, None] + radius[None, None, :] - distance)
    if hands_may_touch:
        overlap = overlap * ~(on_hand[:, None] & on_hand[None, :])
    return overlap
