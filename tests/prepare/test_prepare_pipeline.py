"""`avatarpose-prepare` end to end on tiny videos and precomputed synthetic detections (no mediapipe)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from avatarpose_ns.io.cameras import project_points, read_cameras, ring_rig, write_cameras
from avatarpose_ns.io.easymocap import read_annots_folder, read_keypoints3d_folder, read_smpl_npz
from avatarpose_ns.prepare.frames import VideoError
from avatarpose_ns.prepare.pipeline import PrepareConfig, prepare

W, H = 160, 120
FRAMES = [0, 2, 4]


def _coco_person(offset) -> np.ndarray:
    """17 COCO keypoints of a standing person (metres, z up) at ``offset``."""
    x = np.array([0, 0.03, -0.03, 0.07, -0.07, 0.18, -0.18, 0.22, -0.22, 0.25, -0.25, 0.1, -0.1, 0.1, -0.1,
                  0.1, -0.1])
    z = np.array([1.65, 1.68, 1.68, 1.65, 1.65, 1.45, 1.45, 1.18, 1.18, 0.92, 0.92, 0.95, 0.95, 0.5, 0.5, 0.08,
                  0.08])
    return np.c_[x, np.zeros(17), z] + np.asarray(offset)


@pytest.fixture
def capture(tmp_path):
    cams = ring_rig(3, radius=3.0, width=W, height=H, fov_deg=60, rng=np.random.default_rng(0))
    write_cameras(tmp_path / "calib", cams)
    (tmp_path / "videos").mkdir()
    for cam in cams:
        writer = cv2.VideoWriter(str(tmp_path / "videos" / f"{cam.name}.avi"), cv2.VideoWriter_fourcc(*"MJPG"),
                                 25.0, (W, H))
        for i in range(5):
            writer.write(np.full((H, W, 3), 40 + 10 * i, np.uint8))
        writer.release()
    rng = np.random.default_rng(3)
    for f in FRAMES:
        people = [_coco_person((-0.4, 0.02 * f, 0)), _coco_person((0.4, -0.02 * f, 0))]
        for cam in cams:
            kps, masks = [], []
            for points in people[::-1] if cam.name == "01" else people:
                uv = project_points(points, cam) + rng.normal(0, 0.2, (17, 2))
                kps.append(np.c_[uv, np.full(17, 0.9)])
                mask = np.zeros((H, W), np.uint8)
                lo, hi = uv.min(0).astype(int), uv.max(0).astype(int)
                mask[max(lo[1], 0):hi[1], max(lo[0], 0):hi[0]] = 230
                masks.append(mask)
            (tmp_path / "det" / cam.name).mkdir(parents=True, exist_ok=True)
            np.savez_compressed(tmp_path / "det" / cam.name / f"{f:06d}.npz", keypoints=np.stack(kps),
                                masks=np.stack(masks))
    return tmp_path, cams


def test_writes_the_easymocap_layout(capture):
    root, cams = capture
    out = root / "seq"
    summary = prepare(PrepareConfig(videos=[root / "videos"], calibration=root / "calib", output_dir=out,
                                    frames="0:5:2", detections=root / "det", skeleton="coco", refine_2d=False))
    assert summary["people_per_frame"] == {0: 2, 2: 2, 4: 2}
    assert summary["person_ids"] == [0, 1]
    assert max(summary["errors_px"].values()) < 1.0
    names = [c.name for c in cams]
    assert list(read_cameras(out)) == names
    for cam in names:
        assert sorted(p.name for p in (out / "images" / cam).iterdir()) == [f"{f:06d}.jpg" for f in FRAMES]
        for pid in (0, 1):
            assert sorted(p.name for p in (out / "mask" / cam / str(pid)).iterdir()) == [f"{f:06d}.png" for f in FRAMES]
        assert (out / "preview" / f"{cam}.jpg").is_file()
    annots = read_annots_folder(out / "annots", names, FRAMES)
    assert sorted(annots) == [0, 1] and annots[0].shape == (3, 3, 24, 3)
    # person 0 is the one on the left (x = -0.4) in every view and frame, whatever the detection order
    kp3d = read_keypoints3d_folder(out / "keypoints3d")
    for f in FRAMES:
        assert kp3d[f][0][16, 0] < 0 < kp3d[f][1][16, 0]
        np.testing.assert_allclose(kp3d[f][0][16, :3], _coco_person((-0.4, 0.02 * f, 0))[5], atol=0.01)
    smpl = read_smpl_npz(out / "smpl_init" / "smpl.npz")
    assert sorted(smpl) == [0, 1] and list(smpl[0].frames) == FRAMES
    assert abs(smpl[0].transl[0, 0] - -0.4) < 0.15 and abs(smpl[1].transl[0, 0] - 0.4) < 0.15


def test_a_camera_without_video_is_named(capture):
    root, cams = capture
    (root / "videos" / "02.avi").unlink()
    with pytest.raises(VideoError, match="camera '02' has no video"):
        prepare(PrepareConfig(videos=[root / "videos"], calibration=root / "calib", output_dir=root / "seq",
                              detections=root / "det", skeleton="coco"))


def test_nobody_in_most_frames_is_an_error(capture):
    root, cams = capture
    for f in FRAMES[1:]:
        for cam in cams:
            np.savez_compressed(root / "det" / cam.name / f"{f:06d}.npz", keypoints=np.zeros((0, 17, 3)),
                                masks=np.zeros((0, H, W), np.uint8))
    config = PrepareConfig(videos=[root / "videos"], calibration=root / "calib", output_dir=root / "seq",
                           frames="0:5:2", detections=root / "det", skeleton="coco", refine_2d=False)
    with pytest.raises(ValueError, match=r"det: nobody was triangulated in 2 of 3 frames"):
        prepare(config)
    config.min_frames_with_people = 0.3  # one frame of three is enough then
    assert prepare(config)["people_per_frame"] == {0: 2, 2: 0, 4: 0}


def test_more_people_than_num_people_is_a_warning(capture, caplog):
    root, _ = capture
    summary = prepare(PrepareConfig(videos=[root / "videos"], calibration=root / "calib", output_dir=root / "seq",
                                    frames="0:5:2", detections=root / "det", skeleton="coco", refine_2d=False,
                                    num_people=1))
    assert summary["person_ids"] == [0] and summary["people_per_frame"] == {0: 1, 2: 1, 4: 1}
    assert "1 more people than --num-people 1 were tracked and left out" in caplog.text
    caplog.clear()
    prepare(PrepareConfig(videos=[root / "videos"], calibration=root / "calib", output_dir=root / "seq3",
                          frames="0:5:2", detections=root / "det", skeleton="coco", refine_2d=False, num_people=3))
    assert "--num-people 3, but only 2 people were tracked" in caplog.text
