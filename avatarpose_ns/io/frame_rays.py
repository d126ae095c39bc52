"""All pixels of one frame of an EasyMocap sequence as world rays, colours and mask labels.

For torch-only work without nerfstudio (tests, benchmarks, a bare GPU box): rays
go through the distorted lens model (`pixel_rays`), so no undistortion is needed.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from avatarpose_ns.io.cameras import pixel_rays, read_cameras


def frame_rays(sequence: Path, frame: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """origins (N, 3), unit directions (N, 3), colours (N, 3) in [0, 1], foreground mask (N,) bool, N = all pixels."""
    sequence = Path(sequence)
    origins, directions, colours, masks = [], [], [], []
    for name, cam in read_cameras(sequence).items():
        image_path = sequence / "images" / name / f"{frame:06d}.jpg"
        mask_path = sequence / "mask" / name / f"{frame:06d}.png"
        image = cv2.imread(str(image_path))
        mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
        if image is None or mask is None:
            raise FileNotFoundError(f"{image_path if image is None else mask_path}: missing or unreadable")
        o, d = pixel_rays(cam)
        origins.append(o), directions.append(d)
        colours.append(image[..., ::-1].reshape(-1, 3) / 255.0), masks.append(mask.reshape(-1) > 0)
    as_t = lambda a: torch.tensor(np.concatenate(a), dtype=torch.float32)
    return as_t(origins), as_t(directions), as_t(colours), torch.tensor(np.concatenate(masks))
