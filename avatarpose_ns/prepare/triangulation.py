"""Robust multi-view triangulation: confidence-weighted DLT with exhaustive RANSAC over view pairs.

With the few cameras of a capture (2 to ~10) every pair of views can be tried: each pair's point
is scored by how many other views reproject within ``threshold_px``, the best pair's inliers
are re-triangulated together (weighted by confidence) and the inlier test repeated once. One
wrong view (a swapped limb, another person's keypoint) is then left out instead of dragging the
point, as long as two views agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from collections.abc import Sequence

import numpy as np

from avatarpose_ns.io.cameras import CameraCalib, project_points, undistort_pixels


@dataclass
class Triangulated:
    points: np.ndarray  # (K, 3) world metres, NaN where fewer than two views agree
    confidence: np.ndarray  # (K,) mean detection confidence of the inlier views, 0 where not triangulated
    inliers: np.ndarray  # (C, K) bool
    errors: np.ndarray  # (C, K) reprojection error in pixels of every detected view, NaN where not detected


def _dlt(xy: np.ndarray, Rt: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Batched weighted DLT. xy (..., V, 2) normalised coordinates, Rt (..., V, 3, 4), weights (..., V).
    Returns (..., 3); each view's two rows are scaled to unit norm, then by its weight."""
    rows = np.concatenate([xy[..., 0:1, None] * Rt[..., 2:3, :] - Rt[..., 0:1, :],
                           xy[..., 1:2, None] * Rt[..., 2:3, :] - Rt[..., 1:2, :]], axis=-2)  # (..., V, 2, 4)
    rows = rows / np.linalg.norm(rows, axis=-1, keepdims=True).clip(1e-12)
    rows = rows * weights[..., None, None]
    A = rows.reshape(*rows.shape[:-3], -1, 4)
    _, _, vt = np.linalg.svd(A)
    X = vt[..., -1, :]
    w = X[..., 3:4]
    return np.where(np.abs(w) > 1e-12, X[..., :3] / np.where(np.abs(w) > 1e-12, w, 1.0), np.nan)


def _reprojection(points: np.ndarray, cams: Sequence[CameraCalib], uv: np.ndarray) -> np.ndarray:
    """Pixel error (C, N) of (N, 3) points against (C, N, 2) detections; inf behind a camera or for NaN points."""
    errors = np.full(uv.shape[:2], np.inf)
    finite = np.isfinite(points).all(-1)
    for c, cam in enumerate(cams):
        if not finite.any():
            break
        pts = points[finite]
        pixels = project_points(pts, cam)
        e = np.linalg.norm(pixels - uv[c, finite], axis=-1)
        e[cam.world_to_camera(pts)[:, 2] <= 1e-3] = np.inf
        errors[c, finite] = e
    return errors


def triangulate(keypoints: np.ndarray, cams: Sequence[CameraCalib], threshold_px: float = 20.0,
                min_confidence: float = 0.2) -> Triangulated:
    """Triangulate K keypoints seen by C cameras. keypoints: (C, K, 3) distorted pixels and confidence."""
    keypoints = np.asarray(keypoints, dtype=np.float64)
    num_cams, num_points = keypoints.shape[:2]
    if num_cams != len(cams):
        raise ValueError(f"{len(cams)} cameras but keypoints for {num_cams} views")
    uv = keypoints[..., :2]
    conf = np.where(np.isfinite(uv).all(-1), keypoints[..., 2], 0.0)
    detected = conf > min_confidence
    xy = np.stack([undistort_pixels(np.nan_to_num(uv[c]), cam) for c, cam in enumerate(cams)])  # (C, K, 2)
    Rt = np.stack([np.concatenate([cam.R, cam.T[:, None]], axis=1) for cam in cams])  # (C, 3, 4)

    best_points = np.full((num_points, 3), np.nan)
    best_count = np.zeros(num_points, dtype=int)
    best_cost = np.full(num_points, np.inf)
    for i, j in combinations(range(num_cams), 2):
        pair = detected[i] & detected[j]
        if not pair.any():
            continue
        pts = _dlt(np.stack([xy[i, pair], xy[j, pair]], axis=1), Rt[[i, j]][None].repeat(pair.sum(), 0),
                   np.stack([conf[i, pair], conf[j, pair]], axis=1))
        err = _reprojection(pts, cams, uv[:, pair])
        inl = (err < threshold_px) & detected[:, pair]
        ok = inl[i] & inl[j]
        count = np.where(ok, inl.sum(0), 0)
        cost = np.where(inl, err, threshold_px).sum(0)
        idx = np.flatnonzero(pair)
        better = (count > best_count[idx]) | ((count == best_count[idx]) & (cost < best_cost[idx]) & (count > 0))
        best_points[idx[better]] = pts[better]
        best_count[idx[better]], best_cost[idx[better]] = count[better], cost[better]

    points = best_points
    inliers = np.zeros((num_cams, num_points), dtype=bool)
    for _ in range(2):  # refit on the inliers, then take the inliers of the refit
        errors = _reprojection(points, cams, uv)
        inliers = (errors < threshold_px) & detected & (best_count >= 2)[None]
        usable = inliers.sum(0) >= 2
        refit = np.full((num_points, 3), np.nan)
        if usable.any():
            weights = np.where(inliers[:, usable], conf[:, usable], 0.0).T  # (N, C)
            refit[usable] = _dlt(xy[:, usable].transpose(1, 0, 2), Rt[None].repeat(usable.sum(), 0), weights)
        points = refit
    errors = _reprojection(points, cams, uv)
    inliers = (errors < threshold_px) & detected & np.isfinite(points).all(-1)[None]
    points[inliers.sum(0) < 2] = np.nan
    inliers[:, inliers.sum(0) < 2] = False
    confidence = np.where(inliers.any(0), (conf * inliers).sum(0) / inliers.sum(0).clip(1), 0.0)
    errors = np.where(detected & np.isfinite(errors), errors, np.nan)
    return Triangulated(points, confidence, inliers, errors)
