"""Detector skeletons (BlazePose 33, COCO 17) mapped onto the 24 SMPL joints where they exist.

A SMPL joint is one keypoint or the mean of a few (the pelvis between the hips, the neck between
the shoulders, the head between the ears, each hand between its fingers). The detectors' hips,
feet and these means sit a few centimetres from SMPL's joints, so they get a lower confidence
(``reliability``); the spine and collar joints have no counterpart and stay at confidence 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avatarpose_ns.body.skeleton import JOINT_INDEX, NUM_JOINTS


@dataclass(frozen=True)
class Skeleton:
    name: str
    num_keypoints: int
    for_smpl: dict[int, tuple[tuple[int, ...], float]]  # SMPL joint -> (source keypoints, reliability)
    bones: tuple[tuple[int, int], ...]  # for drawing


def _smpl(mapping: dict[str, tuple[tuple[int, ...], float]]) -> dict[int, tuple[tuple[int, ...], float]]:
    return {JOINT_INDEX[name]: value for name, value in mapping.items()}


BLAZEPOSE = Skeleton("blazepose", 33, _smpl({
    "pelvis": ((23, 24), 0.5), "left_hip": ((23,), 0.7), "right_hip": ((24,), 0.7),
    "left_knee": ((25,), 1.0), "right_knee": ((26,), 1.0), "left_ankle": ((27,), 1.0), "right_ankle": ((28,), 1.0),
    "left_foot": ((31,), 0.5), "right_foot": ((32,), 0.5), "neck": ((11, 12), 0.5), "head": ((7, 8), 0.5),
    "left_shoulder": ((11,), 1.0), "right_shoulder": ((12,), 1.0), "left_elbow": ((13,), 1.0),
    "right_elbow": ((14,), 1.0), "left_wrist": ((15,), 1.0), "right_wrist": ((16,), 1.0),
    "left_hand": ((17, 19), 0.5), "right_hand": ((18, 20), 0.5),
}), bones=((11, 12), (11, 13), (13, 15), (12, 14), (14, 16), (11, 23), (12, 24), (23, 24), (23, 25), (25, 27),
           (24, 26), (26, 28), (27, 31), (28, 32), (0, 7), (0, 8)))

COCO = Skeleton("coco", 17, _smpl({
    "pelvis": ((11, 12), 0.5), "left_hip": ((11,), 0.7), "right_hip": ((12,), 0.7),
    "left_knee": ((13,), 1.0), "right_knee": ((14,), 1.0), "left_ankle": ((15,), 1.0), "right_ankle": ((16,), 1.0),
    "neck": ((5, 6), 0.5), "head": ((3, 4), 0.5), "left_shoulder": ((5,), 1.0), "right_shoulder": ((6,), 1.0),
    "left_elbow": ((7,), 1.0), "right_elbow": ((8,), 1.0), "left_wrist": ((9,), 1.0), "right_wrist": ((10,), 1.0),
}), bones=((5, 6), (5, 7), (7, 9), (6, 8), (8, 10), (5, 11), (6, 12), (11, 12), (11, 13), (13, 15), (12, 14),
           (14, 16), (0, 3), (0, 4)))

SKELETONS = {s.name: s for s in (BLAZEPOSE, COCO)}

SMPL_BONES = ((0, 1), (0, 2), (1, 4), (2, 5), (4, 7), (5, 8), (7, 10), (8, 11), (0, 12), (12, 15), (12, 16),
              (12, 17), (16, 18), (17, 19), (18, 20), (19, 21), (20, 22), (21, 23))


def to_smpl(keypoints: np.ndarray, skeleton: Skeleton) -> np.ndarray:
    """(..., K, D + 1) keypoints with a last confidence column -> (..., 24, D + 1) SMPL joints.

    Works for 2D pixels and 3D points alike; a mean joint's confidence is the smallest of its
    sources' times its reliability, and a joint with any undetected source has confidence 0.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if keypoints.shape[-2] != skeleton.num_keypoints:
        raise ValueError(f"{skeleton.name} keypoints must have {skeleton.num_keypoints} rows, got {keypoints.shape}")
    out = np.zeros((*keypoints.shape[:-2], NUM_JOINTS, keypoints.shape[-1]))
    for joint, (sources, reliability) in skeleton.for_smpl.items():
        picked = keypoints[..., list(sources), :]
        conf = picked[..., -1].min(axis=-1)
        out[..., joint, :-1] = np.nan_to_num(picked[..., :-1].mean(axis=-2))
        out[..., joint, -1] = np.where(conf > 0, conf * reliability, 0.0)
    return out
