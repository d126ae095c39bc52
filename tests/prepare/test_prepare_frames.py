"""Frames of `avatarpose-prepare` from tiny videos written here with cv2.VideoWriter."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from avatarpose_ns.prepare.frames import (FrameRange, VideoError, check_lengths, extract_frames, find_videos,
                                          match_videos, probe_video)


def _write_video(path, num_frames: int, size=(64, 48)) -> None:
    """Frame i is uniformly grey at level 8 i + 20, so the extracted file tells which frame it is."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, size)
    assert writer.isOpened()
    for i in range(num_frames):
        writer.write(np.full((size[1], size[0], 3), 8 * i + 20, np.uint8))
    writer.release()


def test_frame_range_parsing():
    assert FrameRange.parse("0:100:10").frames(1000) == list(range(0, 100, 10))
    assert FrameRange.parse("5:").frames(8) == [5, 6, 7]
    assert FrameRange.parse(":").frames(3) == [0, 1, 2]
    assert FrameRange.parse("2:50:3").frames(10) == [2, 5, 8]
    for bad in ("a:b", "5:2", "0:10:0", "1:2:3:4"):
        with pytest.raises(ValueError, match="--frames"):
            FrameRange.parse(bad)


def test_extracts_the_selected_frames(tmp_path):
    for cam in ("cam01", "cam02"):
        _write_video(tmp_path / f"{cam}.avi", 12)
    videos = match_videos(["cam01", "cam02"], find_videos([tmp_path]), tmp_path / "calib.toml")
    info = probe_video(videos["cam01"])
    assert (info.frame_count, info.width, info.height) == (12, 64, 48)
    frames = FrameRange.parse("1:12:4").frames(info.frame_count)
    extract_frames(videos, frames, tmp_path / "images")
    for cam in ("cam01", "cam02"):
        files = sorted(p.name for p in (tmp_path / "images" / cam).iterdir())
        assert files == ["000001.jpg", "000005.jpg", "000009.jpg"]
        for frame in frames:
            level = cv2.imread(str(tmp_path / "images" / cam / f"{frame:06d}.jpg")).mean()
            assert abs(level - (8 * frame + 20)) < 3, (cam, frame, level)


def test_matching_errors_name_the_file(tmp_path):
    calib = tmp_path / "Calib.qca.txt"
    a, b = tmp_path / "trial_cam01.mp4", tmp_path / "cam02.mp4"
    assert match_videos(["cam01", "cam02"], [a, b], calib) == {"cam01": a, "cam02": b}
    with pytest.raises(VideoError, match=r"Calib.qca.txt: camera 'cam03' has no video"):
        match_videos(["cam01", "cam02", "cam03"], [a, b], calib)
    with pytest.raises(VideoError, match=r"cam02.mp4: video has no camera in .*Calib.qca.txt"):
        match_videos(["cam01"], [a, b], calib)
    with pytest.raises(VideoError, match="not found"):
        find_videos([tmp_path / "nowhere"])


def test_unreadable_video_is_named(tmp_path):
    broken = tmp_path / "cam01.mp4"
    broken.write_bytes(b"not a video at all" * 10)
    with pytest.raises(VideoError, match=r"cam01.mp4: not a readable video"):
        probe_video(broken)


def test_length_mismatch_is_an_error_unless_allowed(tmp_path, caplog):
    _write_video(tmp_path / "cam01.avi", 10)
    _write_video(tmp_path / "cam02.avi", 7)
    infos = {cam: probe_video(tmp_path / f"{cam}.avi") for cam in ("cam01", "cam02")}
    with pytest.raises(VideoError, match=r"cam02.avi: 7 frames, but .*cam01.avi has 10"):
        check_lengths(infos, allow_mismatch=False)
    with caplog.at_level(logging.WARNING, logger="avatarpose_ns.prepare"):
        assert check_lengths(infos, allow_mismatch=True) == 7
    assert "trimming every video to 7 frames" in caplog.text
