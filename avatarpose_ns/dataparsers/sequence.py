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

from avatarpose_ns.commands import InputError
from avatarpose_ns.dataparsers.cameras_convert import scale_intrinsics
from avatarpose_ns.dataparsers.masks import frame_file, person_folders, union_mask_file
from avatarpose_ns.io.cameras import CameraCalib
from avatarpose_ns.io.easymocap import SmplSequence

LOG = logging.getLogger("avatarpose_ns.dataparsers")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class SequenceError(InputError):
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
    missing_person_mask: Path | None = None  # the first one missing when some exist: none are used then


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


def check_frame_gaps(init_frames: Sequence[int], images: dict[str, dict[int, Path]], image_dirs: dict[str, Path],
                     frames: Sequence[int], init_source: str, drop_incomplete: bool) -> None:
    """Frames between the first and last selected frame that the initialisation has but no camera has
    an image of: an error naming the first, or with ``drop_incomplete`` a warning.

    ``select_frames`` only sees the images, so a frame deleted from every camera would otherwise just
    vanish from the sequence (and from the exported poses) without a word.
    """
    present = set().union(*[set(f) for f in images.values()])
    gaps = [f for f in init_frames if frames[0] < f < frames[-1] and f not in present]
    if not gaps:
        return
    cam = next(iter(images))
    stem = images[cam][frames[0]].stem
    expected = image_dirs[cam] / f"{gaps[0]:0{len(stem)}d}{images[cam][frames[0]].suffix}"
    listed = f"{gaps[:8]}{' ...' if len(gaps) > 8 else ''}"
    if drop_incomplete:
        LOG.warning("%s: frames %s have no image in any camera but the initialisation (%s) has them; they are "
                    "skipped", expected, listed, init_source)
        return
    raise SequenceError(
        f"{expected}: frame {gaps[0]} has no image in any camera, but the initialisation ({init_source}) has it "
        f"(frames without images: {listed}); restore the images, exclude the frames with the frame range, or "
        "pass drop_incomplete_frames to skip them")


def image_header(path: Path) -> tuple[tuple[int, int], str]:
    """(width, height) and PIL mode from the image header; an unreadable file is an error naming it."""
    try:
        with Image.open(path) as image:
            return image.size, image.mode
    except Exception as err:
        raise SequenceError(f"{path}: unreadable image ({type(err).__name__}: {err})") from None


def verify_image(path: Path) -> tuple[int, int]:
    """Decode the whole file and return its (width, height).

    The header alone, and OpenCV's decoder, accept a JPEG cut off half-way (OpenCV fills the
    missing rows with grey); PIL's full decode raises, so a truncated or corrupt file is an error
    naming it.
    """
    try:
        with Image.open(path) as image:
            image.load()
            return image.size
    except Exception as err:
        raise SequenceError(f"{path}: unreadable image, truncated or corrupt ({type(err).__name__}: {err})") from None


def check_intrinsics(cam: CameraCalib, calib_file: str) -> None:
    """Positive focal lengths, K's last row 0 0 1, and the principal point inside the image.

    A zero or negative focal length, or a principal point off the image, projects the people
    mirrored or outside every pixel: no error would follow, only a model that learns nothing.
    """
    K = cam.K
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    if not (fx > 0 and fy > 0):
        raise SequenceError(f"{calib_file}: camera '{cam.name}' has focal lengths fx = {fx:g}, fy = {fy:g} "
                            "(K[0,0], K[1,1]); both must be positive, in pixels")
    if not np.allclose(K[2], (0.0, 0.0, 1.0)):
        raise SequenceError(f"{calib_file}: camera '{cam.name}' K has last row {np.round(K[2], 6).tolist()}, "
                            "expected [0, 0, 1] (a pinhole camera matrix)")
    if cam.width > 0 and cam.height > 0 and not (0.0 <= cx <= cam.width and 0.0 <= cy <= cam.height):
        raise SequenceError(f"{calib_file}: camera '{cam.name}' has its principal point (cx, cy) = ({cx:g}, {cy:g}) "
                            f"outside its {cam.width}x{cam.height} image")


def check_image_sizes(cam: CameraCalib, images: Sequence[Path], calib_file: str) -> CameraCalib:
    """Every image of a camera has one size and colour mode, and the size matches the calibration's
    H_/W_ when given.

    Returns the camera with its size filled in and its intrinsics checked (``check_intrinsics``).
    Images that are a uniform rescaling of the calibrated size (same aspect ratio) are accepted with
    a warning and K is rescaled; other sizes are errors.
    """
    headers = [image_header(p) for p in images]
    first, first_mode = headers[0]
    for path, (size, mode) in zip(images, headers):
        if size != first:
            raise SequenceError(f"{path}: image is {size[0]}x{size[1]} but the other frames of camera '{cam.name}' "
                                f"({images[0].name}) are {first[0]}x{first[1]}")
        if mode != first_mode:  # e.g. one greyscale frame among colour ones: read as grey, not an error otherwise
            raise SequenceError(f"{path}: image mode is {mode} but the other frames of camera '{cam.name}' "
                                f"({images[0].name}) are {first_mode}")
    width, height = first
    if cam.width <= 0 or cam.height <= 0 or (cam.width, cam.height) == (width, height):
        checked = CameraCalib(cam.name, cam.K, cam.dist, cam.R, cam.T, width, height)
        check_intrinsics(checked, calib_file)
        return checked
    sx, sy = width / cam.width, height / cam.height
    if abs(sx - sy) > 1e-3 * max(sx, sy):
        raise SequenceError(f"{images[0]}: image is {width}x{height} but {calib_file} gives "
                            f"W_{cam.name}={cam.width}, H_{cam.name}={cam.height} (a different aspect ratio)")
    LOG.warning("%s: image is %dx%d but %s gives W_%s=%d, H_%s=%d; assuming the calibration is for the same "
                "view at another resolution and rescaling K by %.4g", images[0], width, height, calib_file,
                cam.name, cam.width, cam.name, cam.height, sx)
    K = scale_intrinsics(cam.K, (cam.width, cam.height), (width, height))
    checked = CameraCalib(cam.name, K, cam.dist, cam.R, cam.T, width, height)
    check_intrinsics(checked, calib_file)
    return checked


# ----------------------------------------------------------------------------- masks


def _first_missing_person_mask(mask_root: Path, cam_dirs: dict[str, str], frames: Sequence[int],
                               person_ids: Sequence[int]) -> Path | None:
    """The first per-person mask file (or folder) that is missing, or None when every person has a
    mask in every view. Also None when there are no per-person masks at all (union masks only)."""
    folders = {cam: person_folders(mask_root, cam_dir) for cam, cam_dir in cam_dirs.items()}
    if not any(folders.values()):
        return None
    for cam, cam_dir in cam_dirs.items():
        for pid in person_ids:
            if pid not in folders[cam]:
                return mask_root / cam_dir / str(pid)
            for frame in frames:
                if frame_file(folders[cam][pid], frame) is None:
                    return folders[cam][pid] / f"{frame:06d}.png"
    return None


def collect_views(cameras: dict[str, CameraCalib], cam_dirs: dict[str, str], images: dict[str, dict[int, Path]],
                  frames: Sequence[int], mask_root: Path, person_ids: Sequence[int],
                  looked_for: str) -> tuple[dict[tuple[str, int], ViewFiles], Path | None]:
    """Image and mask files of every (camera, frame), and the per-person mask that is missing, if any.

    Union mask missing: made from the per-person masks of that view when they exist (logged), else an
    error naming the missing file. Per-person masks are used only when every person of the
    initialisation has one in every view; otherwise none are used and the first missing file is
    returned, for the warning of whoever would have used them (``person_masks_off_message``).
    """
    if not mask_root.is_dir():
        raise SequenceError(f"{mask_root}: no foreground masks (looked for {looked_for})")
    cam_dirs = {cam: cam_dirs[cam] for cam in cameras}
    missing_person_mask = _first_missing_person_mask(mask_root, cam_dirs, frames, person_ids)
    use_persons = missing_person_mask is None
    views: dict[tuple[str, int], ViewFiles] = {}
    derived = 0
    for cam, cam_dir in cam_dirs.items():
        for frame in frames:
            union = union_mask_file(mask_root, cam_dir, frame)
            persons: list[Path] = []
            if use_persons:
                persons = [p for pid in person_ids
                           if (p := frame_file(mask_root / cam_dir / str(pid), frame)) is not None]
            if union is None:
                if not persons:
                    incomplete = ", and the per-person masks are incomplete" if missing_person_mask else ""
                    raise SequenceError(f"{mask_root / cam_dir / f'{frame:06d}.png'}: foreground mask missing "
                                        f"for camera '{cam}', frame {frame}{incomplete} (looked for {looked_for})")
                derived += 1
            views[(cam, frame)] = ViewFiles(images[cam][frame], union, persons)
    if missing_person_mask is not None:
        LOG.info("%s missing: per-person masks are not used for this sequence", missing_person_mask)
    if derived:
        LOG.info("%d union masks made from per-person masks (no union mask file)", derived)
    return views, missing_person_mask


def person_masks_off_message(seq: RawSequence) -> str:
    """The warning for a consumer of per-person masks when some are missing (``seq.missing_person_mask``)."""
    return (f"person masks off: {relative(seq.missing_person_mask, seq.root)} missing; pass "
            "--silhouette.use-person-masks False to silence, or add the file")


# ----------------------------------------------------------------------------- cameras and people


def _joints_in_view(cam: CameraCalib, joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(F, J, 3) world joints -> (F, J) in front of the camera, and in front and on its image.

    The pinhole projection (no distortion) is used: lens models are only valid near the image,
    and a point far outside can be folded back onto it.
    """
    local = joints @ cam.R.T + cam.T
    depth = local[..., 2]
    front = depth > 1e-3
    uv = local @ cam.K.T
    with np.errstate(divide="ignore", invalid="ignore"):
        u, v = uv[..., 0] / depth, uv[..., 1] / depth
    on_image = front & (u >= -0.5) & (u <= cam.width - 0.5) & (v >= -0.5) & (v <= cam.height - 0.5)
    return front, on_image


def check_people_in_view(seq: RawSequence, joints: dict[int, np.ndarray]) -> None:
    """Every camera sees at least one person (half of the joints of their initial body in front of it
    and on its image) in most frames; a camera that does not is an error naming it.

    A flipped or mis-registered extrinsic passes every check of the calibration itself, and then
    trains on images that no body projects into. A person missing from one camera in most frames is
    only a warning: people may leave a view.

    joints: person id -> (F, 24, 3) initial joints in the input world frame, frames as ``seq.frames``.
    """
    calib_file = seq.root / EXTRINSICS_FILES.get(seq.layout, "")
    num_frames = len(seq.frames)
    warnings = []
    for name, cam in seq.cameras.items():
        in_view = {pid: _joints_in_view(cam, person) for pid, person in joints.items()}
        visible = {pid: on_image.mean(axis=1) >= 0.5 for pid, (_, on_image) in in_view.items()}
        seen = np.logical_or.reduce(list(visible.values()))
        unseen = int((~seen).sum())
        if unseen * 2 > num_frames:
            behind = np.logical_and.reduce([~front.any(axis=1) for front, _ in in_view.values()])
            where = "behind" if behind[~seen].all() else "behind or off the image of"
            raise SequenceError(
                f"{calib_file}: camera '{name}' sees none of the people in {unseen} of {num_frames} frames: their "
                f"initial joints ({seq.init_source}) lie {where} the camera; is its extrinsic flipped, or in "
                "another world frame or unit?")
        warnings += [(name, pid, int(v.sum())) for pid, v in visible.items() if v.sum() * 2 < num_frames]
    for name, pid, count in warnings:
        LOG.warning("%s: camera '%s' sees person %d in only %d of %d frames (its initial joints, %s, lie behind "
                    "the camera or off its image)", calib_file, name, pid, count, num_frames, seq.init_source)


# ----------------------------------------------------------------------------- layouts

EASYMOCAP_FILES = ("intri.yml", "extri.yml", "images/<camera>/<frame>.jpg")
HI4D_FILES = ("cameras/rgb_cameras.npz", "images/<camera>/<frame>.jpg")
EXTRINSICS_FILES = {"easymocap": "extri.yml", "hi4d": HI4D_FILES[0]}


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
