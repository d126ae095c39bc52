"""Calibration readers of `avatarpose-prepare`: Pose2Sim .toml, Qualisys .qca.txt, EasyMocap yml."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from avatarpose_ns.io.cameras import CameraCalib, look_at_rotation, project_points, read_cameras, write_cameras
from avatarpose_ns.prepare.calibration import CalibrationError, read_calibration

POINTS = np.array([[0.1, -0.2, 0.9], [0.5, 0.3, 1.6], [-0.4, 0.2, 0.1], [0.0, 0.0, 1.2]])


def _known_cameras() -> list[CameraCalib]:
    cams = []
    for i, (centre, size) in enumerate((((3.0, -1.0, 1.8), (1088, 1920)), ((-2.5, 2.0, 1.2), (640, 480)))):
        centre = np.array(centre)
        R = look_at_rotation(centre, np.array([0.0, 0.0, 1.0]))
        K = np.array([[1680.3 + 10 * i, 0.0, 533.1 + i], [0.0, 1681.9, 948.2 - 3 * i], [0.0, 0.0, 1.0]])
        dist = np.array([-0.021, 0.0043, 1.2e-5, -1.1e-5, 0.0])
        cams.append(CameraCalib(f"cam0{i + 1}", K, dist, R, -R @ centre, *size))
    return cams


def _reference_pixels(cam: CameraCalib) -> np.ndarray:
    """Pixels from the known camera with OpenCV directly (not through the readers' camera type)."""
    rvec = cv2.Rodrigues(cam.R)[0]
    return cv2.projectPoints(POINTS, rvec, cam.T.reshape(3, 1), cam.K, cam.dist)[0].reshape(-1, 2)


def _write_toml(path, cams: list[CameraCalib]) -> None:
    lines = []
    for c in cams:
        rvec = cv2.Rodrigues(c.R)[0].ravel()
        lines += [f"[{c.name}]", f'name = "{c.name}"', f"size = [ {c.width}.0, {c.height}.0]",
                  f"matrix = {[[repr(float(v)) for v in row] for row in c.K]}".replace("'", ""),
                  f"distortions = [ {c.dist[0]!r}, {c.dist[1]!r}, {c.dist[2]!r}, {c.dist[3]!r}]",
                  f"rotation = [ {rvec[0]!r}, {rvec[1]!r}, {rvec[2]!r}]",
                  f"translation = [ {c.T[0]!r}, {c.T[1]!r}, {c.T[2]!r}]", "fisheye = false", ""]
    lines += ["[metadata]", "adjusted = false", "error = 0.0", ""]
    path.write_text("\n".join(lines))


def _write_qca(path, cams: list[CameraCalib], left: int = 0, top: int = 0) -> None:
    """A Qualisys file of the known cameras: the inverse of the documented conversion, written here."""
    cameras = []
    for c in cams:
        M = np.diag([1.0, -1.0, -1.0]) @ c.R  # camera axes in Qualisys' convention (y up, looking down -z)
        centre_mm = c.center * 1000.0
        r = " ".join(f'r{i + 1}{j + 1}="{M[i, j]!r}"' for i in range(3) for j in range(3))
        d = c.dist * 64.0
        cameras.append(
            f'<camera active="1" avg-residual="0.4" model="none" serial="{c.name}" viewrotation="0">'
            f'<fov_video bottom="{top + c.height - 1}" left="{left}" right="{left + c.width - 1}" top="{top}"/>'
            f'<transform {r} x="{centre_mm[0]!r}" y="{centre_mm[1]!r}" z="{centre_mm[2]!r}"/>'
            f'<intrinsic centerPointU="{(c.K[0, 2] + left) * 64.0!r}" centerPointV="{(c.K[1, 2] + top) * 64.0!r}" '
            f'focalLengthU="{c.K[0, 0] * 64.0!r}" focalLengthV="{c.K[1, 1] * 64.0!r}" '
            f'radialDistortion1="{d[0]!r}" radialDistortion2="{d[1]!r}" radialDistortion3="0.0" '
            f'tangentalDistortion1="{d[2]!r}" tangentalDistortion2="{d[3]!r}" skew="0"/></camera>')
    path.write_text("<?xml version='1.0' encoding='ASCII'?><calibration><cameras>" + "".join(cameras)
                    + "</cameras></calibration>")


@pytest.mark.parametrize("kind", ["toml", "qca"])
def test_reprojection_matches_the_known_camera(tmp_path, kind):
    cams = _known_cameras()
    path = tmp_path / ("Calib.toml" if kind == "toml" else "Calib.qca.txt")
    (_write_toml if kind == "toml" else _write_qca)(path, cams)
    read = read_calibration(path)
    assert list(read) == [c.name for c in cams]
    for cam in cams:
        back = read[cam.name]
        assert (back.width, back.height) == (cam.width, cam.height)
        error = np.abs(project_points(POINTS, back) - _reference_pixels(cam)).max()
        assert error < 1e-6, f"{kind} {cam.name}: {error} px"


def test_qualisys_video_window_offset_moves_the_principal_point(tmp_path):
    cams = _known_cameras()
    _write_qca(tmp_path / "c.qca.txt", cams, left=16, top=8)
    read = read_calibration(tmp_path / "c.qca.txt")
    np.testing.assert_allclose(read["cam01"].K, cams[0].K, atol=1e-9)
    assert np.abs(project_points(POINTS, read["cam02"]) - _reference_pixels(cams[1])).max() < 1e-6


@pytest.mark.parametrize("kind", ["toml", "qca"])
def test_round_trip_through_the_project_files(tmp_path, kind):
    """toml / qca -> intri.yml + extri.yml (what the prepared sequence holds) -> the same cameras."""
    cams = _known_cameras()
    path = tmp_path / ("c.toml" if kind == "toml" else "c.qca.txt")
    (_write_toml if kind == "toml" else _write_qca)(path, cams)
    read = read_calibration(path)
    write_cameras(tmp_path / "seq", list(read.values()))
    for source in (tmp_path / "seq", tmp_path / "seq" / "intri.yml"):
        back = read_calibration(source)
        assert list(back) == list(read)
        for name, cam in read.items():
            for attr in ("K", "dist", "R", "T"):
                np.testing.assert_allclose(getattr(back[name], attr), getattr(cam, attr), atol=1e-9, err_msg=attr)
            assert (back[name].width, back[name].height) == (cam.width, cam.height)
    assert set(read_cameras(tmp_path / "seq")) == {"cam01", "cam02"}


def test_errors_name_the_file(tmp_path):
    with pytest.raises(CalibrationError, match="not found"):
        read_calibration(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[cam01]\nmatrix = [[1, 0, 0], [0, 1, 0]]\nrotation = [0, 0, 0]\ntranslation = [0, 0, 0]\n")
    with pytest.raises(CalibrationError, match=r"bad.toml: \[cam01\] matrix has 6 values"):
        read_calibration(bad)
    fish = tmp_path / "fish.toml"
    fish.write_text("[c]\nmatrix = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]\nrotation = [0, 0, 0]\n"
                    "translation = [0, 0, 0]\nfisheye = true\n")
    with pytest.raises(CalibrationError, match="fish.toml: camera \\[c\\] is a fisheye"):
        read_calibration(fish)
    xml = tmp_path / "broken.qca.txt"
    xml.write_text("<calibration><cameras><camera serial='a'>")
    with pytest.raises(CalibrationError, match="broken.qca.txt: not a readable XML"):
        read_calibration(xml)
    nointr = tmp_path / "nointr.qca.txt"
    nointr.write_text("<calibration><cameras><camera serial='a'><fov_video left='0' top='0' right='9' bottom='9'/>"
                      "</camera></cameras></calibration>")
    with pytest.raises(CalibrationError, match="nointr.qca.txt: camera 'a' has no <intrinsic>"):
        read_calibration(nointr)
    with pytest.raises(CalibrationError, match="unknown calibration format"):
        read_calibration(_touch(tmp_path / "c.json"))


def _touch(path):
    path.write_text("{}")
    return path
