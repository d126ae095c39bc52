"""OpenCV calibration to nerfstudio ``Cameras``.

Three conventions meet here:

* axes: OpenCV cameras look along +z with y down, nerfstudio's ``camera_to_worlds``
  are OpenGL (y up, looking along -z): negate columns 1 and 2 of the rotation;
* pixels: OpenCV puts pixel centres on integer coordinates, nerfstudio casts the
  ray of pixel (row i, col j) through (j + 0.5, i + 0.5): nerfstudio's principal
  point is OpenCV's plus 0.5;
* lens distortion: none. The images and masks handed to nerfstudio are
  undistorted once (``undistort_cache``), so the cameras are plain pinholes.
  Passing distortion to nerfstudio's ray generation instead would leave the
  masks, the per-person masks and any pixel sampler working on distorted
  pixels, and every projection of a body into an image (samplers, losses,
  overlays) would need the distortion model again; undistorting once keeps
  every consumer on one pinhole model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from nerfstudio.cameras.cameras import Cameras, CameraType

from avatarpose_ns.scene.transform import SceneTransform


def scaled_size(width: int, height: int, downscale: float) -> tuple[int, int]:
    """Image size after dividing by ``downscale`` (rounded, at least 1 pixel)."""
    return max(1, int(round(width / downscale))), max(1, int(round(height / downscale)))


def scale_intrinsics(K: np.ndarray, size: tuple[int, int], new_size: tuple[int, int]) -> np.ndarray:
    """K for the image resized from ``size`` to ``new_size`` (width, height), OpenCV pixel centres.

    A pixel centre u maps to (u + 0.5) * s - 0.5, which is what cv2.resize does.
    """
    sx, sy = new_size[0] / size[0], new_size[1] / size[1]
    out = np.asarray(K, dtype=np.float64).copy()
    out[0, 0] *= sx
    out[0, 1] *= sx
    out[1, 1] *= sy
    out[0, 2] = (out[0, 2] + 0.5) * sx - 0.5
    out[1, 2] = (out[1, 2] + 0.5) * sy - 0.5
    return out


def opencv_to_opengl_c2w(R: np.ndarray, T: np.ndarray) -> np.ndarray:
    """World->camera ``x_cam = R X + T`` (OpenCV) to a (3, 4) OpenGL camera-to-world pose."""
    c2w = np.zeros((3, 4))
    c2w[:, :3] = np.asarray(R, dtype=np.float64).T
    c2w[:, 3] = -c2w[:, :3] @ np.asarray(T, dtype=np.float64).reshape(3)
    c2w[:, 1:3] *= -1.0
    return c2w


def make_cameras(
    K: Sequence[np.ndarray],
    R: Sequence[np.ndarray],
    T: Sequence[np.ndarray],
    sizes: Sequence[tuple[int, int]],
    transform: SceneTransform,
    times: np.ndarray,
    metadata: dict[str, np.ndarray],
) -> Cameras:
    """One nerfstudio pinhole camera per image.

    ``K`` are the OpenCV intrinsics of the (undistorted, resized) images, ``R``/``T`` the OpenCV
    world->camera extrinsics in the input world, ``sizes`` (width, height); the poses are mapped into
    the scene frame with ``transform``. ``metadata`` values are (N,) integer arrays, stored as (N, 1)
    long tensors so that nerfstudio copies them onto every ray of that image.
    """
    c2w = np.stack([opencv_to_opengl_c2w(r, t) for r, t in zip(R, T)])
    c2w = transform.camera_to_scene(c2w)
    K = np.stack(K)
    sizes_arr = np.asarray(sizes, dtype=np.int64).reshape(-1, 2)
    return Cameras(
        camera_to_worlds=torch.tensor(c2w, dtype=torch.float32),
        fx=torch.tensor(K[:, 0, 0:1], dtype=torch.float32),
        fy=torch.tensor(K[:, 1, 1:2], dtype=torch.float32),
        cx=torch.tensor(K[:, 0, 2:3] + 0.5, dtype=torch.float32),
        cy=torch.tensor(K[:, 1, 2:3] + 0.5, dtype=torch.float32),
        width=torch.tensor(sizes_arr[:, 0:1]),
        height=torch.tensor(sizes_arr[:, 1:2]),
        camera_type=CameraType.PERSPECTIVE,
        times=torch.tensor(np.asarray(times).reshape(-1, 1), dtype=torch.float32),
        metadata={k: torch.tensor(np.asarray(v).reshape(-1, 1), dtype=torch.long) for k, v in metadata.items()},
    )


def project_with_cameras(cameras: Cameras, index: int, points_scene: torch.Tensor) -> torch.Tensor:
    """Project scene points (N, 3) with camera ``index`` to nerfstudio pixel coordinates (N, 2), i.e.
    (x, y) with pixel (row i, col j) covering [j, j + 1) x [i, i + 1). For checks and overlays."""
    c2w = cameras.camera_to_worlds[index].double()
    rot, origin = c2w[:, :3], c2w[:, 3]
    local = (points_scene.double() - origin) @ rot  # OpenGL camera frame: looks along -z
    depth = -local[:, 2]
    x = cameras.fx[index].double() * local[:, 0] / depth + cameras.cx[index].double()
    y = -cameras.fy[index].double() * local[:, 1] / depth + cameras.cy[index].double()
    return torch.stack([x, y], dim=1)
