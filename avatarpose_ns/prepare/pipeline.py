"""The steps of `avatarpose-prepare`, in order: calibration, frames, detection, reconstruction,
SMPL initialisation, masks, annots, previews and a summary. See docs/data.md ("Your own video")."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import cv2
import numpy as np
import tyro
from rich.console import Console
from rich.progress import Progress

from avatarpose_ns.body.body_model import BodyModel
from avatarpose_ns.fitting.smpl_fit import fit_smpl_to_joints
from avatarpose_ns.fitting.smpl_fit_2d import fit_smpl_to_keypoints2d
from avatarpose_ns.io.cameras import write_cameras
from avatarpose_ns.io.easymocap import SmplSequence, write_annots, write_keypoints3d_folder, write_smpl_npz
from avatarpose_ns.prepare.calibration import read_calibration
from avatarpose_ns.prepare.detections import read_detections, read_masks, run_detector
from avatarpose_ns.prepare.frames import FrameRange, VideoError, check_lengths, extract_frames, find_videos, match_videos, probe_video
from avatarpose_ns.prepare.masks import person_masks, write_masks
from avatarpose_ns.prepare.preview import draw_view, print_summary, write_preview
from avatarpose_ns.prepare.reconstruct import Reconstruction, ReconstructConfig, reconstruct_sequence
from avatarpose_ns.prepare.skeletons import SKELETONS, to_smpl

LOG = logging.getLogger("avatarpose_ns.prepare")


@dataclass
class PrepareConfig:
    """Extract frames, detect and triangulate people, fit SMPL and write masks and annots, in the
    EasyMocap / AvatarPose layout that `ns-train ... easymocap-data --data <output-dir>` reads."""

    videos: list[Path]
    """a folder of videos, or video files; each named after its camera (cam01.mp4 for camera cam01)"""
    calibration: Path
    """intri.yml/extri.yml (or their folder), a Pose2Sim .toml or a Qualisys .qca.txt"""
    output_dir: Path
    """the sequence folder to write"""
    frames: str = ":"
    """start:stop:step of the video frames, as a Python slice (e.g. 0:100:10)"""
    num_people: int | None = None
    """keep the people seen in most frames (default: everyone tracked inside the capture)"""
    allow_length_mismatch: bool = False
    """videos of different lengths: trim them to the shortest (with a warning) instead of an error"""
    detections: Path | None = None
    """precomputed detections <cam>/<frame:06d>.npz (keypoints, masks); default: run mediapipe"""
    skeleton: str = "blazepose"
    """keypoint layout of the detections: blazepose (33, mediapipe) or coco (17)"""
    max_people_per_view: int = 4
    """people searched for in each image, one after another"""
    refine_2d: bool = True
    """refine the SMPL fit to the 2D keypoints of every view"""
    body_model_path: Path | None = None
    """an SMPL model file (default: the built-in body)"""
    min_frames_with_people: float = 0.5
    """fraction of the frames in which someone must be triangulated; fewer is an error (the detector or
    the calibration is off, or the frames miss the people)"""
    reconstruct: Annotated[ReconstructConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=ReconstructConfig)
    """association, triangulation, tracking and the capture volume"""


def _interpolate(joints: np.ndarray, conf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frames where a person is not triangulated: joints interpolated from its other frames, confidence 0."""
    filled, conf = joints.copy(), conf.copy()
    positions = np.arange(len(joints))
    for j in range(joints.shape[1]):
        seen = conf[:, j] > 0
        if 0 < seen.sum() < len(joints):
            for k in range(3):
                filled[:, j, k] = np.interp(positions, positions[seen], joints[seen, j, k])
    return np.nan_to_num(filled), conf


def check_people_found(result: Reconstruction, frames: list[int], cam_names: list[str], det_root: Path,
                       min_fraction: float, num_people: int | None) -> None:
    """An error when nobody is triangulated in most frames (too little to fit anyone to); a warning when
    tracks beyond ``--num-people`` are left out, or fewer people than that are found."""
    empty = [f for f in frames if not any(f in track for track in result.people.values())]
    if len(empty) > (1 - min_fraction) * len(frames) or not result.people:
        detected = {f: dict(zip(cam_names, n)) for f, n in zip(frames, result.detections_per_frame)}
        shown = dict(list(detected.items())[:4])
        raise ValueError(f"{det_root}: nobody was triangulated in {len(empty)} of {len(frames)} frames (at most "
                         f"{1 - min_fraction:.0%} may have nobody; --min-frames-with-people); people detected per "
                         f"view in the first frames: {shown}. A person needs matching detections in two views or "
                         "more, inside the capture volume: check the calibration (preview/), the videos' "
                         "camera names and --frames")
    beyond = [d for d in result.dropped if "beyond --num-people" in d]
    if beyond:
        LOG.warning("%d more people than --num-people %d were tracked and left out: %s", len(beyond), num_people,
                    "; ".join(beyond))
    if num_people is not None and len(result.people) < num_people:
        LOG.warning("--num-people %d, but only %d people were tracked", num_people, len(result.people))


def prepare(config: PrepareConfig, console: Console | None = None) -> dict:
    """Write the sequence folder; returns the summary's numbers."""
    console = console or Console()
    out = Path(config.output_dir)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if config.skeleton not in SKELETONS:
        raise ValueError(f"--skeleton {config.skeleton!r}: expected one of {sorted(SKELETONS)}")
    skeleton = SKELETONS[config.skeleton]
    cameras = read_calibration(config.calibration)
    videos = match_videos(list(cameras), find_videos(config.videos), config.calibration)
    infos = {cam: probe_video(path) for cam, path in videos.items()}
    for cam, info in infos.items():
        calib = cameras[cam]
        if calib.width and (calib.width, calib.height) != (info.width, info.height):
            raise VideoError(f"{info.path}: video is {info.width}x{info.height} but {config.calibration} gives camera "
                             f"'{cam}' {calib.width}x{calib.height}")
        calib.width, calib.height = info.width, info.height
    length = check_lengths(infos, config.allow_length_mismatch)
    frames = FrameRange.parse(config.frames).frames(length)
    if not frames:
        raise VideoError(f"--frames {config.frames}: selects none of the {length} frames of the videos")
    cams = list(cameras.values())
    names = list(cameras)
    write_cameras(out, cams)
    with Progress(console=console, transient=True) as progress:
        extract_frames(videos, frames, out / "images", progress)
    timings["frames"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    det_root = config.detections
    if det_root is None:
        det_root = out / "detections"
        images = {(cam, f): out / "images" / cam / f"{f:06d}.jpg" for cam in names for f in frames}
        console.print(f"detecting people with mediapipe in {len(images)} images")
        run_detector(images, det_root, config.max_people_per_view)
    raw, files = read_detections(det_root, names, frames)
    timings["detection"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    result = reconstruct_sequence(raw, cams, frames, config.reconstruct, config.num_people)
    check_people_found(result, frames, names, det_root, config.min_frames_with_people, config.num_people)
    pids = sorted(result.people)
    keypoints3d = {f: {} for f in frames}
    annots = {pid: np.zeros((len(names), len(frames), 24, 3)) for pid in pids}
    errors_px: dict[str, list[float]] = {cam: [] for cam in names}
    for pid, track in result.people.items():
        for f, person in track.items():
            keypoints3d[f][pid] = to_smpl(np.c_[np.nan_to_num(person.points), person.confidence], skeleton)
            fi = frames.index(f)
            for c, d in person.views.items():
                annots[pid][c, fi] = to_smpl(raw[fi][c][d], skeleton)
            for c, cam in enumerate(names):
                inlier_errors = person.errors[c][np.isfinite(person.points).all(-1) & np.isfinite(person.errors[c])]
                errors_px[cam] += inlier_errors[inlier_errors < config.reconstruct.reprojection_threshold
                                                * np.hypot(cams[c].width, cams[c].height)].tolist()
    write_keypoints3d_folder(out / "keypoints3d", keypoints3d)
    for c, cam in enumerate(names):
        for fi, f in enumerate(frames):
            write_annots(out / "annots" / cam / f"{f:06d}.json", [(pid, annots[pid][c, fi]) for pid in pids],
                         cams[c].width, cams[c].height, filename=f"images/{cam}/{f:06d}.jpg")
    timings["reconstruction"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    body = BodyModel(config.body_model_path)
    people: dict[int, SmplSequence] = {}
    for pid in pids:
        joints = np.full((len(frames), 24, 3), np.nan)
        conf = np.zeros((len(frames), 24))
        for fi, f in enumerate(frames):
            if pid in keypoints3d[f]:
                joints[fi], conf[fi] = keypoints3d[f][pid][:, :3], keypoints3d[f][pid][:, 3]
        joints, conf = _interpolate(joints, conf)
        seq = fit_smpl_to_joints(body, joints, conf, np.asarray(frames))
        if config.refine_2d:
            seq = fit_smpl_to_keypoints2d(body, cams, annots[pid], seq)
        people[pid] = seq
    write_smpl_npz(out / "smpl_init" / "smpl.npz", people)
    timings["smpl"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    middle = frames[len(frames) // 2]
    for c, cam in enumerate(names):
        shape = (cams[c].height, cams[c].width)
        for fi, f in enumerate(frames):
            owners = {pid: (result.people[pid][f].views.get(c, -1) if f in result.people[pid] else -1) for pid in pids}
            masks = person_masks(read_masks(files[cam, f]), owners, shape)
            write_masks(out / "mask", cam, f, masks, shape)
            if f == middle:
                image = cv2.imread(str(out / "images" / cam / f"{f:06d}.jpg"))
                drawn = {pid: (keypoints3d[f][pid], annots[pid][c, fi] if owners[pid] >= 0 else None)
                         for pid in pids if pid in keypoints3d[f]}
                write_preview(out / "preview" / f"{cam}.jpg", draw_view(image, cams[c], drawn, masks))
    timings["masks and previews"] = time.perf_counter() - t0

    people_per_frame = {f: len(keypoints3d[f]) for f in frames}
    detected = {f: result.detections_per_frame[i] for i, f in enumerate(frames)}
    print_summary(console, frames, names, people_per_frame, detected, errors_px, timings, result.dropped)
    return {"people_per_frame": people_per_frame, "detected": detected, "timings": timings,
            "errors_px": {cam: float(np.mean(e)) if e else None for cam, e in errors_px.items()},
            "person_ids": pids, "dropped": result.dropped}
