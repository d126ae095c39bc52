"""Each static camera's background plate, estimated from the frames where the masks leave it free.

Without a plate, the colour terms compare renders over a flat background colour with the image
blanked outside the mask: where the mask is wrong (an eroded edge, a missed hand, a label that
bleeds into the floor), the colour target is wrong in the same place, and the avatars and poses
learn the mask's error twice. A plate gives the colour terms evidence of their own: render over
the pixel's background colour and compare with the untouched image, and the person is wherever
the image differs from the empty scene, whatever the mask says.

A pixel's plate is the per-channel median of its colour over the frames where it lies farther
than ``margin_px`` from every mask (so a slightly eroded mask does not leak the person into the
plate). It is known where at least ``min_frames`` frames see it free (three, so that one frame's
missed part is outvoted) and those colours agree
(median absolute deviation at most ``max_spread``: a flickering screen, a moving shadow or
someone the masks missed stays unknown). Elsewhere the colour terms keep the masked target.

numpy + OpenCV. Shapes: F frames, H x W pixels.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

PLATE_CHANNELS = 4
"""RGB in [0, 1] and a known flag (1 where the plate holds)"""


def background_plate(images: np.ndarray, masks: np.ndarray, margin_px: int = 3, min_frames: int = 3,
                     max_spread: float = 0.06, rows_per_chunk: int = 64) -> np.ndarray:
    """images (F, H, W, 3) float in [0, 1], masks (F, H, W) bool (someone there) -> (H, W, 4) float32.

    Channels 0-2: the plate's colour (0 where unknown); channel 3: 1 where known, else 0.
    """
    images = np.asarray(images)
    masks = np.asarray(masks, dtype=bool)
    if images.ndim != 4 or images.shape[-1] != 3 or masks.shape != images.shape[:3]:
        raise ValueError(f"images must be (F, H, W, 3) and masks (F, H, W), got {images.shape} and {masks.shape}")
    offsets = np.arange(-margin_px, margin_px + 1)
    disc = (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= margin_px ** 2).astype(np.uint8)  # pixels within the margin
    free = np.stack([~(cv2.dilate(m.astype(np.uint8), disc) > 0) for m in masks])
    count = free.sum(axis=0)
    _, height, width, _ = images.shape
    plate = np.zeros((height, width, PLATE_CHANNELS), np.float32)
    for top in range(0, height, rows_per_chunk):  # nanmedian over all rows at once would copy every frame
        rows = slice(top, min(top + rows_per_chunk, height))
        seen = np.where(free[:, rows, :, None], images[:, rows].astype(np.float32), np.nan)
        enough = count[rows] >= max(min_frames, 1)
        with warnings.catch_warnings():  # pixels never free are all-NaN slices: expected
            warnings.simplefilter("ignore", RuntimeWarning)
            median = np.nanmedian(seen, axis=0)
            spread = np.nanmedian(np.abs(seen - median[None]), axis=0).max(axis=-1)
        known = enough & (np.nan_to_num(spread, nan=np.inf) <= max_spread)
        plate[rows, :, :3] = np.where(known[..., None], np.nan_to_num(median), 0.0)
        plate[rows, :, 3] = known
    return plate


def camera_plate(image_files: Sequence[Path], mask_files: Sequence[Path], max_frames: int = 40, **options) -> np.ndarray:
    """One camera's plate from its (undistorted) image and union mask files, at most `max_frames`
    of them spread evenly over the sequence."""
    if len(image_files) != len(mask_files) or not image_files:
        raise ValueError(f"need as many masks as images (got {len(image_files)} images, {len(mask_files)} masks)")
    picks = np.unique(np.linspace(0, len(image_files) - 1, min(max_frames, len(image_files))).round().astype(int))
    images, masks = [], []
    for index in picks:
        image = cv2.imread(str(image_files[index]), cv2.IMREAD_COLOR)
        mask = cv2.imread(str(mask_files[index]), cv2.IMREAD_GRAYSCALE)
        if image is None or mask is None:
            raise ValueError(f"{image_files[index] if image is None else mask_files[index]}: cannot be read")
        images.append(image[..., ::-1].astype(np.float32) / 255.0)
        masks.append(mask > 127)
    return background_plate(np.stack(images), np.stack(masks), **options)
