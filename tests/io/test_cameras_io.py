"""EasyMocap calibration I/O, projection and pixel rays."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from avatarpose_ns.io.cameras import (
    CameraCalib,
    pixel_rays,
    project_points,
    read_cameras,
    ring_rig,
    write_cameras,
)


def _rig() -> list[CameraCalib]:
    cams = ring_rig(4, radius=3.0, width=320, height=240, dist=(-0.12, 0.03), rng=np.random.default_rng(3))
    # exercise every coefficient and a non-centred principal point on one camera
    cams[1].dist = np.array([-0.2, 0.05, 1e-3, -2e-3, 0.01])
    cams[1].K[0, 2] += 3.25
    cams[1].K[1, 1] *= 1.01
    return cams


def test_round_trip_exact(tmp_path):
    cams = _rig()
    write_cameras(tmp_path, cams)
    back = read_cameras(tmp_path)
    assert list(back) == [c.name for c in cams] == ["00", "01", "02", "03"]
    for c in cams:
        b = back[c.name]
        for attr in ("K", "dist", "R", "T"):
            np.testing.assert_allclose(getattr(b, attr), getattr(c, attr), rtol=0, atol=1e-9, err_msg=attr)
        assert (b.width, b.height) == (c.width, c.height) == (320, 240)
        np.testing.assert_allclose(b.center, c.center, atol=1e-9)


def test_files_parse_with_cv2_filestorage(tmp_path):
    cams = _rig()
    write_cameras(tmp_path, cams)
    for fname in ("intri.yml", "extri.yml"):
        assert (tmp_path / fname).read_text().startswith("%YAML:1.0")
        fs = cv2.FileStorage(str(tmp_path / fname), cv2.FILE_STORAGE_READ)
        names = fs.getNode("names")
        assert names.isSeq() and names.size() == len(cams)
        assert [names.at(i).string() for i in range(names.size())] == [c.name for c in cams]
        fs.release()
    fs = cv2.FileStorage(str(tmp_path / "intri.yml"), cv2.FILE_STORAGE_READ)
    np.testing.assert_allclose(fs.getNode("K_01").mat(), cams[1].K, atol=1e-12)
    assert fs.getNode("dist_01").mat().shape == (1, 5)
    assert int(fs.getNode("H_01").real()) == 240 and int(fs.getNode("W_01").real()) == 320
    fs.release()
    fs = cv2.FileStorage(str(tmp_path / "extri.yml"), cv2.FILE_STORAGE_READ)
    assert fs.getNode("R_02").mat().shape == (3, 1)
    assert fs.getNode("T_02").mat().shape == (3, 1)
    np.testing.assert_allclose(cv2.Rodrigues(fs.getNode("R_02").mat())[0], fs.getNode("Rot_02").mat(), atol=1e-12)
    fs.release()


def _rewrite_extri(path, cams, *, with_rot=True, rot_override=None):
    fs = cv2.FileStorage(str(path / "extri.yml"), cv2.FILE_STORAGE_WRITE)
    fs.startWriteStruct("names", cv2.FileNode_SEQ)
    for c in cams:
        fs.write("", c.name)
    fs.endWriteStruct()
    for c in cams:
        fs.write(f"R_{c.name}", c.rvec.reshape(3, 1))
        if with_rot:
            fs.write(f"Rot_{c.name}", c.R if rot_override is None else rot_override)
        fs.write(f"T_{c.name}", c.T.reshape(3, 1))
    fs.release()


def _rewrite_intri(path, cams, overrides=None):
    overrides = overrides or {}
    fs = cv2.FileStorage(str(path / "intri.yml"), cv2.FILE_STORAGE_WRITE)
    fs.startWriteStruct("names", cv2.FileNode_SEQ)
    for c in cams:
        fs.write("", c.name)
    fs.endWriteStruct()
    for c in cams:
        fs.write(f"K_{c.name}", overrides.get(f"K_{c.name}", c.K))
        fs.write(f"dist_{c.name}", overrides.get(f"dist_{c.name}", c.dist.reshape(1, 5)))
    fs.release()


def test_camera_missing_from_extri(tmp_path):
    cams = _rig()
    write_cameras(tmp_path, cams)
    _rewrite_extri(tmp_path, cams[:2] + cams[3:])
    with pytest.raises(ValueError, match=r"'02'.*extri\.yml|extri\.yml.*'02'"):
        read_cameras(tmp_path)


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="intri.yml"):
        read_cameras(tmp_path)
    write_cameras(tmp_path, _rig())
    (tmp_path / "extri.yml").unlink()
    with pytest.raises(FileNotFoundError, match="extri.yml"):
        read_cameras(tmp_path)


def test_rodrigues_only_and_no_size(tmp_path):
    cams = _rig()
    write_cameras(tmp_path, cams)
    _rewrite_extri(tmp_path, cams, with_rot=False)
    _rewrite_intri(tmp_path, cams)  # no H_/W_
    back = read_cameras(tmp_path)
    for c in cams:
        np.testing.assert_allclose(back[c.name].R, c.R, atol=1e-9)
        assert back[c.name].width == 0 and back[c.name].height == 0


def test_bad_values(tmp_path):
    cams = _rig()
    write_cameras(tmp_path, cams)
    _rewrite_extri(tmp_path, cams, rot_override=np.diag([1.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"extri\.yml.*not a rotation"):
        read_cameras(tmp_path)

    write_cameras(tmp_path, cams)
    _rewrite_intri(tmp_path, cams, {"K_00": np.eye(3)[:2]})
    with pytest.raises(ValueError, match=r"intri\.yml.*K_00.*3x3"):
        read_cameras(tmp_path)

    bad_dist = cams[2].dist.reshape(1, 5).copy()
    bad_dist[0, 1] = np.nan
    _rewrite_intri(tmp_path, cams, {"dist_02": bad_dist})
    with pytest.raises(ValueError, match=r"intri\.yml.*dist_02.*non-finite"):
        read_cameras(tmp_path)


def test_ring_rig_looks_at_target():
    target = np.array([0.2, -0.1, 0.9])
    cams = ring_rig(6, radius=3.0, heights=(1.0, 2.3), width=256, height=256, look_at=target, rng=np.random.default_rng(0))
    assert [c.name for c in cams] == [f"{i:02d}" for i in range(6)]
    centres = []
    for c in cams:
        uv = project_points(target[None], c)[0]
        assert np.linalg.norm(uv - [127.5, 127.5]) < 1.0
        horizontal = np.linalg.norm((c.center - target)[:2])
        assert abs(horizontal - 3.0) < 0.1
        assert 2.9 < np.linalg.norm(c.center - target) < 3.4
        np.testing.assert_allclose(c.R @ c.R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(c.R) > 0
        # world up (+z) points up in the image (towards smaller v)
        up = project_points(target[None] + [0, 0, 0.3], c)[0]
        assert up[1] < uv[1] - 5
        centres.append(c.center)
    heights = sorted(c[2] for c in centres)
    assert heights[-1] - heights[0] > 0.8  # mixed heights
    azimuths = np.sort(np.arctan2(*(np.array(centres)[:, :2] - target[:2]).T[::-1]))
    assert np.diff(azimuths).min() > 0.6  # spread around the ring


def test_pixel_rays_match_project_points_with_distortion():
    cam = _rig()[1]  # k1 k2 p1 p2 k3 and an off-centre principal point
    origins, dirs = pixel_rays(cam)
    assert origins.shape == dirs.shape == (cam.width * cam.height, 3)
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(origins, np.broadcast_to(cam.center, origins.shape), atol=1e-12)
    rng = np.random.default_rng(0)
    idx = np.concatenate([rng.choice(len(dirs), 400, replace=False), [0, cam.width - 1, len(dirs) - 1]])
    points = origins[idx] + 2.0 * dirs[idx]
    uv = project_points(points, cam)
    expected = np.stack([idx % cam.width, idx // cam.width], axis=1).astype(float)
    assert np.abs(uv - expected).max() < 0.01
    # the rays really are distorted ones: an undistorted camera's rays differ
    plain = CameraCalib(cam.name, cam.K, np.zeros(5), cam.R, cam.T, cam.width, cam.height)
    _, dirs0 = pixel_rays(plain)
    assert np.degrees(np.arccos(np.clip(np.sum(dirs0[0] * dirs[0]), -1, 1))) > 0.5
