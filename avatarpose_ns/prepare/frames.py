"""Frames of calibrated videos written as ``images/<cam>/<frame:06d>.jpg``.

Each video is matched to one calibrated camera by its file name; every mismatch (a camera
without a video, a video without a camera, an unreadable file, videos of different lengths)
is one error naming the file, checked before any frame is written.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Sequence

import cv2
from rich.progress import Progress

from avatarpose_ns.commands import InputError

LOG = logging.getLogger("avatarpose_ns.prepare")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm")
JPEG_QUALITY = 95


class VideoError(InputError):
    """A video cannot be used as it is; the message names the file and the problem."""


@dataclass(frozen=True)
class FrameRange:
    """Frames ``start, start + step, ...`` below ``stop`` (None: to the end of the videos)."""

    start: int = 0
    stop: int | None = None
    step: int = 1

    @classmethod
    def parse(cls, text: str) -> FrameRange:
        """``a:b:step`` as in a Python slice; every part optional (``:``, ``0:100:10``, ``50:``)."""
        parts = text.split(":")
        if len(parts) > 3:
            raise ValueError(f"--frames {text!r}: expected start:stop:step")
        try:
            numbers = [int(p) if p.strip() else None for p in parts] + [None] * (3 - len(parts))
        except ValueError:
            raise ValueError(f"--frames {text!r}: start, stop and step must be integers") from None
        start, stop, step = numbers
        start = 0 if start is None else start
        step = 1 if step is None else step
        if start < 0 or step < 1 or (stop is not None and stop <= start):
            raise ValueError(f"--frames {text!r}: need 0 <= start < stop and step >= 1")
        return cls(start, stop, step)

    def frames(self, length: int) -> list[int]:
        stop = length if self.stop is None else min(self.stop, length)
        return list(range(self.start, stop, self.step))


@dataclass
class VideoInfo:
    path: Path
    frame_count: int
    width: int
    height: int
    fps: float


def find_videos(sources: Sequence[Path]) -> list[Path]:
    """Video files from folders (their video files, not recursive) and files given directly."""
    videos: list[Path] = []
    for source in sources:
        source = Path(source)
        if source.is_dir():
            found = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
            if not found:
                raise VideoError(f"{source}: no video files ({', '.join(VIDEO_SUFFIXES)})")
            videos += found
        elif source.is_file():
            videos.append(source)
        else:
            raise VideoError(f"{source}: video file or folder not found")
    return videos


def match_videos(cameras: Sequence[str], videos: Sequence[Path], calibration: Path) -> dict[str, Path]:
    """Camera name -> video: the file whose stem is the camera name, else the one stem that contains
    it (``cam01`` in ``trial_cam01``). A camera with no video or a video with no camera is an error."""
    by_stem: dict[str, Path] = {}
    for video in videos:
        if video.stem in by_stem:
            raise VideoError(f"{video}: two videos named '{video.stem}' ({by_stem[video.stem]})")
        by_stem[video.stem] = video
    matched: dict[str, Path] = {}
    for cam in cameras:
        if cam in by_stem:
            matched[cam] = by_stem[cam]
            continue
        candidates = [v for stem, v in by_stem.items() if cam.lower() in stem.lower()]
        if len(candidates) == 1:
            matched[cam] = candidates[0]
        elif candidates:
            raise VideoError(f"{calibration}: camera '{cam}' matches several videos {[c.name for c in candidates]}")
        else:
            raise VideoError(f"{calibration}: camera '{cam}' has no video (videos: {[v.name for v in videos]}); "
                             "name each video after its camera")
    used = set(matched.values())
    if len(used) != len(matched):
        raise VideoError(f"{calibration}: two cameras match the same video ({matched})")
    extra = [v for v in videos if v not in used]
    if extra:
        raise VideoError(f"{extra[0]}: video has no camera in {calibration} (cameras: {list(cameras)})")
    return matched


def probe_video(path: Path) -> VideoInfo:
    """Frame count and size; a file OpenCV cannot open or decode is an error naming it.

    The count is the container's, checked by decoding the first frame; a container that does not
    state one is counted by decoding.
    """
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise VideoError(f"{path}: not a readable video (OpenCV cannot open it)")
        ok, frame = capture.read()
        if not ok or frame is None:
            raise VideoError(f"{path}: not a readable video (no frame could be decoded)")
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        if count <= 0:
            count = 1
            while capture.grab():
                count += 1
        return VideoInfo(path, count, frame.shape[1], frame.shape[0], fps)
    finally:
        capture.release()


def check_lengths(infos: dict[str, VideoInfo], allow_mismatch: bool) -> int:
    """The common frame count; different counts are an error unless ``allow_mismatch`` (then the
    shortest, with a warning)."""
    counts = {cam: info.frame_count for cam, info in infos.items()}
    shortest = min(counts, key=counts.get)
    longest = max(counts, key=counts.get)
    if counts[shortest] == counts[longest]:
        return counts[shortest]
    message = (f"{infos[shortest].path}: {counts[shortest]} frames, but {infos[longest].path} has "
               f"{counts[longest]} (frame counts: {counts})")
    if not allow_mismatch:
        raise VideoError(message + "; the videos must be synchronised and equally long (--allow-length-mismatch "
                         "trims them to the shortest)")
    LOG.warning("%s; trimming every video to %d frames", message, counts[shortest])
    return counts[shortest]


def extract_frames(videos: dict[str, Path], frames: Sequence[int], image_root: Path,
                   progress: Progress | None = None) -> None:
    """Decode each video once, writing the selected frames as ``image_root/<cam>/<frame:06d>.jpg``."""
    wanted = sorted(frames)
    for cam, path in videos.items():
        folder = image_root / cam
        folder.mkdir(parents=True, exist_ok=True)
        task = progress.add_task(f"frames of {cam}", total=len(wanted)) if progress is not None else None
        capture = cv2.VideoCapture(str(path))
        try:
            index, todo = 0, iter(wanted)
            target = next(todo, None)
            while target is not None:
                if index < target:
                    if not capture.grab():
                        raise VideoError(f"{path}: ends at frame {index}, before frame {target}")
                    index += 1
                    continue
                ok, image = capture.read()
                if not ok or image is None:
                    raise VideoError(f"{path}: frame {index} cannot be decoded")
                if not cv2.imwrite(str(folder / f"{index:06d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
                    raise VideoError(f"{folder / f'{index:06d}.jpg'}: cannot be written")
                index += 1
                target = next(todo, None)
                if task is not None:
                    progress.advance(task)
        finally:
            capture.release()
