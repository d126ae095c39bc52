"""Refine a sequence's initial SMPL against the training cameras' masks (`fitting.silhouette_fit`).

Runs once per sequence, initialisation, camera selection and fit setting: the result is
cached under the dataparser's cache folder, keyed by all of them and by the mask files'
sizes and modification times.  Only training cameras are used, so a held-out view stays
unseen.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from collections.abc import Sequence

import numpy as np

from avatarpose_ns.body.body_model import BodyModel
from avatarpose_ns.dataparsers.fit_stage import FitStage, announce_cached
from avatarpose_ns.dataparsers.masks import MaskReadError, read_mask
from avatarpose_ns.dataparsers.sequence import LOG, RawSequence, SequenceError, person_masks_off_message
from avatarpose_ns.fitting import source_digest
from avatarpose_ns.fitting.silhouette_fit import SilhouetteFitConfig, fit_shape_to_silhouettes
from avatarpose_ns.fitting.smpl_fit_2d import NUM_JOINTS
from avatarpose_ns.io.cameras import CameraCalib
from avatarpose_ns.io.easymocap import FormatError, SmplSequence, read_annots_folder, read_smpl_npz, write_smpl_npz

CACHE_VERSION = 2


def _read_masks(paths: Sequence[Path], calib: CameraCalib) -> np.ndarray:
    """(N, H, W) bool masks of one view, each checked against its image size."""
    try:
        masks = np.stack([read_mask(p) for p in paths])
    except MaskReadError as err:
        raise SequenceError(str(err)) from None
    if masks.shape[1:] != (calib.height, calib.width):
        raise SequenceError(f"{paths[0]}: mask is {masks.shape[2]}x{masks.shape[1]}, "
                            f"its image {calib.width}x{calib.height}")
    return masks


def union_masks(seq: RawSequence, cameras: Sequence[str]) -> tuple[np.ndarray, list[Path]]:
    """(C, F, H, W) bool union masks of the original (distorted) images, and the files read."""
    masks, files = [], []
    for cam in cameras:
        per_frame = []
        for frame in seq.frames:
            view = seq.views[(cam, frame)]
            paths = [view.union_mask] if view.union_mask is not None else list(view.person_masks)
            if not paths:
                raise SequenceError(f"camera {cam}, frame {frame}: no foreground mask to refine the initialisation "
                                    f"with (turn silhouette_fit off, or add masks)")
            per_frame.append(_read_masks(paths, seq.cameras[cam]).any(axis=0))
            files.extend(paths)
        masks.append(np.stack(per_frame))
    return np.stack(masks), files


def person_masks(seq: RawSequence, cameras: Sequence[str]) -> tuple[np.ndarray | None, list[Path]]:
    """(C, F, P, H, W) bool visible part of each person (people in `seq.person_ids` order) and the
    files read, or (None, []) when some view lacks per-person masks: with a warning naming the
    missing file when others exist (the fit then covers the union masks only)."""
    people = len(seq.person_ids)
    if any(len(seq.views[(cam, frame)].person_masks) != people for cam in cameras for frame in seq.frames):
        if seq.missing_person_mask is not None:
            LOG.warning(person_masks_off_message(seq))
        return None, []
    files = [path for cam in cameras for frame in seq.frames for path in seq.views[(cam, frame)].person_masks]
    masks = np.stack([np.stack([_read_masks(seq.views[(cam, frame)].person_masks, seq.cameras[cam])
                                for frame in seq.frames]) for cam in cameras])
    return masks, files


def keypoint_detections(seq: RawSequence, cameras: Sequence[str]) -> tuple[np.ndarray | None, list[Path]]:
    """(C, F, P, 24, 3) 2D detections of the 24 SMPL joints from ``annots/`` (people in
    `seq.person_ids` order, confidence 0 where a person is absent) and the files read, or (None, [])
    when the sequence has none or they do not hold the 24 SMPL joints (said in a warning)."""
    folder = seq.root / "annots"
    if not folder.is_dir():
        return None, []
    try:
        detections = read_annots_folder(folder, cameras, seq.frames)
    except (FileNotFoundError, FormatError) as err:
        LOG.warning("2D keypoints left out of the silhouette fit: %s", err)
        return None, []
    num_views, num_frames = len(cameras), len(seq.frames)
    empty = np.zeros((num_views, num_frames, NUM_JOINTS, 3))
    stacked = np.stack([detections.get(pid, empty) for pid in seq.person_ids], axis=2)
    files = [folder / cam / f"{frame:06d}.json" for cam in cameras for frame in seq.frames]
    return stacked, files


def _cache_key(seq: RawSequence, cameras: Sequence[str], files: Sequence[Path], body: BodyModel,
               config: SilhouetteFitConfig) -> str:
    parts = [str(CACHE_VERSION), source_digest(), str(body.model_path), json.dumps(asdict(config), sort_keys=True),
             json.dumps(list(cameras)), json.dumps([int(f) for f in seq.frames])]
    for cam in cameras:
        calib = seq.cameras[cam]
        parts.append(np.concatenate([calib.K.ravel(), calib.dist, calib.R.ravel(), calib.T]).tobytes().hex())
    for pid in sorted(seq.init):
        s = seq.init[pid]
        parts.append(b"".join(np.ascontiguousarray(a, dtype=np.float64).tobytes()
                              for a in (s.betas, s.body_pose, s.global_orient, s.transl)).hex())
    for path in files:
        stat = Path(path).stat()
        parts.append(f"{path}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:16]


def refine_init_with_silhouettes(seq: RawSequence, cameras: Sequence[str], body: BodyModel,
                                 config: SilhouetteFitConfig, cache_dir: Path | None) -> dict[int, SmplSequence]:
    """The sequence's initialisation fitted to the masks of ``cameras`` (cached)."""
    masks, files = union_masks(seq, cameras)
    people_masks, people_files = person_masks(seq, cameras) if config.use_person_masks else (None, [])
    keypoints, keypoint_files = keypoint_detections(seq, cameras) if config.keypoint_weight > 0 else (None, [])
    key = _cache_key(seq, cameras, files + people_files + keypoint_files, body, config)
    cached = cache_dir / "silhouette_fit" / f"{key}.npz" if cache_dir is not None else None
    if cached is not None and cached.is_file():
        people = read_smpl_npz(cached)
        if sorted(people) == sorted(seq.init):
            announce_cached(cached)
            return people
    LOG.info("refining the initial SMPL of %d people against the %s masks of %d cameras x %d frames",
             len(seq.init), "union and per-person" if people_masks is not None else "union", len(cameras),
             len(seq.frames))
    with FitStage(len(seq.init), len(seq.frames), len(cameras), config, cached):
        people = fit_shape_to_silhouettes(body, [seq.cameras[c] for c in cameras], masks, seq.init, config,
                                          progress=True, person_masks=people_masks, keypoints2d=keypoints)
    if cached is not None:
        write_smpl_npz(cached, people)
    return people
