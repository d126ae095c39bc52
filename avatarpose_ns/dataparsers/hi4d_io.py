"""Hi4D's own files: ``cameras/rgb_cameras.npz`` and the per-frame ground truth ``smpl/<frame:06d>.npz``.

rgb_cameras.npz: ``ids`` (C,), ``intrinsics`` (C, 3, 3), ``extrinsics`` (C, 3, 4)
world->camera ``[R | T]`` (OpenCV), ``dist_coeffs`` (C, 5) (k1 k2 p1 p2 k3). The
image size is not stored; it comes from the images. Hi4D's world is y-up.

smpl/<frame>.npz: ``betas`` (P, 10), ``body_pose`` (P, 69), ``global_orient`` (P, 3),
``transl`` (P, 3), ``joints_3d`` (P, 24, 3), ``verts`` (P, 6890, 3); person p is row p.
"""

from __future__ import annotations

from pathlib import Path
from collections.abc import Sequence

import numpy as np

from avatarpose_ns.dataparsers.sequence import LOG, SequenceError
from avatarpose_ns.io.cameras import CameraCalib
from avatarpose_ns.io.easymocap import SmplSequence

CAMERAS_FILE = "cameras/rgb_cameras.npz"
SMPL_GT_FIELDS = {"betas": 10, "body_pose": 69, "global_orient": 3, "transl": 3}


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {k: archive[k] for k in archive.files}
    except Exception as err:
        raise SequenceError(f"{path}: not a readable npz file ({type(err).__name__}: {err})") from None


def read_hi4d_cameras(path: Path) -> dict[str, CameraCalib]:
    """Cameras keyed by ``str(id)`` in file order; image sizes 0 (unknown until the images are read)."""
    if not path.is_file():
        raise SequenceError(f"{path}: Hi4D camera file not found")
    data = _load_npz(path)
    missing = [k for k in ("ids", "intrinsics", "extrinsics") if k not in data]
    if missing:
        raise SequenceError(f"{path}: lacks {missing} (found {sorted(data)})")
    ids = np.asarray(data["ids"]).reshape(-1)
    n = len(ids)
    intr, extr = np.asarray(data["intrinsics"], np.float64), np.asarray(data["extrinsics"], np.float64)
    dist = np.asarray(data.get("dist_coeffs", np.zeros((n, 5))), np.float64)
    for name, array, shape in (("intrinsics", intr, (n, 3, 3)), ("extrinsics", extr, (n, 3, 4))):
        if array.shape != shape:
            raise SequenceError(f"{path}: '{name}' has shape {array.shape}, expected {shape} for {n} camera ids")
    if dist.shape[0] != n or dist.reshape(n, -1).shape[1] not in (4, 5):
        raise SequenceError(f"{path}: 'dist_coeffs' has shape {dist.shape}, expected ({n}, 5)")
    for name, array in (("intrinsics", intr), ("extrinsics", extr), ("dist_coeffs", dist)):
        if not np.all(np.isfinite(array)):
            raise SequenceError(f"{path}: '{name}' contains NaN or infinite values")
    cams = {}
    for i, cam_id in enumerate(ids):
        name = str(cam_id.item() if hasattr(cam_id, "item") else cam_id)
        R = extr[i, :, :3]
        if np.abs(R @ R.T - np.eye(3)).max() > 1e-4 or np.linalg.det(R) < 0:
            raise SequenceError(f"{path}: extrinsics of camera {name} do not hold a rotation")
        u, _, vt = np.linalg.svd(R)
        cams[name] = CameraCalib(name, intr[i], dist[i].reshape(-1), u @ vt, extr[i, :, 3], 0, 0)
    return cams


def camera_folder(images: Path, name: str) -> Path:
    """Image folder of camera ``name``: ``images/<id>`` (also accepts a zero-padded ``images/<id:02d>``)."""
    plain = images / name
    if not plain.is_dir() and name.isdigit() and (images / f"{int(name):02d}").is_dir():
        return images / f"{int(name):02d}"
    return plain


def read_hi4d_gt(folder: Path, frames: Sequence[int]) -> tuple[dict[int, SmplSequence] | None,
                                                                dict[int, dict[int, np.ndarray]] | None]:
    """Ground truth from ``smpl/<frame>.npz`` over the selected frames it covers: SMPL per person and
    the 24 joints (``joints_3d``). Evaluation only, so a bad file is a warning and the ground truth is
    dropped; frames without a file are skipped."""
    rows: dict[int, dict[str, list]] = {}
    joints: dict[int, dict[int, np.ndarray]] = {}
    for frame in frames:
        path = folder / f"{frame:06d}.npz"
        if not path.is_file():
            continue
        try:
            data = _load_npz(path)
            arrays = {}
            for key, width in SMPL_GT_FIELDS.items():
                if key not in data:
                    raise SequenceError(f"{path}: lacks '{key}'")
                value = np.asarray(data[key], np.float64)
                if value.ndim != 2 or value.shape[1] != width:
                    raise SequenceError(f"{path}: '{key}' has shape {value.shape}, expected (people, {width})")
                if not np.all(np.isfinite(value)):
                    raise SequenceError(f"{path}: '{key}' contains NaN or infinite values")
                arrays[key] = value
            people = {a.shape[0] for a in arrays.values()}
            if len(people) != 1:
                raise SequenceError(f"{path}: fields disagree on the number of people ({sorted(people)})")
        except SequenceError as err:
            LOG.warning("ground truth not used: %s", err)
            return None, None
        for p in range(arrays["betas"].shape[0]):
            entry = rows.setdefault(p, {k: [] for k in (*SMPL_GT_FIELDS, "frames")})
            for key in SMPL_GT_FIELDS:
                entry[key].append(arrays[key][p])
            entry["frames"].append(frame)
        if "joints_3d" in data and np.asarray(data["joints_3d"]).shape[-2:] == (24, 3):
            j3d = np.asarray(data["joints_3d"], np.float64)
            joints[frame] = {p: np.concatenate([j3d[p], np.ones((24, 1))], axis=1) for p in range(len(j3d))}
    if not rows:
        return None, None
    gt = {p: SmplSequence(np.mean(e["betas"], axis=0), np.stack(e["body_pose"]), np.stack(e["global_orient"]),
                          np.stack(e["transl"]), np.asarray(e["frames"])) for p, e in rows.items()}
    return gt, (joints or None)
