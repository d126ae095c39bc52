"""A multi-view sequence as both layouts read it, and the checks every layout shares.

The layout readers (EasyMocap/AvatarPose, Hi4D) only find the calibration, the
image folder of each camera, the mask root and the SMPL sources; everything
else (camera subset, frame range and stride, one image per camera and frame,
image sizes, masks) is decided here, with one error message per problem that
names the file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Sequence

import numpy as np
from PIL import Image

from avatarpose_ns.dataparsers.cameras_convert import scale_intrinsics
from avatarpose_ns.dataparsers.masks import frame_file, person_folders, union_mask_file
from avatarpose_ns.io.cameras import CameraCalib
from avatarpose_ns.io.easymocap import SmplSequence

LOG = logging.getLogger("avatarpose_ns.dataparsers")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class SequenceError(ValueError):
    """The input folder cannot be used as it is; the message names the file and the problem."""


@dataclass
class ViewFiles:
    """The input files of one image (camera, frame)."""

    image: Path
    union_mask: Path | None  # None: derived from the per-person masks
    person_masks: list[Path]  # one per person, in person order; empty when there are none


@dataclass
class RawSequence:
    """What the dataparsers read from a sequence folder, before undistortion and normalisation."""

    layout: str  # "easymocap" or "hi4d"
    root: Path
    cameras: dict[str, CameraCalib]  # selected cameras, image sizes filled in
    frames: list[int]  # selected frame numbers, ascending
    views: dict[tuple[str, int], ViewFiles]
    mask_source: str  # mask root relative to the sequence (part of the cache key)
    person_ids: list[int]  # person order: sorted ids of the initialisation
    init: dict[int, SmplSequence]  # restricted to `frames`, input world frame
    init_source: str
    gt: dict[int, SmplSequence] | None = None  # evaluation only
    gt_source: str | None = None
    gt_keypoints: dict[int, dict[int, np.ndarray]] | None = None  # frame -> pid -> (J, 4), evaluation only
    gt_keypoints_source: str | None = None
    world_up: str = "+z"


def relative(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` when inside it, else absolute (for messages and cache keys)."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


# ----------------------------------------------------------------------------- images


def list_frame_images(folder: Path) -> dict[int, Path]:
    """Frame number -> image file in one camera's folder (file names are frame numbers)."""
    images: dict[int, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and path.stem.isdigit():
            frame = int(path.stem)
            if frame in images:
                raise SequenceError(f"{path}: frame {frame} also stored as {images[frame].name}")
            images[frame] = path
    return images


def select_cameras(calibrated: Sequence[str], image_dirs: dict[str, Path], requested: Sequence[str],
                   calib_file: str) -> list[str]:
    """The cameras to use, in calibration order.

    ``requested`` empty: every calibrated camera whose image folder exists (a calibrated camera without
    images is skipped with a warning; image folders without calibration are ignored with a warning).
    """
    roots = {p.parent for p in image_dirs.values()}
    known = {p.name for p in image_dirs.values()}
    for root in roots:
        extra = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in known) if root.is_dir() else []
        if extra:
            LOG.warning("%s: image folders %s have no calibration in %s; they are not used", root, extra, calib_file)
    if requested:
        unknown = [c for c in requested if c not in calibrated]
        if unknown:
            raise SequenceError(f"{calib_file}: cameras {unknown} requested but not calibrated "
                                f"(calibrated: {list(calibrated)})")
        order = [c for c in calibrated if c in set(requested)]
        for cam in order:
            if not image_dirs[cam].is_dir():
                raise SequenceError(f"{image_dirs[cam]}: image folder of requested camera '{cam}' not found")
        return order
    order = []
    for cam in calibrated:
        if image_dirs[cam].is_dir():
            order.append(cam)
        else:
            LOG.warning("%s: camera '%s' is calibrated but has no image folder; it is not used", image_dirs[cam], cam)
    if not order:
        raise SequenceError(f"{calib_file}: none of the calibrated cameras {list(calibrated)} has an image folder "
                            f"(looked for {', '.join(sorted(str(r) for r in roots))}/<camera>/)")
    return order


def select_frames(per_camera: dict[str, dict[int, Path]], image_dirs: dict[str, Path], start: int,
                  end: int | None, stride: int, drop_incomplete: bool) -> list[int]:
    """Frames in ``[start, end)`` with ``stride`` (over the frames present), each seen by every camera.

    A frame missing in some camera is an error naming the missing file, unless ``drop_incomplete``
    (then it is dropped with a warning, and the others keep their frame numbers).
    """
    if stride < 1:
        raise SequenceError(f"frame stride must be >= 1, got {stride}")
    present = sorted(set().union(*[set(frames) for frames in per_camera.values()]))
    if not present:
        folders = ", ".join(str(image_dirs[cam]) for cam in per_camera)
        raise SequenceError(f"empty sequence: no images named <frame>.jpg/.png in {folders}")
    in_range = [f for f in present if f >= start and (end is None or end < 0 or f < end)]
    if not in_range:
        raise SequenceError(f"empty sequence: frame range [{start}, {end}) selects none of the frames "
                            f"{present[0]}..{present[-1]} in {image_dirs[next(iter(per_camera))].parent}")
    chosen = in_range[::stride]
    kept = []
    for frame in chosen:
        missing = [cam for cam, frames in per_camera.items() if frame not in frames]
        if not missing:
            kept.append(frame)
            continue
        have = next(cam for cam in per_camera if cam not in missing)
        expected = image_dirs[missing[0]] / per_camera[have][frame].name
        if not drop_incomplete:
            raise SequenceError(
                f"{expected}: frame {frame} is missing in camera(s) {missing} but present in '{have}' "
                "(every frame needs an image in every camera; use drop_incomplete_frames to skip such frames, "
                "or the frame range to exclude them)")
        LOG.warning("%s: frame %d missing in camera(s) %s; the frame is dropped", expected, frame, missing)
    if not kept:
        raise SequenceError("empty sequence: every selected frame is missing in some camera")
    return kept


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the image header; an unreadable file is an error naming it."""
    try:
        with Image.open(path) as image:
            return image.size
    except Exception as err:
        raise SequenceError(f"{path}: unreadable image ({type(err).__name__}: {err})") from None


def check_image_sizes(cam: CameraCalib, images: Sequence[Path], calib_file: str) -> CameraCalib:
    """Every image of a camera has one size, which matches the calibration's H_/W_ when given.

    Returns the camera with its size filled in. Images that are a uniform rescaling of the calibrated
    size (same aspect ratio) are accepted with a warning and K is rescaled; other sizes are errors.
    """
    sizes = [image_size(p) for p in images]
    first = sizes[0]
    for path, size in zip(images, sizes):
        if size != first:
            raise SequenceError(f"{path}: image is {size[0]}x{size[1]} but the other frames of camera '{cam.name}' "
                                f"({images[0].name}) are {first[0]}x{first[1]}")
    width, height = first
    if cam.width <= 0 or cam.height <= 0 or (cam.width, cam.height) == (width, height):
        return CameraCalib(cam.name, cam.K, cam.dist, cam.R, cam.T, width, height)
    sx, sy = width / cam.width, height / cam.height
    if abs(sx - sy) > 1e-3 * max(sx, sy):
        raise SequenceError(f"{images[0]}: image is {width}x{height} but {calib_file} gives "
                            f"W_{cam.name}={cam.width}, H_{cam.name}={cam.height} (a different aspect ratio)")
    LOG.warning("%s: image is %dx%d but %s gives W_%s=%d, H_%s=%d; assuming the calibration is for the same "
                "view at another resolution and rescaling K by %.4g", images[0], width, height, calib_file,
                cam.name, cam.width, cam.name, cam.height, sx)
    K = scale_intrinsics(cam.K, (cam.width, cam.height), (width, height))
    return CameraCalib(cam.name, K, cam.dist, cam.R, cam.T, width, height)


# ----------------------------------------------------------------------------- masks


def collect_views(cameras: dict[str, CameraCalib], cam_dirs: dict[str, str], images: dict[str, dict[int, Path]],
                  frames: Sequence[int], mask_root: Path, person_ids: Sequence[int],
                  looked_for: str) -> dict[tuple[str, int], ViewFiles]:
    """Image and mask files of every (camera, frame).

    Union mask missing: made from the per-person masks of that view when they exist (logged), else an
    error naming the missing file. Per-person masks are used only when every person of the
    initialisation has one in every view; otherwise they are dropped for the whole sequence with a
    warning, and the model gets the union masks only.
    """
    if not mask_root.is_dir():
        raise SequenceError(f"{mask_root}: no foreground masks (looked for {looked_for})")
    use_persons = True
    for cam in cameras:
        have = person_folders(mask_root, cam_dirs[cam])
        missing = [pid for pid in person_ids if pid not in have]
        if missing and have:
            LOG.warning("%s: per-person mask folders %s found but persons %s of the initialisation have none; "
                        "per-person masks are not used", mask_root / cam_dirs[cam], sorted(have), missing)
        if missing:
            use_persons = False
    views: dict[tuple[str, int], ViewFiles] = {}
    derived = 0
    for cam in cameras:
        for frame in frames:
            union = union_mask_file(mask_root, cam_dirs[cam], frame)
            persons: list[Path] = []
            if use_persons:
                for pid in person_ids:
                    path = frame_file(mask_root / cam_dirs[cam] / str(pid), frame)
                    if path is None:
                        LOG.warning("%s: per-person mask missing; per-person masks are not used for this sequence",
                                    mask_root / cam_dirs[cam] / str(pid) / f"{frame:06d}.png")
                        use_persons = False
                        break
                    persons.append(path)
            if union is None:
                if not persons:
                    raise SequenceError(f"{mask_root / cam_dirs[cam] / f'{frame:06d}.png'}: foreground mask missing "
                                        f"for camera '{cam}', frame {frame} (looked for {looked_for})")
                derived += 1
            views[(cam, frame)] = ViewFiles(images[cam][frame], union, persons)
    if not use_persons:
        for (cam, frame), view in views.items():
            if view.union_mask is None:  # was to be made from the per-person masks, which are incomplete
                raise SequenceError(f"{mask_root / cam_dirs[cam] / f'{frame:06d}.png'}: foreground mask missing "
                                    f"for camera '{cam}', frame {frame}, and the per-person masks are incomplete")
            view.person_masks = []
    if derived:
        LOG.info("%d union masks made from per-person masks (no union mask file)", derived)
    return views



# ----------------------------------------------------------------------------- layouts

EASYMOCAP_FILES = ("intri.yml", "extri.yml", "images/<camera>/<frame>.jpg")
HI4D_FILES = ("cameras/rgb_cameras.npz", "images/<camera>/<frame>.jpg")


def is_easymocap(root: Path) -> bool:
    return (root / "intri.yml").is_file() and (root / "extri.yml").is_file()


def is_hi4d(root: Path) -> bool:
    return (root / "cameras" / "rgb_cameras.npz").is_file()


def sequence_root(data: Path, wanted: str) -> Path:
    """``data`` as a sequence folder in the ``wanted`` layout ("easymocap" or "hi4d") with an images/ folder."""
    root = Path(data)
    is_layout = is_easymocap if wanted == "easymocap" else is_hi4d
    if not (is_layout(root) and (root / "images").is_dir()):
        raise layout_error(root, wanted)
    return root


def layout_error(root: Path, wanted: str) -> SequenceError:
    """The error for a folder that is not in the ``wanted`` layout: what was looked for, and what the
    folder looks like instead (the other layout, or a parent of sequence folders)."""
    looked_for = EASYMOCAP_FILES if wanted == "easymocap" else HI4D_FILES
    name = "an EasyMocap/AvatarPose" if wanted == "easymocap" else "a native Hi4D"
    message = f"{root}: not {name} sequence (looked for {', '.join(looked_for)})"
    if wanted == "easymocap" and is_hi4d(root):
        return SequenceError(message + "; it holds cameras/rgb_cameras.npz: use the hi4d-data dataparser")
    if wanted == "hi4d" and is_easymocap(root):
        return SequenceError(message + "; it holds intri.yml/extri.yml: use the easymocap-data dataparser")
    inside = []
    if root.is_dir():
        for child in sorted(root.glob("*")) + sorted(root.glob("*/*")):
            if child.is_dir() and (is_easymocap(child) or is_hi4d(child)):
                inside.append(str(child.relative_to(root)))
    if inside:
        message += f"; sequences found inside: {', '.join(inside[:6])}{' ...' if len(inside) > 6 else ''}"
    return SequenceError(message)
