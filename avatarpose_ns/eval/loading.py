"""Pose files -> per-frame joints for the metrics.

Sources are an AvatarPose `smpl.npz` (SMPL parameters per person, posed with the
body model) or an EasyMocap `keypoints3d/` folder (one json per frame). The
result is always frame -> person id -> (J, 3) joints in metres. The BODY25 joint
regressor file is read here too, so `metrics.py` stays maths over arrays.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Mapping

import numpy as np

from avatarpose_ns.eval.metrics import (
    AVATARPOSE19,
    SMPL24,
    body25_to_avatarpose19,
    get_joint_set,
    smpl_vertices_to_avatarpose19,
)

FrameJoints = dict[int, dict[int, np.ndarray]]  # frame -> person id -> (J, 3)


class PoseLoadError(Exception):
    """A pose source cannot be found, read or converted; the message names the path."""


@dataclass
class PoseSource:
    """One pose input as read from disk, before conversion to joints."""

    path: Path  # the file (smpl) or folder (keypoints3d) actually read
    kind: str  # "smpl" or "keypoints3d"
    smpl: dict | None = None  # person id -> SmplSequence
    keypoints: dict[int, dict[int, np.ndarray]] | None = None  # frame -> person id -> (J, 4)

    @property
    def frames(self) -> set[int]:
        if self.kind == "smpl":
            return {int(f) for seq in self.smpl.values() for f in seq.frames}
        return {int(f) for f, people in self.keypoints.items() if people}

    @property
    def keypoint_joint_counts(self) -> set[int]:
        """Joint counts found in a keypoints3d source (empty for smpl)."""
        if self.kind != "keypoints3d":
            return set()
        return {int(a.shape[0]) for people in self.keypoints.values() for a in people.values()}


def resolve_pose_path(path: str | Path) -> tuple[str, Path]:
    """Find what to read: ('smpl', file) or ('keypoints3d', folder).

    Accepts an smpl.npz file, a folder holding smpl.npz, a folder of
    <frame>.json keypoints3d files, or a folder with exactly one of
    <sub>/smpl.npz or keypoints3d/ (otherwise it asks for an explicit path).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise PoseLoadError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() == ".npz":
            return "smpl", path
        if path.suffix.lower() == ".json":
            raise PoseLoadError(f"{path}: pass the keypoints3d folder, not a single json file")
        raise PoseLoadError(f"{path}: unsupported file (expected an AvatarPose smpl.npz or a keypoints3d folder)")
    if (path / "smpl.npz").is_file():
        return "smpl", path / "smpl.npz"
    if any(path.glob("*.json")):
        return "keypoints3d", path
    candidates: list[tuple[str, Path]] = [("smpl", p) for p in sorted(path.glob("*/smpl.npz"))]
    kp = path / "keypoints3d"
    if kp.is_dir() and any(kp.glob("*.json")):
        candidates.append(("keypoints3d", kp))
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        names = ", ".join(str(p) for _, p in candidates)
        raise PoseLoadError(f"{path}: holds several pose sources ({names}); pass one of them explicitly")
    raise PoseLoadError(f"{path}: found neither smpl.npz nor keypoints3d <frame>.json files")


def read_pose_source(path: str | Path) -> PoseSource:
    """Resolve and read a pose source; every failure is a PoseLoadError naming the path."""
    from avatarpose_ns.io.easymocap import read_keypoints3d_folder, read_smpl_npz

    kind, resolved = resolve_pose_path(path)
    try:
        if kind == "smpl":
            people = read_smpl_npz(resolved)
            if not people:
                raise PoseLoadError(f"{resolved}: holds no persons")
            return PoseSource(resolved, kind, smpl=people)
        keypoints = read_keypoints3d_folder(resolved)
    except PoseLoadError:
        raise
    except (OSError, ValueError) as err:  # FileNotFoundError, easymocap.FormatError, ...
        message = str(err)
        raise PoseLoadError(message if str(resolved) in message else f"{resolved}: {message}") from None
    source = PoseSource(resolved, kind, keypoints=keypoints)
    if len(source.keypoint_joint_counts) > 1:
        raise PoseLoadError(f"{resolved}: persons have different joint counts {sorted(source.keypoint_joint_counts)}")
    return source


def choose_joint_set(sources: list[PoseSource], have_regressor: bool) -> str | None:
    """Joint set for 'auto': avatarpose19 with a regressor or BODY25/19-joint keypoints,
    smpl24 for SMPL or 24-joint keypoints, None (generic) for other equal keypoint sets."""
    counts = set().union(*(s.keypoint_joint_counts for s in sources))
    if have_regressor:
        return AVATARPOSE19.name
    if not counts:
        return SMPL24.name
    if counts <= {19, 25}:
        return AVATARPOSE19.name
    if counts == {24}:
        return SMPL24.name
    if len(counts) == 1 and all(s.kind == "keypoints3d" for s in sources):
        return None
    described = "; ".join(
        f"{s.path}: {'SMPL parameters' if s.kind == 'smpl' else f'{sorted(s.keypoint_joint_counts)} joints'}"
        for s in sources
    )
    raise PoseLoadError(f"cannot compare these joint sets ({described})")


def keypoints_to_joints(
    keypoints: Mapping[int, Mapping[int, np.ndarray]], joint_set: str | None, path: Path | str = "keypoints3d"
) -> tuple[FrameJoints, dict[int, dict[int, float]]]:
    """EasyMocap keypoints (J, 3 or 4) -> joints (J', 3) of the joint set, and per-person
    confidence = mean joint confidence (1 without a confidence column).

    smpl24 needs 24 joints; avatarpose19 takes 19 joints as they are or picks them
    from BODY25 (25 joints); None keeps any joint count.
    """
    joints: FrameJoints = {}
    conf: dict[int, dict[int, float]] = {}
    for frame, people in keypoints.items():
        joints[int(frame)] = {}
        conf[int(frame)] = {}
        for pid, kp in people.items():
            kp = np.asarray(kp, dtype=np.float64)
            num = kp.shape[0]
            if joint_set == AVATARPOSE19.name and num == 25:
                kp = body25_to_avatarpose19(kp)
            elif joint_set is not None and num != get_joint_set(joint_set).num_joints:
                raise PoseLoadError(
                    f"{path}: keypoints have {num} joints, joint set {joint_set} needs "
                    f"{get_joint_set(joint_set).num_joints}" + (" (or 25 BODY25 joints)" if joint_set == AVATARPOSE19.name else "")
                )
            joints[int(frame)][int(pid)] = kp[:, :3].copy()
            conf[int(frame)][int(pid)] = float(kp[:, 3].mean()) if kp.shape[1] > 3 else 1.0
    return joints, conf


def _model_device(body_model):
    import torch

    for buffer in body_model.buffers() if hasattr(body_model, "buffers") else ():
        return buffer.device
    return torch.device("cpu")


def smpl_sequences_to_joints(
    people: Mapping[int, object],
    body_model,
    joint_set: str = "smpl24",
    body25_regressor: np.ndarray | None = None,
    chunk_size: int = 256,
) -> FrameJoints:
    """Pose SMPL sequences and return frame -> person id -> joints (J, 3), metres.

    people: person id -> SmplSequence (betas (10,), body_pose (F, 69),
        global_orient (F, 3), transl (F, 3), frames (F,)).
    body_model: avatarpose_ns.body.body_model.BodyModel (or anything with
        joints_only(...) -> (B, 24, 3) and forward(...).vertices (B, V, 3)).
    joint_set: 'smpl24' (the model's 24 joints) or 'avatarpose19' (regressed
        from vertices with body25_regressor (25, V)).
    """
    import torch

    joint_set = get_joint_set(joint_set).name
    if joint_set == AVATARPOSE19.name and body25_regressor is None:
        raise ValueError("the avatarpose19 joint set needs a BODY25 regressor for SMPL inputs")
    device = _model_device(body_model)
    result: FrameJoints = {}
    with torch.no_grad():
        for pid, seq in people.items():
            frames = np.asarray(seq.frames, dtype=np.int64).reshape(-1)
            n = len(frames)
            betas = torch.as_tensor(np.asarray(seq.betas, np.float32).reshape(1, -1), device=device)
            body_pose = np.asarray(seq.body_pose, np.float32).reshape(n, 69)
            global_orient = np.asarray(seq.global_orient, np.float32).reshape(n, 3)
            transl = np.asarray(seq.transl, np.float32).reshape(n, 3)
            out = []
            for start in range(0, n, chunk_size):
                sl = slice(start, start + chunk_size)
                args = dict(
                    betas=betas,
                    body_pose=torch.as_tensor(body_pose[sl], device=device),
                    global_orient=torch.as_tensor(global_orient[sl], device=device),
                    transl=torch.as_tensor(transl[sl], device=device),
                )
                if joint_set == SMPL24.name:
                    out.append(body_model.joints_only(**args).detach().cpu().double().numpy())
                else:
                    verts = body_model.forward(**args).vertices.detach().cpu().double().numpy()
                    out.append(smpl_vertices_to_avatarpose19(verts, body25_regressor))
            joints = np.concatenate(out, axis=0) if out else np.zeros((0, 0, 3))
            for frame, j in zip(frames, joints):
                result.setdefault(int(frame), {})[int(pid)] = j
    return dict(sorted(result.items()))


def source_to_joints(
    source: PoseSource,
    joint_set: str | None,
    body_model_factory=None,
    body25_regressor: np.ndarray | None = None,
) -> tuple[FrameJoints, dict[int, dict[int, float]] | None]:
    """Joints (and, for keypoints, per-person confidences) of a source in the joint set.

    body_model_factory: zero-argument callable returning the body model; called
    only for SMPL sources.
    """
    if source.kind == "keypoints3d":
        return keypoints_to_joints(source.keypoints, joint_set, source.path)
    if joint_set is None:
        raise PoseLoadError(f"{source.path}: SMPL parameters need the smpl24 or avatarpose19 joint set")
    if joint_set == AVATARPOSE19.name and body25_regressor is None:
        raise PoseLoadError(
            f"{source.path}: the avatarpose19 joint set needs --body25-regressor to turn SMPL into joints"
        )
    if body_model_factory is None:
        raise PoseLoadError(f"{source.path}: SMPL parameters need a body model")
    try:
        model = body_model_factory()
        return smpl_sequences_to_joints(source.smpl, model, joint_set, body25_regressor), None
    except PoseLoadError:
        raise
    except (OSError, ValueError, ImportError) as err:
        raise PoseLoadError(f"{source.path}: cannot pose the SMPL parameters ({err})") from None


# --------------------------------------------------------------------------- BODY25 regressor

_REGRESSOR_KEYS = ("J_regressor_body25", "J_regressor", "regressor", "arr_0")


def _sparse_from_npz(archive, path: Path) -> np.ndarray:
    """Densify a scipy.sparse.save_npz archive (csr, csc or coo) with numpy alone."""
    fmt = archive["format"].item()
    fmt = fmt.decode() if isinstance(fmt, bytes) else str(fmt)
    shape = tuple(int(s) for s in archive["shape"])
    dense = np.zeros(shape, dtype=np.float64)
    if fmt in ("csr", "csc"):
        indptr, indices, data = archive["indptr"], archive["indices"], archive["data"]
        major = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
        rows, cols = (major, indices) if fmt == "csr" else (indices, major)
        np.add.at(dense, (rows, cols), data)
    elif fmt == "coo":
        np.add.at(dense, (archive["row"], archive["col"]), archive["data"])
    else:
        raise ValueError(f"{path}: sparse format '{fmt}' is not supported (use csr, csc, coo or a dense array)")
    return dense


def load_body25_regressor(path: str | Path, num_vertices: int | None = None) -> np.ndarray:
    """Load a BODY25 joint regressor (J_regressor_body25) as a dense (25, V) float64 array.

    Reads .npy (dense array), .npz (a dense array under J_regressor_body25 /
    J_regressor / regressor / the single array, or a scipy sparse matrix saved
    with save_npz) and .txt / .csv (np.loadtxt). A (V, 25) array is transposed.
    num_vertices, when given, must equal V. Errors name the file.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: BODY25 joint regressor file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                keys = list(archive.files)
                if {"format", "shape", "data"} <= set(keys):
                    array = _sparse_from_npz(archive, path)
                else:
                    key = next((k for k in _REGRESSOR_KEYS if k in keys), None)
                    if key is None and len(keys) == 1:
                        key = keys[0]
                    if key is None:
                        raise ValueError(
                            f"{path}: cannot tell which array is the regressor (keys: {keys}); "
                            f"name it one of {list(_REGRESSOR_KEYS[:3])}"
                        )
                    array = archive[key]
        elif suffix in (".txt", ".csv"):
            array = np.loadtxt(path, delimiter="," if suffix == ".csv" else None, ndmin=2)
        else:
            raise ValueError(f"{path}: unsupported regressor file type '{suffix}' (use .npy, .npz or .txt)")
    except ValueError as err:
        if str(err).startswith(str(path)):
            raise
        raise ValueError(f"{path}: cannot read BODY25 regressor ({err})") from None
    except (OSError, EOFError, KeyError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: cannot read BODY25 regressor ({err!r})") from None
    try:
        array = np.asarray(array, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: BODY25 regressor is not a numeric array") from None
    if array.ndim != 2 or 25 not in array.shape:
        raise ValueError(f"{path}: BODY25 regressor must be (25, V), got shape {array.shape}")
    if array.shape[0] != 25:
        array = array.T
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{path}: BODY25 regressor contains NaN or infinite values")
    if num_vertices is not None and array.shape[1] != num_vertices:
        raise ValueError(
            f"{path}: BODY25 regressor is for {array.shape[1]} vertices but the body model has {num_vertices}"
        )
    return array
