"""Undistort (and downscale) images and masks once, into a cache keyed by the calibration.

Choice: the undistorted image keeps the camera matrix K (``cv2.undistort``'s
default, as AvatarPose does) rather than ``getOptimalNewCameraMatrix``: the
pixel grid, principal point and focal length stay as calibrated, nothing in the
image centre is resampled to another scale, and the few border pixels that the
lens did not see are black in the image and background in the masks. With a
downscale factor d the output is W/d x H/d (rounded) and K is scaled for it
(``scale_intrinsics``).

* images: bilinear remap at full resolution, then area averaging down to the
  output size (no aliasing at any factor); written as JPEG quality 95 (PNG for
  PNG sources). Without distortion and downscaling the original files are used.
* masks: one nearest-neighbour remap straight to the output grid, so union and
  per-person masks stay binary and the per-person masks keep partitioning the
  union. Written as single-channel 0/255 PNG, which is what nerfstudio's mask
  loader expects; plus a person label map (uint8: 0 background, k + 1 for
  person index k, 255 foreground not attributed to anyone) when per-person masks
  exist.

Cache layout: ``<cache>/undistorted/<cam>/<key>/{images,masks-<mkey>/{all,<k>,labels}}/<frame:06d>.*``
where ``key`` hashes K, distortion, input and output size and the cache
version, and ``mkey`` the mask source: a changed calibration or downscale gets
a new folder instead of stale files. A cached file older than its source is
rewritten. Files are written to a temporary name and renamed, so an
interrupted run leaves no half-written file.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from avatarpose_ns.dataparsers.cameras_convert import scale_intrinsics, scaled_size
from avatarpose_ns.dataparsers.masks import MaskReadError, read_mask
from avatarpose_ns.dataparsers.sequence import LOG, RawSequence, SequenceError, verify_image
from avatarpose_ns.io.cameras import CameraCalib

CACHE_VERSION = 1
JPEG_QUALITY = 95
UNATTRIBUTED_LABEL = 255


@dataclass(frozen=True)
class ViewGeometry:
    """One camera's input and output pixel grids."""

    K: np.ndarray
    dist: np.ndarray
    size: tuple[int, int]  # input (width, height)
    out_K: np.ndarray
    out_size: tuple[int, int]

    @property
    def distorted(self) -> bool:
        return bool(np.any(self.dist != 0))

    @property
    def resized(self) -> bool:
        return self.size != self.out_size

    def key(self) -> str:
        payload = json.dumps({"v": CACHE_VERSION, "K": np.round(self.K, 10).tolist(),
                              "dist": np.round(self.dist, 12).tolist(), "size": self.size,
                              "out_size": self.out_size})
        return hashlib.sha1(payload.encode()).hexdigest()[:12]


def view_geometry(cam: CameraCalib, downscale: float) -> ViewGeometry:
    """Output grid of camera ``cam`` at ``downscale`` with K kept (see module docstring)."""
    if not downscale > 0:
        raise ValueError(f"downscale factor must be > 0, got {downscale}")
    size = (cam.width, cam.height)
    out_size = scaled_size(cam.width, cam.height, downscale)
    return ViewGeometry(cam.K.copy(), cam.dist.copy(), size, scale_intrinsics(cam.K, size, out_size), out_size)


class Undistorter:
    """The remap tables of one camera, made once and shared by its frames."""

    def __init__(self, geom: ViewGeometry) -> None:
        self.geom = geom
        self._full: tuple[np.ndarray, np.ndarray] | None = None
        self._out: tuple[np.ndarray, np.ndarray] | None = None
        self._lock = threading.Lock()

    def _maps(self, full: bool) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            g = self.geom
            if full and self._full is None:
                self._full = cv2.initUndistortRectifyMap(g.K, g.dist, None, g.K, g.size, cv2.CV_32FC1)
            if not full and self._out is None:
                self._out = cv2.initUndistortRectifyMap(g.K, g.dist, None, g.out_K, g.out_size, cv2.CV_32FC1)
            return self._full if full else self._out  # type: ignore[return-value]

    def image(self, image: np.ndarray) -> np.ndarray:
        if self.geom.distorted:
            mx, my = self._maps(full=True)
            image = cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        if self.geom.resized:
            image = cv2.resize(image, self.geom.out_size, interpolation=cv2.INTER_AREA)
        return image

    def mask(self, mask: np.ndarray) -> np.ndarray:
        """Boolean mask on the input grid to a boolean mask on the output grid."""
        if not (self.geom.distorted or self.geom.resized):
            return mask.copy()
        mx, my = self._maps(full=False)
        out = cv2.remap(mask.astype(np.uint8), mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                        borderValue=0)
        return out > 0


@dataclass
class CachedView:
    """The files nerfstudio and the model read for one image."""

    image: Path
    union_mask: Path
    person_masks: list[Path]
    person_labels: Path | None


def default_cache_dir(root: Path) -> Path:
    """``<data>/.cache/avatarpose_ns`` when the data folder is writable, else a per-sequence folder in the
    user cache (``$AVATARPOSE_CACHE`` or ``~/.cache/avatarpose_ns``)."""
    candidate = root / ".cache" / "avatarpose_ns"
    try:
        candidate.mkdir(parents=True, exist_ok=True)
        probe = candidate / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
        return candidate
    except OSError:
        from avatarpose_ns.body.builtin import default_cache_dir as user_cache

        fallback = user_cache() / "sequences" / hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:12]
        LOG.warning("%s is not writable; caching undistorted images in %s", root, fallback)
        return fallback


def _fresh(target: Path, sources: list[Path]) -> bool:
    if not target.is_file():
        return False
    newest = max((s.stat().st_mtime_ns for s in sources), default=0)
    return target.stat().st_mtime_ns >= newest


def _write(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}-{threading.get_ident()}{path.suffix}")
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if path.suffix.lower() in (".jpg", ".jpeg") else []
    if not cv2.imwrite(str(tmp), image, params):
        raise OSError(f"{path}: could not write cache file")
    os.replace(tmp, path)


def _read_mask_checked(path: Path, size: tuple[int, int]) -> np.ndarray:
    try:
        mask = read_mask(path)
    except MaskReadError as err:
        raise SequenceError(str(err)) from None
    if (mask.shape[1], mask.shape[0]) != size:
        raise SequenceError(f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} but the images of this camera are "
                            f"{size[0]}x{size[1]}")
    return mask


def _check_decoded_size(src: Path, size: tuple[int, int], geom: ViewGeometry) -> None:
    if size != geom.size:
        raise SequenceError(f"{src}: image decodes to {size[0]}x{size[1]}, expected {geom.size[0]}x{geom.size[1]}")


def _image_job(src: Path, dst: Path, und: Undistorter) -> None:
    """Check (and when undistorting or resizing, cache) one image. A fresh cache file was checked when written."""
    if dst != src and _fresh(dst, [src]):
        return
    _check_decoded_size(src, verify_image(src), und.geom)  # the whole file: a truncated JPEG is an error
    if dst == src:
        return
    image = cv2.imread(str(src), cv2.IMREAD_COLOR)
    if image is None:
        raise SequenceError(f"{src}: unreadable image (cv2 could not decode it)")
    _check_decoded_size(src, (image.shape[1], image.shape[0]), und.geom)
    _write(dst, und.image(image))


def _mask_job(union_src: Path | None, person_srcs: list[Path], out: CachedView, und: Undistorter) -> None:
    sources = ([union_src] if union_src else []) + person_srcs
    targets = [out.union_mask] + out.person_masks + ([out.person_labels] if out.person_labels else [])
    if all(_fresh(t, sources) for t in targets):
        return
    persons = [und.mask(_read_mask_checked(p, und.geom.size)) for p in person_srcs]
    if union_src is not None:
        union = und.mask(_read_mask_checked(union_src, und.geom.size))
    else:
        union = np.logical_or.reduce(persons)
    _write(out.union_mask, union.astype(np.uint8) * 255)
    for mask, path in zip(persons, out.person_masks):
        _write(path, mask.astype(np.uint8) * 255)
    if out.person_labels is not None:
        labels = np.where(union, UNATTRIBUTED_LABEL, 0).astype(np.uint8)
        for index in reversed(range(len(persons))):  # overlaps go to the lower person index
            labels[persons[index]] = index + 1
        _write(out.person_labels, labels)


def build_cache(seq: RawSequence, cache_root: Path, downscale: float,
                workers: int = 4) -> tuple[dict[tuple[str, int], CachedView], dict[str, ViewGeometry]]:
    """Write every missing or stale cache file of ``seq``; return the files to read and each camera's
    output geometry. Errors name the input file (unreadable image or mask, wrong mask size)."""
    mask_key = hashlib.sha1(f"{seq.mask_source}|{seq.person_ids}".encode()).hexdigest()[:8]
    geoms = {name: view_geometry(cam, downscale) for name, cam in seq.cameras.items()}
    undistorters = {name: Undistorter(g) for name, g in geoms.items()}
    views: dict[tuple[str, int], CachedView] = {}
    jobs = []
    for (cam, frame), files in seq.views.items():
        geom = geoms[cam]
        folder = cache_root / "undistorted" / cam / geom.key()
        if geom.distorted or geom.resized:
            image = folder / "images" / f"{frame:06d}{files.image.suffix.lower()}"
        else:
            image = files.image
        masks = folder / f"masks-{mask_key}"
        persons = [masks / str(k) / f"{frame:06d}.png" for k in range(len(files.person_masks))]
        labels = masks / "labels" / f"{frame:06d}.png" if files.person_masks else None
        views[(cam, frame)] = CachedView(image, masks / "all" / f"{frame:06d}.png", persons, labels)
        jobs.append((_image_job, (files.image, image, undistorters[cam])))
        jobs.append((_mask_job, (files.union_mask, files.person_masks, views[(cam, frame)], undistorters[cam])))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(fn, *args) for fn, args in jobs]
        for future in futures:
            future.result()  # the first failure propagates, naming its file
    return views, geoms
