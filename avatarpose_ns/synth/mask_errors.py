"""Segmenter-like errors on the exact instance masks of a synthetic sequence.

Real instance segmenters (SAM, Mask R-CNN, ...) do not give pixel-perfect masks: their boundaries
wobble smoothly and sit a little inside or outside the true edge (per view, through blur and
exposure), labels bleed between people who touch, thin parts (hands, forearms) go missing, stray
blobs appear and, now and then, two people's identities are exchanged in one view. This module
applies such errors to an exact person-index map (-1 background, else the person), keeping one
label per pixel, so the per-person masks always partition the union mask. Only the written masks
change; the images stay exact. Distances are in pixels at 256 px and scale with the resolution.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy import ndimage
from scipy.stats import norm

from avatarpose_ns.io.cameras import CameraCalib, project_points

MASK_ERROR_LEVELS = ("none", "mild", "realistic", "harsh")
REFERENCE_SIZE_PX = 256.0
# SMPL joints of each forearm: elbow, wrist, hand
FOREARMS = ((18, 20, 22), (19, 21, 23))


@dataclass(frozen=True)
class MaskErrorConfig:
    """Error magnitudes at 256 px (distances in pixels) and how often the discrete errors occur."""

    wobble_px: float = 0.0  # std of the smooth boundary displacement field
    wobble_cell_px: float = 24.0  # correlation length of that field
    view_bias_px: float = 0.0  # std of each view's global dilation (+) / erosion (-)
    bleed_px: float = 0.0  # width of the band where one person's pixels may go to a touching person
    bleed_share: float = 0.0  # share of that band (in smooth patches) that is relabelled
    miss_prob: float = 0.0  # per visible hand and frame: the hand and part of the forearm are missed
    blob_rate: float = 0.0  # expected spurious blobs per view and frame
    blob_radius_px: tuple[float, float] = (2.0, 6.0)
    swap_prob: float = 0.0  # per view and frame: two people's labels exchanged

    @property
    def active(self) -> bool:
        return any((self.wobble_px, self.view_bias_px, self.bleed_share, self.miss_prob, self.blob_rate,
                    self.swap_prob))


MASK_ERROR_PRESETS: dict[str, MaskErrorConfig] = {
    # calibrated on the demo preset (people about 100 px tall at 256 px, where a 1 px boundary shift
    # already changes about 10 % of the union's pixels): "realistic" changes about 8 % of them
    "none": MaskErrorConfig(),
    "mild": MaskErrorConfig(wobble_px=0.25, view_bias_px=0.15, bleed_px=2.0, bleed_share=0.1, miss_prob=0.05,
                            blob_rate=0.03, swap_prob=0.0),
    "realistic": MaskErrorConfig(wobble_px=0.4, view_bias_px=0.3, bleed_px=4.0, bleed_share=0.2,
                                 miss_prob=0.12, blob_rate=0.1, swap_prob=0.02),
    "harsh": MaskErrorConfig(wobble_px=1.0, view_bias_px=0.8, bleed_px=6.0, bleed_share=0.35, miss_prob=0.35,
                             blob_rate=0.6, blob_radius_px=(3.0, 10.0), swap_prob=0.08),
}


def mask_error_config(level: str) -> MaskErrorConfig:
    if level not in MASK_ERROR_PRESETS:
        raise ValueError(f"mask errors must be one of {MASK_ERROR_LEVELS}, got '{level}'")
    return MASK_ERROR_PRESETS[level]


@dataclass
class Forearm:
    """One person's forearm in a view: hand tip and elbow in pixels, the arm's radius in pixels."""

    person: int
    tip: np.ndarray  # (2,)
    elbow: np.ndarray  # (2,)
    radius_px: float


def forearms_in_view(joints: np.ndarray, cam: CameraCalib, arm_radius_m: float = 0.06) -> list[Forearm]:
    """The forearms of all people (joints (K, 24, 3), one frame) projected into `cam`; the tip lies
    half a hand beyond the hand joint (the fingers)."""
    arms = []
    for person, person_joints in enumerate(joints):
        for elbow, wrist, hand in FOREARMS:
            tip = person_joints[hand] + 0.6 * (person_joints[hand] - person_joints[wrist])
            points = np.stack([tip, person_joints[elbow]])
            depth = (points @ cam.R.T + cam.T)[:, 2]
            if np.any(depth <= 0.05):
                continue
            uv = project_points(points, cam)
            arms.append(Forearm(person, uv[0], uv[1], float(cam.K[0, 0] * arm_radius_m / depth.mean())))
    return arms


@dataclass
class MaskErrorStats:
    """Running totals over a sequence, summarised for meta.json."""

    union_pixels: int = 0
    changed_pixels: int = 0
    bleed_pixels: int = 0
    ious: list[float] = field(default_factory=list)
    swaps: int = 0
    blobs: int = 0
    missed_parts: int = 0
    views_frames: int = 0

    def add(self, exact: np.ndarray, noisy: np.ndarray, num_people: int) -> None:
        self.views_frames += 1
        self.union_pixels += int((exact >= 0).sum())
        self.changed_pixels += int((exact != noisy).sum())
        for person in range(num_people):
            a, b = exact == person, noisy == person
            if a.any():
                self.ious.append(float((a & b).sum() / (a | b).sum()))

    def summary(self) -> dict:
        ious = np.asarray(self.ious) if self.ious else np.ones(1)
        return {
            "changed_share_of_union": self.changed_pixels / max(self.union_pixels, 1),
            "bleed_share_of_union": self.bleed_pixels / max(self.union_pixels, 1),
            "person_iou_mean": float(ious.mean()), "person_iou_min": float(ious.min()),
            "person_iou_p05": float(np.percentile(ious, 5)),
            "label_swaps": self.swaps, "blobs": self.blobs, "missed_parts": self.missed_parts,
            "views_x_frames": self.views_frames,
        }


def smooth_noise(shape: tuple[int, int], cell_px: float, rng: np.random.Generator) -> np.ndarray:
    """A zero-mean, unit-std noise field varying over about `cell_px` pixels (bicubic upsampling of
    Gaussian noise on a coarse grid)."""
    height, width = shape
    grid = (max(2, int(np.ceil(height / cell_px)) + 3), max(2, int(np.ceil(width / cell_px)) + 3))
    coarse = rng.standard_normal(grid).astype(np.float32)
    fine = cv2.resize(coarse, (width + 2 * int(cell_px), height + 2 * int(cell_px)), interpolation=cv2.INTER_CUBIC)
    fine = fine[int(cell_px):int(cell_px) + height, int(cell_px):int(cell_px) + width]
    return (fine - fine.mean()) / max(float(fine.std()), 1e-6)


def signed_distance(mask: np.ndarray) -> np.ndarray:
    """Pixels' signed distance to the mask's boundary (positive inside), the boundary halfway
    between pixels: thresholding at 0 gives the mask back exactly."""
    m = mask.astype(np.uint8)
    inside = cv2.distanceTransform(m, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    outside = cv2.distanceTransform(1 - m, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return np.where(mask, inside - 0.5, 0.5 - outside).astype(np.float32)


class MaskCorruptor:
    """Applies one level's errors view by view, frame by frame; its own RNG keeps the rest of the
    sequence (motion, images, keypoints) as it is without errors."""

    def __init__(self, config: MaskErrorConfig, num_views: int, num_people: int, resolution: tuple[int, int],
                 rng: np.random.Generator) -> None:
        self.config, self.num_people, self.rng = config, num_people, rng
        self.scale = min(resolution) / REFERENCE_SIZE_PX
        self.view_bias = rng.normal(0.0, config.view_bias_px, num_views) * self.scale
        self.stats = MaskErrorStats()

    def __call__(self, labels: np.ndarray, view: int, forearms: list[Forearm] = ()) -> np.ndarray:
        exact = np.asarray(labels)
        out = exact.copy()
        if self.config.active:
            out = self._boundaries(out, view)
            out = self._bleed(out)
            out = self._missed_parts(out, forearms)
            out = self._blobs(out)
            out = self._swap(out)
        self.stats.add(exact, out, self.num_people)
        return out

    def _boundaries(self, labels: np.ndarray, view: int) -> np.ndarray:
        """Every person's boundary moved by its own smooth field plus the view's bias: each pixel
        goes to the person whose displaced boundary it lies inside most."""
        c, s = self.config, self.scale
        if c.wobble_px <= 0 and c.view_bias_px <= 0:
            return labels
        best = np.zeros(labels.shape, np.float32)
        out = np.full(labels.shape, -1, labels.dtype)
        for person in range(self.num_people):
            mask = labels == person
            if not mask.any():
                continue
            offset = self.view_bias[view] + c.wobble_px * s * smooth_noise(labels.shape, c.wobble_cell_px * s, self.rng)
            level = signed_distance(mask) + offset
            take = level > best
            out[take], best[take] = person, level[take]
        return out

    def _bleed(self, labels: np.ndarray) -> np.ndarray:
        """Smooth patches of a band along a contact between two people go to the other person."""
        c, s = self.config, self.scale
        if c.bleed_share <= 0 or self.num_people < 2:
            return labels
        out = labels.copy()
        threshold = float(norm.ppf(1.0 - c.bleed_share))
        for source in range(self.num_people):
            for target in range(self.num_people):
                src, tgt = labels == source, labels == target
                if source == target or not src.any() or not tgt.any():
                    continue
                near = cv2.distanceTransform((~tgt).astype(np.uint8), cv2.DIST_L2, 3) <= c.bleed_px * s
                band = src & near
                if not band.any():
                    continue
                patches = smooth_noise(labels.shape, 12.0 * s, self.rng) > threshold
                moved = band & patches & (out == source)
                out[moved] = target
                self.stats.bleed_pixels += int(moved.sum())
        return out

    def _missed_parts(self, labels: np.ndarray, forearms: list[Forearm]) -> np.ndarray:
        """A hand, with a random part of its forearm, dropped from its person's mask."""
        c = self.config
        if c.miss_prob <= 0:
            return labels
        out = labels.copy()
        height, width = labels.shape
        for arm in forearms:
            if self.rng.random() >= c.miss_prob:
                continue
            reach = self.rng.uniform(0.25, 0.8)
            start = arm.tip
            end = arm.tip + reach * (arm.elbow - arm.tip)
            cut = np.zeros((height, width), np.uint8)
            thickness = max(1, int(round(2 * arm.radius_px)))
            cv2.line(cut, tuple(int(round(v)) for v in start), tuple(int(round(v)) for v in end), 1, thickness)
            removed = (cut > 0) & (out == arm.person)
            if removed.sum() >= 4:
                out[removed] = -1
                self.stats.missed_parts += 1
        return out

    def _blobs(self, labels: np.ndarray) -> np.ndarray:
        """Spurious ellipses in the background near the people, given to the nearest person."""
        c, s = self.config, self.scale
        count = int(self.rng.poisson(c.blob_rate)) if c.blob_rate > 0 else 0
        if count == 0 or not (labels >= 0).any():
            return labels
        out = labels.copy()
        background = out < 0
        distance, (rows, cols) = ndimage.distance_transform_edt(background, return_indices=True)
        candidates = np.flatnonzero(background.ravel() & (distance.ravel() <= 12.0 * s))
        for _ in range(count):
            if candidates.size == 0:
                break
            centre = int(candidates[self.rng.integers(candidates.size)])
            y, x = divmod(centre, labels.shape[1])
            axes = tuple(max(1, int(round(self.rng.uniform(*c.blob_radius_px) * s))) for _ in range(2))
            blob = np.zeros(labels.shape, np.uint8)
            cv2.ellipse(blob, (x, y), axes, float(self.rng.uniform(0, 180)), 0, 360, 1, -1)
            owner = labels[rows[y, x], cols[y, x]]
            out[(blob > 0) & (out < 0)] = owner
            self.stats.blobs += 1
        return out

    def _swap(self, labels: np.ndarray) -> np.ndarray:
        """Two visible people's labels exchanged in this view and frame."""
        visible = [p for p in range(self.num_people) if (labels == p).any()]
        if self.config.swap_prob <= 0 or len(visible) < 2 or self.rng.random() >= self.config.swap_prob:
            return labels
        a, b = self.rng.choice(visible, size=2, replace=False)
        out = labels.copy()
        out[labels == a], out[labels == b] = b, a
        self.stats.swaps += 1
        return out
