"""Where the foreground masks of one view are and how to read any of them as a boolean image.

Mask trees follow one pattern in every layout this project reads:

    <mask root>/<cam>/<frame>.png          union mask (EasyMocap, avatarpose-synth)
    <mask root>/<cam>/all/<frame>.png      union mask (AvatarPose's mask_sta / mask_gt, Hi4D seg)
    <mask root>/<cam>/<pid>/<frame>.png    the visible part of person <pid>

with ``<frame>`` zero-padded to 6 digits (or plain). A union mask that is a
palette/label image (SAM-Track writes id k for object k) is read as "any id is
foreground": SAM-Track's ids need not match the SMPL person ids, so person
identities come only from the per-person folders.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from avatarpose_ns.commands import InputError

MASK_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


class MaskReadError(InputError):
    """A mask file exists but cannot be read as an image."""


def frame_file(folder: Path, frame: int, suffixes: tuple[str, ...] = MASK_SUFFIXES) -> Path | None:
    """The file for ``frame`` in ``folder`` (``000012.png`` or ``12.png``), or None."""
    for stem in (f"{frame:06d}", str(frame)):
        for suffix in suffixes:
            path = folder / f"{stem}{suffix}"
            if path.is_file():
                return path
    return None


def person_folders(mask_root: Path, cam_dir: str) -> dict[int, Path]:
    """Per-person mask folders of one camera, keyed by the integer person id in the folder name."""
    folder = mask_root / cam_dir
    if not folder.is_dir():
        return {}
    return {int(p.name): p for p in sorted(folder.iterdir()) if p.is_dir() and p.name.isdigit()}


def union_mask_file(mask_root: Path, cam_dir: str, frame: int) -> Path | None:
    """The union foreground mask of one view: ``<cam>/all/<frame>`` first, then ``<cam>/<frame>``."""
    return frame_file(mask_root / cam_dir / "all", frame) or frame_file(mask_root / cam_dir, frame)


def read_mask(path: Path) -> np.ndarray:
    """Any mask image as a boolean (H, W) array.

    Palette images: any non-zero index. Grey or colour: a channel at 128 or more when the image
    reaches 128 (0/255 masks, JPEG noise ignored), else any non-zero value (0/1 and small label
    images). An alpha channel that is not constant is the mask.
    """
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            array = np.asarray(image)
    except Exception as err:  # PIL raises several types for broken files
        raise MaskReadError(f"{path}: cannot read mask image ({type(err).__name__}: {err})") from None
    if mode == "P":
        return array != 0
    if mode == "1":
        return array.astype(bool)
    if array.ndim == 3:
        if mode in ("RGBA", "LA") and array[..., -1].min() != array[..., -1].max():
            array = array[..., -1]
        else:
            array = array[..., : (1 if mode in ("L", "LA") else 3)].max(axis=-1)
    threshold = 128 if array.max(initial=0) >= 128 else 1
    return array >= threshold
