"""Calibration files of other tools read into the project's ``CameraCalib``.

Formats:

* EasyMocap / OpenCV ``intri.yml`` + ``extri.yml`` (a folder, or either file): ``io.cameras``.
* Pose2Sim ``.toml``: one table per camera with ``name``, ``size = [w, h]``, ``matrix`` (3x3),
  ``distortions = [k1, k2, p1, p2]``, ``rotation`` (Rodrigues, world to camera) and
  ``translation`` (metres), ``fisheye``; tables ``metadata``, ``capture_volume``, ``charuco``
  and ``checkerboard`` are not cameras (as in Pose2Sim's own reader).
* Qualisys ``.qca.txt`` (XML): per ``camera`` its ``serial``, ``fov_video`` (pixel window of the
  video), ``intrinsic`` in sub-pixel units of 1/64 px and ``transform``: the camera's rotation
  ``M`` (r11..r33, camera axes in the world, Qualisys' camera frame: y up, looking down -z) and
  centre in millimetres. OpenCV's camera looks down +z with y down, hence
  ``R = diag(1, -1, -1) M`` and ``T = -R C``; ``fx = focalLengthU / 64``,
  ``cx = centerPointU / 64 - fov_video.left``, and the distortion terms divided by 64 too,
  exactly as Pose2Sim's Qualisys conversion does.
"""

from __future__ import annotations

import tomllib
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import cv2
import numpy as np

from avatarpose_ns.commands import InputError
from avatarpose_ns.io.cameras import EXTRI_FILE, INTRI_FILE, CameraCalib, read_cameras

QUALISYS_SUBPIXELS = 64.0
POSE2SIM_NON_CAMERA_TABLES = ("metadata", "capture_volume", "charuco", "checkerboard")
QUALISYS_TO_OPENCV = np.diag([1.0, -1.0, -1.0])


class CalibrationError(InputError):
    """A calibration file cannot be used; the message names the file and the problem."""


def read_calibration(path: str | Path) -> dict[str, CameraCalib]:
    """Cameras of any supported calibration (see module docstring), keyed and ordered by name."""
    path = Path(path)
    if not path.exists():
        raise CalibrationError(f"{path}: calibration file not found")
    if path.is_dir() or path.name in (INTRI_FILE, EXTRI_FILE):
        folder = path if path.is_dir() else path.parent
        try:
            return read_cameras(folder)
        except (FileNotFoundError, ValueError) as err:
            raise CalibrationError(str(err)) from None
    name = path.name.lower()
    if name.endswith(".toml"):
        cams = read_pose2sim_toml(path)
    elif name.endswith(".qca.txt") or name.endswith(".qca"):
        cams = read_qualisys_qca(path)
    else:
        raise CalibrationError(f"{path}: unknown calibration format (expected a folder with {INTRI_FILE}/"
                               f"{EXTRI_FILE}, a Pose2Sim .toml or a Qualisys .qca.txt)")
    for cam in cams.values():
        if not cam.name or any(ch.isspace() for ch in cam.name):
            raise CalibrationError(f"{path}: camera name {cam.name!r} has spaces (cannot name a folder and a "
                                   "FileStorage key)")
    return cams


def _numbers(value: object, shape: tuple[int, ...], what: str, path: Path) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise CalibrationError(f"{path}: {what} is not numeric") from None
    if array.size != int(np.prod(shape)):
        raise CalibrationError(f"{path}: {what} has {array.size} values, expected {int(np.prod(shape))}")
    if not np.all(np.isfinite(array)):
        raise CalibrationError(f"{path}: {what} has NaN or infinite values")
    return array.reshape(shape)


def read_pose2sim_toml(path: str | Path) -> dict[str, CameraCalib]:
    """Cameras of a Pose2Sim calibration ``.toml`` (see module docstring)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise CalibrationError(f"{path}: not a readable TOML file ({err})") from None
    cams: dict[str, CameraCalib] = {}
    for key, table in data.items():
        if key in POSE2SIM_NON_CAMERA_TABLES or not isinstance(table, dict):
            continue
        missing = [k for k in ("matrix", "rotation", "translation") if k not in table]
        if missing:
            raise CalibrationError(f"{path}: camera [{key}] lacks {missing}")
        if table.get("fisheye", False):
            raise CalibrationError(f"{path}: camera [{key}] is a fisheye camera; only the pinhole model with "
                                   "k1 k2 p1 p2 distortion is supported")
        name = str(table.get("name", key))
        K = _numbers(table["matrix"], (3, 3), f"[{key}] matrix", path)
        raw_dist = table.get("distortions", [0.0] * 4)
        dist = _numbers(raw_dist, (len(raw_dist) if isinstance(raw_dist, list) else 1,), f"[{key}] distortions", path)
        if dist.size not in (4, 5):
            raise CalibrationError(f"{path}: [{key}] distortions has {dist.size} values, expected 4 (k1 k2 p1 p2)")
        rvec = _numbers(table["rotation"], (3,), f"[{key}] rotation", path)
        T = _numbers(table["translation"], (3,), f"[{key}] translation", path)
        width, height = _numbers(table.get("size", [0, 0]), (2,), f"[{key}] size", path)
        if name in cams:
            raise CalibrationError(f"{path}: camera name '{name}' appears twice")
        cams[name] = CameraCalib(name=name, K=K, dist=dist, R=cv2.Rodrigues(rvec.reshape(3, 1))[0], T=T,
                                 width=int(round(width)), height=int(round(height)))
    if not cams:
        raise CalibrationError(f"{path}: no camera tables (each needs matrix, rotation and translation)")
    return cams


def _attribute(element: ElementTree.Element, key: str, path: Path, serial: str) -> float:
    value = element.get(key)
    if value is None:
        raise CalibrationError(f"{path}: camera '{serial}' <{element.tag}> lacks the attribute '{key}'")
    try:
        number = float(value)
    except ValueError:
        raise CalibrationError(f"{path}: camera '{serial}' <{element.tag} {key}=\"{value}\"> is not a number") from None
    if not np.isfinite(number):
        raise CalibrationError(f"{path}: camera '{serial}' <{element.tag} {key}> is not finite")
    return number


def _child(camera: ElementTree.Element, tag: str, path: Path, serial: str) -> ElementTree.Element:
    element = camera.find(tag)
    if element is None:
        raise CalibrationError(f"{path}: camera '{serial}' has no <{tag}> element")
    return element


def read_qualisys_qca(path: str | Path) -> dict[str, CameraCalib]:
    """Cameras of a Qualisys ``.qca.txt`` calibration (see module docstring); inactive ones skipped."""
    path = Path(path)
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as err:
        raise CalibrationError(f"{path}: not a readable XML file ({err})") from None
    cams: dict[str, CameraCalib] = {}
    for camera in root.findall("cameras/camera"):
        serial = camera.get("serial", "")
        if not serial:
            raise CalibrationError(f"{path}: a <camera> has no 'serial'")
        if camera.get("active", "1") == "0":
            continue
        a = lambda element, key: _attribute(element, key, path, serial)  # noqa: E731
        fov = _child(camera, "fov_video", path, serial)
        left, top = a(fov, "left"), a(fov, "top")
        width, height = a(fov, "right") - left + 1, a(fov, "bottom") - top + 1
        intrinsic = _child(camera, "intrinsic", path, serial)
        s = QUALISYS_SUBPIXELS
        K = np.array([[a(intrinsic, "focalLengthU") / s, 0.0, a(intrinsic, "centerPointU") / s - left],
                      [0.0, a(intrinsic, "focalLengthV") / s, a(intrinsic, "centerPointV") / s - top],
                      [0.0, 0.0, 1.0]])
        dist = np.array([a(intrinsic, "radialDistortion1"), a(intrinsic, "radialDistortion2"),
                         a(intrinsic, "tangentalDistortion1"), a(intrinsic, "tangentalDistortion2"),
                         float(intrinsic.get("radialDistortion3", 0.0))]) / s
        transform = _child(camera, "transform", path, serial)
        M = np.array([[a(transform, f"r{i}{j}") for j in (1, 2, 3)] for i in (1, 2, 3)])
        if np.abs(M @ M.T - np.eye(3)).max() > 1e-4 or np.linalg.det(M) < 0:
            raise CalibrationError(f"{path}: camera '{serial}' <transform> r11..r33 is not a rotation")
        centre = np.array([a(transform, k) for k in ("x", "y", "z")]) / 1000.0
        R = QUALISYS_TO_OPENCV @ M
        if serial in cams:
            raise CalibrationError(f"{path}: camera serial '{serial}' appears twice")
        cams[serial] = CameraCalib(name=serial, K=K, dist=dist, R=R, T=-R @ centre, width=int(width),
                                   height=int(height))
    if not cams:
        raise CalibrationError(f"{path}: no active <camera> under <cameras>")
    return cams
