"""Per-frame 2D detections of every view to tracked, triangulated people.

For each frame: group the views' detections by person (``association.associate_views``),
triangulate each group of two or more views robustly (``triangulation.triangulate``), drop the
people outside the capture (``volume.in_capture``) and those with too few joints; then track
them over the frames (``association.track``) and keep the ``num_people`` seen in most frames.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from collections.abc import Sequence

import numpy as np

from avatarpose_ns.io.cameras import CameraCalib
from avatarpose_ns.prepare.association import associate_views, track
from avatarpose_ns.prepare.triangulation import triangulate
from avatarpose_ns.prepare.volume import in_capture

LOG = logging.getLogger("avatarpose_ns.prepare")


@dataclass
class ReconstructConfig:
    epipolar_threshold: float = 0.015  # cross-view match limit, as a fraction of the image diagonal
    reprojection_threshold: float = 0.01  # triangulation inlier limit, fraction of the image diagonal
    min_confidence: float = 0.3  # keypoints below it are not detections
    min_keypoints: int = 8  # triangulated keypoints a person needs in a frame
    max_track_distance_m: float = 0.5  # frame-to-frame match limit (mean joint distance)
    max_gap: int = 5  # frames a track may miss and still continue
    volume: tuple[float, float, float, float, float, float] | None = None  # xmin xmax ymin ymax zmin zmax
    min_views: int | None = None  # views whose image the person's centre must be in (None: all but one, >= 2)
    max_body_radius_m: float = 1.2  # a keypoint farther from the person's median point is a wrong triangulation


@dataclass
class FramePerson:
    points: np.ndarray  # (K, 3), NaN where not triangulated
    confidence: np.ndarray  # (K,)
    views: dict[int, int]  # camera index -> detection index in that view
    errors: np.ndarray  # (C, K) reprojection errors in pixels, NaN where not detected


@dataclass
class Reconstruction:
    frames: list[int]
    people: dict[int, dict[int, FramePerson]] = field(default_factory=dict)  # track id -> frame -> person
    detections_per_frame: list[list[int]] = field(default_factory=list)  # people detected per view and frame
    dropped: list[str] = field(default_factory=list)  # what was left out, for the summary


def _diagonal(cams: Sequence[CameraCalib]) -> float:
    return float(np.mean([np.hypot(c.width, c.height) for c in cams]))


def drop_far_keypoints(points: np.ndarray, confidence: np.ndarray, inliers: np.ndarray, radius_m: float) -> None:
    """In place: keypoints farther than ``radius_m`` from the median keypoint become missing. Seen by
    two views only, a wrong keypoint cannot be outvoted and can land metres away along a ray."""
    finite = np.isfinite(points).all(-1)
    if not finite.any():
        return
    far = finite & (np.linalg.norm(points - np.median(points[finite], axis=0), axis=-1) > radius_m)
    points[far], confidence[far], inliers[:, far] = np.nan, 0.0, False


def reconstruct_frame(detections: Sequence[np.ndarray], cams: Sequence[CameraCalib],
                      config: ReconstructConfig) -> tuple[list[FramePerson], list[str]]:
    """The people of one frame; detections: per camera (n_c, K, 3)."""
    diagonal = _diagonal(cams)
    groups = associate_views(detections, cams, config.epipolar_threshold * diagonal, config.min_confidence)
    num_keypoints = next((d.shape[1] for d in detections if len(d)), 0)
    people, dropped = [], []
    for group in groups:
        if len(group) < 2:
            dropped.append(f"seen in one view only (camera {cams[next(iter(group))].name})")
            continue
        stacked = np.zeros((len(cams), num_keypoints, 3))
        for c, d in group.items():
            stacked[c] = detections[c][d]
        tri = triangulate(stacked, cams, config.reprojection_threshold * diagonal, config.min_confidence)
        drop_far_keypoints(tri.points, tri.confidence, tri.inliers, config.max_body_radius_m)
        if np.isfinite(tri.points).all(-1).sum() < config.min_keypoints:
            dropped.append(f"fewer than {config.min_keypoints} keypoints triangulated")
            continue
        if not in_capture(tri.points, cams, config.volume, config.min_views):
            dropped.append("outside the capture volume" if config.volume else "outside the common field of view")
            continue
        # a view none of whose keypoints is an inlier was a wrong match: it no longer belongs to this person
        views = {c: d for c, d in group.items() if tri.inliers[c].any()}
        people.append(FramePerson(tri.points, tri.confidence, views, tri.errors))
    return people, dropped


def reconstruct_sequence(detections: Sequence[Sequence[np.ndarray]], cams: Sequence[CameraCalib],
                         frames: Sequence[int], config: ReconstructConfig | None = None,
                         num_people: int | None = None) -> Reconstruction:
    """detections[f][c]: (n, K, 3) keypoints of frame ``frames[f]`` in camera ``c``."""
    config = config or ReconstructConfig()
    per_frame, result = [], Reconstruction(list(frames))
    for f, frame_dets in enumerate(detections):
        people, dropped = reconstruct_frame(frame_dets, cams, config)
        per_frame.append(people)
        result.detections_per_frame.append([len(d) for d in frame_dets])
        result.dropped += [f"frame {frames[f]}: a detection group {reason}" for reason in dropped]
    ids = track([[p.points for p in people] for people in per_frame], config.max_track_distance_m, config.max_gap)
    tracks: dict[int, dict[int, FramePerson]] = {}
    for f, (people, frame_ids) in enumerate(zip(per_frame, ids)):
        for person, tid in zip(people, frame_ids):
            tracks.setdefault(tid, {})[frames[f]] = person
    order = sorted(tracks, key=lambda t: (-len(tracks[t]), t))
    if num_people is not None and len(order) > num_people:
        for t in order[num_people:]:
            result.dropped.append(f"track seen in {len(tracks[t])} of {len(frames)} frames (beyond --num-people "
                                  f"{num_people})")
        order = order[:num_people]
    # ids 0, 1, ... in order of first appearance, so a re-run on more frames keeps them where it can
    order = sorted(order, key=lambda t: (min(tracks[t]), t))
    result.people = {new: tracks[old] for new, old in enumerate(order)}
    return result
