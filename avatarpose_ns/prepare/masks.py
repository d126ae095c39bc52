"""Per-person masks of one view from the detector's segmentation, restricted to each person.

The segmenter gives each detection a probability map, already cut to its box. A pixel goes to
the person whose map is highest there, if that is at least 0.5; the per-person masks then
partition the union mask, as the dataparser expects.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def person_masks(probabilities: np.ndarray | None, owners: dict[int, int], shape: tuple[int, int]) -> dict[int, np.ndarray]:
    """pid -> boolean (H, W) mask; ``owners``: pid -> detection index in this view (absent: empty mask)."""
    masks = {pid: np.zeros(shape, bool) for pid in owners}
    if probabilities is None or len(probabilities) == 0 or not owners:
        return masks
    pids = list(owners)
    stack = np.stack([probabilities[owners[pid]] if owners[pid] >= 0 else np.zeros(shape, np.uint8) for pid in pids])
    best = stack.argmax(axis=0)
    foreground = stack.max(axis=0) >= 128
    for i, pid in enumerate(pids):
        masks[pid] = foreground & (best == i)
    return masks


def write_masks(root: Path, cam: str, frame: int, masks: dict[int, np.ndarray], shape: tuple[int, int]) -> None:
    """``root/<cam>/<frame>.png`` (union) and ``root/<cam>/<pid>/<frame>.png``, 0/255."""
    union = np.zeros(shape, bool)
    for pid, mask in masks.items():
        (root / cam / str(pid)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / cam / str(pid) / f"{frame:06d}.png")
        union |= mask
    (root / cam).mkdir(parents=True, exist_ok=True)
    Image.fromarray(union.astype(np.uint8) * 255).save(root / cam / f"{frame:06d}.png")
