"""`avatarpose-prepare`: calibrated videos to an `easymocap-data` sequence folder."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import tyro
from rich.console import Console
from rich.logging import RichHandler

from avatarpose_ns.prepare.calibration import CalibrationError
from avatarpose_ns.prepare.detections import DetectionError
from avatarpose_ns.prepare.frames import VideoError
from avatarpose_ns.prepare.pipeline import PrepareConfig, prepare
from avatarpose_ns.prepare.reconstruct import ReconstructConfig


@dataclass
class PrepareArgs:
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
    volume: tuple[float, float, float, float, float, float] | None = None
    """capture box xmin xmax ymin ymax zmin zmax in metres; default: the cameras' common field of view"""
    min_views: int | None = None
    """views whose image a person's centre must be in (default all but one, at least two)"""
    refine_2d: bool = True
    """refine the SMPL fit to the 2D keypoints of every view"""
    body_model_path: Path | None = None


def entrypoint() -> None:
    args = tyro.cli(PrepareArgs)
    console = Console()
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[RichHandler(console=console)])
    config = PrepareConfig(videos=args.videos, calibration=args.calibration, output_dir=args.output_dir,
                           frames=args.frames, num_people=args.num_people,
                           allow_length_mismatch=args.allow_length_mismatch, detections=args.detections,
                           skeleton=args.skeleton, refine_2d=args.refine_2d, body_model_path=args.body_model_path,
                           reconstruct=ReconstructConfig(volume=args.volume, min_views=args.min_views))
    try:
        prepare(config, console)
    except (CalibrationError, VideoError, DetectionError, ValueError) as err:
        console.print(f"[red]error:[/red] {err}")
        sys.exit(1)


if __name__ == "__main__":
    entrypoint()
