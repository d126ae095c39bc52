"""Frames as time: the selected frames spread evenly over [0, 1].

nerfstudio's viewer only knows a time in [0, 1] (its time slider sets
``cameras.times``); the model's per-frame parameters are indexed by the frame's
position in the selected frame list. These two helpers are the only mapping
between them, so the viewer, training and export agree.
"""

from __future__ import annotations

import numpy as np
import torch


def frame_times(num_frames: int) -> np.ndarray:
    """Normalised time of each selected frame position: 0 .. 1 (a single frame gets 0)."""
    if num_frames <= 1:
        return np.zeros(max(num_frames, 0))
    return np.linspace(0.0, 1.0, num_frames)


def time_to_frame_position(times: torch.Tensor | np.ndarray | float, num_frames: int):
    """Nearest frame position for normalised times (torch in, torch long out; numpy/float in, numpy out)."""
    scale = max(num_frames - 1, 0)
    if isinstance(times, torch.Tensor):
        return torch.clamp(torch.round(times * scale), 0, scale).long()
    return np.clip(np.rint(np.asarray(times, dtype=np.float64) * scale), 0, scale).astype(np.int64)
