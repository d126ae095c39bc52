"""Calibrated cameras in EasyMocap's layout (``intri.yml`` + ``extri.yml``).

Both files are OpenCV FileStorage YAML ("%YAML:1.0") with ``!!opencv-matrix``
entries, exactly as EasyMocap and AvatarPose read and write them:

* ``intri.yml``: ``names`` (a sequence of camera names), ``K_<cam>`` 3x3,
  ``dist_<cam>`` 1x5 (k1 k2 p1 p2 k3), optional ``H_<cam>`` / ``W_<cam>`` ints.
* ``extri.yml``: ``names``, ``R_<cam>`` 3x1 Rodrigues vector, ``Rot_<cam>`` 3x3,
  ``T_<cam>`` 3x1 in metres.  World to camera: ``x_cam = R X + T``.

Pixel convention: OpenCV's, i.e. integer pixel coordinates ``(u, v)`` are pixel
centres, ``u`` the column and ``v`` the row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from collections.abc import Sequence

import cv2
import numpy as np

INTRI_FILE = "intri.yml"
EXTRI_FILE = "extri.yml"


@dataclass
class CameraCalib:
    """One calibrated pinhole camera with Brown-Conrady distortion (OpenCV model).

    ``width``/``height`` are 0 when the calibration did not state the image size.
    """

    name: str
    K: np.ndarray  # (3, 3) float64
    dist: np.ndarray  # (5,) k1 k2 p1 p2 k3
    R: np.ndarray  # (3, 3) world -> camera rotation: x_cam = R X + T
    T: np.ndarray  # (3,) metres
    width: int
    height: int

    def __post_init__(self) -> None:
        self.name = str(self.name)
        self.K = np.asarray(self.K, dtype=np.float64).reshape(3, 3)
        dist = np.asarray(self.dist, dtype=np.float64).reshape(-1)
        if dist.size < 5:
            dist = np.concatenate([dist, np.zeros(5 - dist.size)])
        if dist.size != 5:
            raise ValueError(f"camera {self.name}: expected 5 distortion coefficients, got {dist.size}")
        self.dist = dist
        self.R = np.asarray(self.R, dtype=np.float64).reshape(3, 3)
        self.T = np.asarray(self.T, dtype=np.float64).reshape(3)
        self.width = int(self.width)
        self.height = int(self.height)

    @property
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates, ``-R^T T``."""
        return -self.R.T @ self.T

    @property
    def rvec(self) -> np.ndarray:
        """Rodrigues vector of ``R``, shape (3,)."""
        return cv2.Rodrigues(self.R)[0].reshape(3)

    def world_to_camera(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) world points to (N, 3) camera coordinates."""
        return np.asarray(points, dtype=np.float64) @ self.R.T + self.T


# ----------------------------------------------------------------------------- writing


def _write_names(fs: cv2.FileStorage, names: Sequence[str]) -> None:
    fs.startWriteStruct("names", cv2.FileNode_SEQ)
    for name in names:
        fs.write("", str(name))
    fs.endWriteStruct()


def write_cameras(folder: Path, cams: list[CameraCalib]) -> None:
    """Write ``intri.yml`` and ``extri.yml`` for ``cams`` into ``folder`` (created if needed)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = [c.name for c in cams]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate camera names: {names}")
    for c in cams:
        if not c.name or any(ch.isspace() for ch in c.name):
            raise ValueError(f"camera name {c.name!r} cannot be used as a FileStorage key")

    fs = cv2.FileStorage(str(folder / INTRI_FILE), cv2.FILE_STORAGE_WRITE)
    try:
        _write_names(fs, names)
        for c in cams:
            fs.write(f"K_{c.name}", np.ascontiguousarray(c.K, dtype=np.float64))
            fs.write(f"dist_{c.name}", np.ascontiguousarray(c.dist.reshape(1, 5), dtype=np.float64))
            if c.height > 0 and c.width > 0:
                fs.write(f"H_{c.name}", int(c.height))
                fs.write(f"W_{c.name}", int(c.width))
    finally:
        fs.release()

    fs = cv2.FileStorage(str(folder / EXTRI_FILE), cv2.FILE_STORAGE_WRITE)
    try:
        _write_names(fs, names)
        for c in cams:
            fs.write(f"R_{c.name}", np.ascontiguousarray(c.rvec.reshape(3, 1), dtype=np.float64))
            fs.write(f"Rot_{c.name}", np.ascontiguousarray(c.R, dtype=np.float64))
            fs.write(f"T_{c.name}", np.ascontiguousarray(c.T.reshape(3, 1), dtype=np.float64))
    finally:
        fs.release()


# ----------------------------------------------------------------------------- reading


def _open(path: Path) -> cv2.FileStorage:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: calibration file not found")
    if not path.read_bytes().strip():  # OpenCV answers an empty file with a bare SystemError
        raise ValueError(f"{path}: empty calibration file (expected OpenCV FileStorage YAML: '%YAML:1.0', "
                         "'names' and the entries of each camera)")
    try:
        fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    except (cv2.error, SystemError) as exc:  # malformed YAML; OpenCV 4.11 wraps its cv2.error in a SystemError
        cause = exc if isinstance(exc, cv2.error) else exc.__cause__
        detail = str(getattr(cause, "err", None) or cause or exc).strip()
        raise ValueError(f"{path}: not a readable OpenCV FileStorage file ({detail})") from None
    if not fs.isOpened():
        raise ValueError(f"{path}: not a readable OpenCV FileStorage file")
    return fs


def _read_names(fs: cv2.FileStorage, path: Path) -> list[str]:
    node = fs.getNode("names")
    if node.empty() or node.isNone():
        raise ValueError(f"{path}: no 'names' entry")
    if not node.isSeq():
        raise ValueError(f"{path}: 'names' is not a sequence")
    names = []
    for i in range(node.size()):
        item = node.at(i)
        if item.isString():
            names.append(item.string())
        elif item.isInt():
            # an unquoted numeric name written by another tool
            names.append(str(int(item.real())))
        else:
            raise ValueError(f"{path}: entry {i} of 'names' is not a string")
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: duplicate camera names in 'names': {names}")
    return names


def _read_mat(fs: cv2.FileStorage, key: str, path: Path, required: bool = True) -> np.ndarray | None:
    node = fs.getNode(key)
    if node.empty() or node.isNone():
        if required:
            raise ValueError(f"{path}: missing entry '{key}'")
        return None
    mat = node.mat()
    if mat is None:
        if node.isReal() or node.isInt():
            mat = np.array([[node.real()]])
        else:
            raise ValueError(f"{path}: entry '{key}' is not a matrix")
    mat = np.asarray(mat, dtype=np.float64)
    if not np.all(np.isfinite(mat)):
        raise ValueError(f"{path}: entry '{key}' has non-finite values")
    return mat


def _read_int(fs: cv2.FileStorage, key: str, path: Path) -> int:
    node = fs.getNode(key)
    if node.empty() or node.isNone():
        return 0
    if not (node.isInt() or node.isReal()):
        raise ValueError(f"{path}: entry '{key}' is not a number")
    value = node.real()
    if not np.isfinite(value) or value < 0 or value != int(value):
        raise ValueError(f"{path}: entry '{key}' = {value} is not a valid image size")
    return int(value)


def _check_rotation(R: np.ndarray, key: str, path: Path, tol: float = 1e-4) -> np.ndarray:
    err = np.abs(R @ R.T - np.eye(3)).max()
    det = np.linalg.det(R)
    if err > tol or det < 0:
        raise ValueError(f"{path}: '{key}' is not a rotation (|R R^T - I| = {err:.2e}, det = {det:.4f})")
    # snap the last bits of rounding onto SO(3)
    u, _, vt = np.linalg.svd(R)
    return u @ vt


def read_cameras(folder: Path) -> dict[str, CameraCalib]:
    """Read ``folder/intri.yml`` and ``folder/extri.yml``.

    Returns cameras keyed and ordered by intri.yml's ``names``.  The rotation is
    taken from ``Rot_<cam>`` when present, otherwise from the Rodrigues vector
    ``R_<cam>``.  ``H_<cam>``/``W_<cam>`` are optional: when absent the camera's
    ``width``/``height`` are 0, meaning "unknown" (take them from the images).
    A missing ``dist_<cam>`` means no distortion; 4 coefficients are padded
    with k3 = 0.

    Raises FileNotFoundError when a file is missing and ValueError (naming the
    file and the entry) for a camera missing from extri.yml, a K that is not
    3x3, non-finite values, or a rotation that is not one.
    """
    folder = Path(folder)
    ipath, epath = folder / INTRI_FILE, folder / EXTRI_FILE
    ifs = _open(ipath)
    efs = _open(epath)
    try:
        names = _read_names(ifs, ipath)
        enode = efs.getNode("names")
        extri_names = set(_read_names(efs, epath)) if not (enode.empty() or enode.isNone()) else None
        cams: dict[str, CameraCalib] = {}
        for name in names:
            in_extri = (
                (name in extri_names)
                if extri_names is not None
                else not (efs.getNode(f"T_{name}").empty() or efs.getNode(f"T_{name}").isNone())
            )
            if not in_extri:
                raise ValueError(f"{epath}: camera '{name}' (listed in {ipath.name}) is missing from {epath.name}")
            K = _read_mat(ifs, f"K_{name}", ipath)
            if K.shape != (3, 3):
                raise ValueError(f"{ipath}: 'K_{name}' must be 3x3, got {K.shape[0]}x{K.shape[1]}")
            dist = _read_mat(ifs, f"dist_{name}", ipath, required=False)
            if dist is None:
                dist = np.zeros(5)
            dist = dist.reshape(-1)
            if dist.size not in (4, 5):
                raise ValueError(
                    f"{ipath}: 'dist_{name}' must have 5 coefficients (k1 k2 p1 p2 k3), got {dist.size}"
                )
            width = _read_int(ifs, f"W_{name}", ipath)
            height = _read_int(ifs, f"H_{name}", ipath)

            Rot = _read_mat(efs, f"Rot_{name}", epath, required=False)
            if Rot is not None:
                if Rot.shape != (3, 3):
                    raise ValueError(f"{epath}: 'Rot_{name}' must be 3x3, got {Rot.shape[0]}x{Rot.shape[1]}")
                R = _check_rotation(Rot, f"Rot_{name}", epath)
            else:
                rvec = _read_mat(efs, f"R_{name}", epath, required=False)
                if rvec is None:
                    raise ValueError(f"{epath}: camera '{name}' has neither 'Rot_{name}' nor 'R_{name}'")
                if rvec.size != 3:
                    raise ValueError(f"{epath}: 'R_{name}' must be a 3x1 Rodrigues vector, got {rvec.shape}")
                R = cv2.Rodrigues(rvec.reshape(3, 1))[0]
            T = _read_mat(efs, f"T_{name}", epath)
            if T.size != 3:
                raise ValueError(f"{epath}: 'T_{name}' must be 3x1, got {T.shape}")
            cams[name] = CameraCalib(name=name, K=K, dist=dist, R=R, T=T.reshape(3), width=width, height=height)
        return cams
    finally:
        ifs.release()
        efs.release()


# ----------------------------------------------------------------------------- projection


def project_points(points: np.ndarray, cam: CameraCalib) -> np.ndarray:
    """Project (N, 3) world points to (N, 2) distorted pixel coordinates (cv2.projectPoints).

    Points behind the camera are projected too; callers that care must test
    ``cam.world_to_camera(points)[:, 2] > 0`` themselves.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if pts.shape[0] == 0:
        return np.zeros((0, 2))
    uv, _ = cv2.projectPoints(pts, cam.rvec.reshape(3, 1), cam.T.reshape(3, 1), cam.K, cam.dist)
    return uv.reshape(-1, 2)


def _distort_normalized(x: np.ndarray, y: np.ndarray, dist: np.ndarray):
    """OpenCV's Brown-Conrady model on normalized coordinates, with its Jacobian."""
    k1, k2, p1, p2, k3 = dist
    r2 = x * x + y * y
    radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
    dradial = k1 + r2 * (2.0 * k2 + 3.0 * k3 * r2)  # d radial / d r2
    xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
    yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
    j11 = radial + 2.0 * x * x * dradial + 2.0 * p1 * y + 6.0 * p2 * x
    j12 = 2.0 * x * y * dradial + 2.0 * p1 * x + 2.0 * p2 * y
    j21 = 2.0 * x * y * dradial + 2.0 * p1 * x + 2.0 * p2 * y
    j22 = radial + 2.0 * y * y * dradial + 6.0 * p1 * y + 2.0 * p2 * x
    return xd, yd, j11, j12, j21, j22


def undistort_pixels(uv: np.ndarray, cam: CameraCalib, iterations: int = 10) -> np.ndarray:
    """(N, 2) distorted pixels to (N, 2) undistorted normalized image coordinates.

    cv2.undistortPoints gives the starting point; Newton steps (at most
    ``iterations``) on the exact forward model then make it agree with cv2.projectPoints to ~1e-9 px
    wherever the distortion is invertible.
    """
    uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
    xy = cv2.undistortPoints(uv.reshape(-1, 1, 2), cam.K, cam.dist).reshape(-1, 2)
    if not np.any(cam.dist):
        return xy
    K = cam.K
    # target distorted normalized coordinates (K may have skew)
    yd_t = (uv[:, 1] - K[1, 2]) / K[1, 1]
    xd_t = (uv[:, 0] - K[0, 2] - K[0, 1] * yd_t) / K[0, 0]
    x, y = xy[:, 0].copy(), xy[:, 1].copy()
    for _ in range(iterations):
        xd, yd, j11, j12, j21, j22 = _distort_normalized(x, y, cam.dist)
        ex, ey = xd - xd_t, yd - yd_t
        if max(np.abs(ex).max(initial=0.0), np.abs(ey).max(initial=0.0)) < 1e-13:
            break
        det = j11 * j22 - j12 * j21
        ok = np.abs(det) > 1e-12
        det = np.where(ok, det, 1.0)
        dx = np.where(ok, (j22 * ex - j12 * ey) / det, 0.0)
        dy = np.where(ok, (-j21 * ex + j11 * ey) / det, 0.0)
        x -= dx
        y -= dy
    return np.stack([x, y], axis=1)


def pixel_rays(cam: CameraCalib) -> tuple[np.ndarray, np.ndarray]:
    """World-space rays through every pixel centre, undistorted.

    Returns ``origins`` (H*W, 3) (all the camera centre) and unit ``directions``
    (H*W, 3), row-major: ray ``v * W + u`` goes through pixel (u, v).  A point at
    any depth along a ray projects (with distortion) back onto its pixel, so
    rendering along these rays yields the correctly distorted image.
    """
    if cam.width <= 0 or cam.height <= 0:
        raise ValueError(f"camera {cam.name}: image size unknown (width/height = 0)")
    u, v = np.meshgrid(np.arange(cam.width, dtype=np.float64), np.arange(cam.height, dtype=np.float64))
    uv = np.stack([u.ravel(), v.ravel()], axis=1)
    xy = undistort_pixels(uv, cam)
    d_cam = np.concatenate([xy, np.ones((xy.shape[0], 1))], axis=1)
    d_cam /= np.linalg.norm(d_cam, axis=1, keepdims=True)
    directions = d_cam @ cam.R  # R^T d for each row
    origins = np.broadcast_to(cam.center, directions.shape).copy()
    return origins, directions


# ----------------------------------------------------------------------------- rigs


def look_at_rotation(center: np.ndarray, target: np.ndarray, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """World->camera rotation of an OpenCV camera (x right, y down, z forward) at ``center``
    looking at ``target`` with world ``up`` pointing up in the image."""
    forward = np.asarray(target, dtype=np.float64) - np.asarray(center, dtype=np.float64)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, np.asarray(up, dtype=np.float64))
    n = np.linalg.norm(right)
    if n < 1e-9:
        raise ValueError("camera looks straight along the up axis")
    right /= n
    down = np.cross(forward, right)
    return np.stack([right, down, forward], axis=0)


def ring_rig(
    num_cameras: int,
    radius: float = 3.0,
    heights: Sequence[float] = (1.0, 2.2, 1.5),
    width: int = 256,
    height: int = 256,
    fov_deg: float = 55.0,
    focal: float | None = None,
    dist: Sequence[float] = (0.0, 0.0),
    look_at: Sequence[float] = (0.0, 0.0, 0.9),
    rng: np.random.Generator | None = None,
) -> list[CameraCalib]:
    """A ring of ``num_cameras`` cameras around ``look_at``, named "00", "01", ...

    Camera ``i`` sits at azimuth ``2 pi i / n`` at horizontal distance ``radius``
    from ``look_at`` and height ``heights[i % len(heights)]`` (world up is +z),
    looking at ``look_at``.  The focal length is ``focal`` pixels, or derived
    from the horizontal field of view ``fov_deg``; the principal point is the
    image centre; ``dist`` = (k1, k2) radial distortion.  With ``rng`` the
    azimuths (by up to 10 % of the spacing), the radius (up to 3 %), the
    heights (up to 10 cm) and the focal length (up to 3 %) are jittered.
    """
    if num_cameras < 1:
        raise ValueError("num_cameras must be >= 1")
    heights = list(heights)
    if not heights:
        raise ValueError("heights must not be empty")
    target = np.asarray(look_at, dtype=np.float64).reshape(3)
    f0 = float(focal) if focal is not None else 0.5 * width / np.tan(np.deg2rad(fov_deg) / 2.0)
    dist5 = np.zeros(5)
    dist = list(dist)
    dist5[0] = dist[0] if len(dist) > 0 else 0.0
    dist5[1] = dist[1] if len(dist) > 1 else 0.0
    spacing = 2.0 * np.pi / num_cameras
    cams = []
    for i in range(num_cameras):
        az, r, h, f = i * spacing, float(radius), float(heights[i % len(heights)]), f0
        if rng is not None:
            az += rng.uniform(-0.1, 0.1) * spacing
            r *= 1.0 + rng.uniform(-0.03, 0.03)
            h += rng.uniform(-0.1, 0.1)
            f *= 1.0 + rng.uniform(-0.03, 0.03)
        center = target + np.array([r * np.cos(az), r * np.sin(az), 0.0])
        center[2] = h
        R = look_at_rotation(center, target)
        T = -R @ center
        K = np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])
        cams.append(CameraCalib(name=f"{i:02d}", K=K, dist=dist5.copy(), R=R, T=T, width=width, height=height))
    return cams
