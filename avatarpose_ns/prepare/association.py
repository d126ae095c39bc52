"""Who is who: the same person's detections across views (per frame) and over time.

Across views: the cost of pairing two detections of different cameras is the median symmetric
epipolar distance (pixels) of the keypoints both detected. Cameras are taken in turn; each
camera's detections are matched to the groups built so far with the Hungarian method
(``scipy.optimize.linear_sum_assignment``) on the mean cost to a group's members, and a
detection matched nowhere within ``threshold_px`` starts a group of its own.

Over time: people triangulated in consecutive frames are matched with the Hungarian method on
their mean 3D joint distance; a person matched to no track within ``max_distance_m`` starts one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from avatarpose_ns.io.cameras import CameraCalib, undistort_pixels

MIN_COMMON_KEYPOINTS = 3
NO_MATCH = 1e9


def _skew(t: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -t[2], t[1]], [t[2], 0.0, -t[0]], [-t[1], t[0], 0.0]])


def essential(cam_a: CameraCalib, cam_b: CameraCalib) -> np.ndarray:
    """E with x_b^T E x_a = 0 for normalised coordinates of one world point in cameras a and b."""
    R = cam_b.R @ cam_a.R.T
    t = cam_b.T - R @ cam_a.T
    return _skew(t) @ R


def _line_distance(lines: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Distance of (N, 2) points to (N, 3) lines a x + b y + c = 0."""
    return np.abs((lines[:, :2] * points).sum(-1) + lines[:, 2]) / np.linalg.norm(lines[:, :2], axis=-1).clip(1e-12)


def epipolar_cost(kp_a: np.ndarray, cam_a: CameraCalib, kp_b: np.ndarray, cam_b: CameraCalib,
                  min_confidence: float = 0.2) -> float:
    """Median symmetric epipolar distance in pixels between two detections (K, 3): a few wrong
    keypoints (a swapped limb) do not split a person; NO_MATCH when they share fewer than
    MIN_COMMON_KEYPOINTS confident keypoints."""
    common = (kp_a[:, 2] > min_confidence) & (kp_b[:, 2] > min_confidence)
    if common.sum() < MIN_COMMON_KEYPOINTS:
        return NO_MATCH
    xa = undistort_pixels(kp_a[common, :2], cam_a)
    xb = undistort_pixels(kp_b[common, :2], cam_b)
    ha, hb = np.c_[xa, np.ones(len(xa))], np.c_[xb, np.ones(len(xb))]
    E = essential(cam_a, cam_b)
    d_b = _line_distance(ha @ E.T, xb) * 0.5 * (cam_b.K[0, 0] + cam_b.K[1, 1])
    d_a = _line_distance(hb @ E, xa) * 0.5 * (cam_a.K[0, 0] + cam_a.K[1, 1])
    return float(np.median(0.5 * (d_a + d_b)))


def associate_views(detections: Sequence[np.ndarray], cams: Sequence[CameraCalib], threshold_px: float,
                    min_confidence: float = 0.2) -> list[dict[int, int]]:
    """Group one frame's detections by person.

    detections: per camera an (n_c, K, 3) array of keypoints (pixels, confidence).
    Returns groups as {camera index: detection index}, largest first; single-view groups included.
    """
    groups: list[dict[int, int]] = []
    for c, dets in enumerate(detections):
        if len(dets) == 0:
            continue
        if groups:
            cost = np.full((len(groups), len(dets)), NO_MATCH)
            for g, group in enumerate(groups):
                for d in range(len(dets)):
                    costs = [epipolar_cost(detections[gc][gd], cams[gc], dets[d], cams[c], min_confidence)
                             for gc, gd in group.items()]
                    cost[g, d] = float(np.mean(costs))
            rows, cols = linear_sum_assignment(np.minimum(cost, NO_MATCH))
            matched = set()
            for g, d in zip(rows, cols):
                if cost[g, d] < threshold_px:
                    groups[g][c] = int(d)
                    matched.add(int(d))
            groups += [{c: d} for d in range(len(dets)) if d not in matched]
        else:
            groups = [{c: d} for d in range(len(dets))]
    return sorted(groups, key=len, reverse=True)


def mean_joint_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean distance of the joints both (K, 3) point sets have (finite); inf when none."""
    both = np.isfinite(a).all(-1) & np.isfinite(b).all(-1)
    return float(np.linalg.norm(a[both] - b[both], axis=-1).mean()) if both.any() else np.inf


def track(people_per_frame: Sequence[Sequence[np.ndarray]], max_distance_m: float = 0.5,
          max_gap: int = 5) -> list[list[int]]:
    """Track ids of each frame's people. people_per_frame[f][p]: (K, 3) points (NaN: missing).

    A track is compared with its last position, for up to ``max_gap`` frames without a match.
    Returns, per frame, the track id of each person (ids 0, 1, ... in order of appearance).
    """
    last: dict[int, tuple[int, np.ndarray]] = {}  # track -> (frame index, points)
    ids: list[list[int]] = []
    next_id = 0
    for f, people in enumerate(people_per_frame):
        alive = [t for t, (seen, _) in last.items() if f - seen <= max_gap]
        frame_ids = [-1] * len(people)
        if alive and len(people):
            cost = np.array([[mean_joint_distance(last[t][1], p) for p in people] for t in alive])
            rows, cols = linear_sum_assignment(np.where(np.isfinite(cost), cost, NO_MATCH))
            for r, c in zip(rows, cols):
                if cost[r, c] < max_distance_m:
                    frame_ids[c] = alive[r]
        for p, points in enumerate(people):
            if frame_ids[p] < 0:
                frame_ids[p] = next_id
                next_id += 1
            last[frame_ids[p]] = (f, points)
        ids.append(frame_ids)
    return ids
