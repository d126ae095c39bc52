"""EasyMocap / AvatarPose files: SMPL npz, keypoints3d json, 2D annots json.

The AvatarPose `smpl.npz` holds one pickled dict per person under the key
`human_<pid>` with betas, body_pose, global_orient, transl and frames. EasyMocap
writes one json per frame holding a list of per-person records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterable, Sequence

import numpy as np

from avatarpose_ns.commands import InputError
from avatarpose_ns.io.atomic import write_atomically


class FormatError(InputError):
    """A file exists but its content is not what the format says."""


@dataclass
class SmplSequence:
    """One person's SMPL parameters over a set of frames."""

    betas: np.ndarray  # (10,)
    body_pose: np.ndarray  # (F, 69)
    global_orient: np.ndarray  # (F, 3)
    transl: np.ndarray  # (F, 3)
    frames: np.ndarray  # (F,) int

    def __post_init__(self) -> None:
        self.betas = np.asarray(self.betas, dtype=np.float64).reshape(-1)
        n = len(self.frames)
        self.frames = np.asarray(self.frames, dtype=np.int64).reshape(n)
        self.body_pose = np.asarray(self.body_pose, dtype=np.float64).reshape(n, -1)
        self.global_orient = np.asarray(self.global_orient, dtype=np.float64).reshape(n, 3)
        self.transl = np.asarray(self.transl, dtype=np.float64).reshape(n, 3)

    @property
    def num_frames(self) -> int:
        return len(self.frames)


def _frame_name(frame: int) -> str:
    return f"{frame:06d}.json"


def _as_float_array(value: object, name: str, path: Path) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise FormatError(f"{path}: field '{name}' is not numeric ({err})") from None
    if not np.all(np.isfinite(array)):
        raise FormatError(f"{path}: field '{name}' contains NaN or infinite values")
    return array


def write_smpl_npz(path: str | Path, people: dict[int, SmplSequence]) -> None:
    """Write the AvatarPose layout: `human_<pid>` -> dict of arrays."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        f"human_{pid}": {
            "betas": seq.betas[None].astype(np.float32),
            "body_pose": seq.body_pose.astype(np.float32),
            "global_orient": seq.global_orient.astype(np.float32),
            "transl": seq.transl.astype(np.float32),
            "frames": seq.frames.astype(np.int64),
        }
        for pid, seq in sorted(people.items())
    }
    if path.suffix != ".npz":  # what np.savez does with a path
        path = path.with_name(path.name + ".npz")
    write_atomically(path, lambda handle: np.savez(handle, **payload))  # caches read it back: never half a file


def read_smpl_npz(path: str | Path) -> dict[int, SmplSequence]:
    """Read an AvatarPose `smpl.npz` into person id -> SmplSequence.

    Accepts body_pose as (F, 69) or (F, 1, 69), betas as (10,), (1, 10) or
    per-frame (F, 10) (then averaged: SMPL shape is constant per person).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: SMPL npz file not found")
    try:
        archive = np.load(path, allow_pickle=True)
    except Exception as err:  # numpy raises several types for corrupt files
        raise FormatError(f"{path}: not a readable npz file ({err})") from None
    people: dict[int, SmplSequence] = {}
    with archive:
        keys = [k for k in archive.files if k.startswith("human_")]
        if not keys:
            raise FormatError(f"{path}: no 'human_<pid>' entries (found keys: {list(archive.files)})")
        for key in keys:
            try:
                pid = int(key.split("_", 1)[1])
            except ValueError:
                raise FormatError(f"{path}: key '{key}' is not of the form human_<int>") from None
            record = archive[key]
            record = record.item() if record.dtype == object else record
            if not isinstance(record, dict):
                raise FormatError(f"{path}: '{key}' is not a dict of SMPL parameters")
            missing = {"betas", "body_pose", "global_orient", "transl"} - set(record)
            if missing:
                raise FormatError(f"{path}: '{key}' lacks {sorted(missing)}")
            body_pose = _as_float_array(record["body_pose"], f"{key}.body_pose", path)
            num_frames = body_pose.shape[0]
            body_pose = body_pose.reshape(num_frames, -1)
            if body_pose.shape[1] != 69:
                raise FormatError(f"{path}: '{key}.body_pose' has {body_pose.shape[1]} values per frame, expected 69")
            global_orient = _as_float_array(record["global_orient"], f"{key}.global_orient", path).reshape(-1, 3)
            transl = _as_float_array(record["transl"], f"{key}.transl", path).reshape(-1, 3)
            for name, arr in (("global_orient", global_orient), ("transl", transl)):
                if arr.shape[0] != num_frames:
                    raise FormatError(
                        f"{path}: '{key}.{name}' has {arr.shape[0]} frames but body_pose has {num_frames}"
                    )
            betas = _as_float_array(record["betas"], f"{key}.betas", path)
            betas = betas.reshape(-1, betas.shape[-1]).mean(axis=0) if betas.ndim > 1 else betas
            frames = np.asarray(record.get("frames", np.arange(num_frames)), dtype=np.int64).reshape(-1)
            if frames.shape[0] != num_frames:
                raise FormatError(f"{path}: '{key}.frames' has {frames.shape[0]} entries, expected {num_frames}")
            people[pid] = SmplSequence(betas, body_pose, global_orient, transl, frames)
    return dict(sorted(people.items()))


def write_keypoints3d_folder(folder: str | Path, keypoints: dict[int, dict[int, np.ndarray]]) -> None:
    """Write EasyMocap keypoints3d: one `<frame:06d>.json` with [{id, keypoints3d}]."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for frame, people in sorted(keypoints.items()):
        records = []
        for pid, joints in sorted(people.items()):
            joints = np.asarray(joints, dtype=np.float64)
            if joints.shape[1] == 3:
                joints = np.concatenate([joints, np.ones((len(joints), 1))], axis=1)
            records.append({"id": int(pid), "keypoints3d": np.round(joints, 6).tolist()})
        (folder / _frame_name(frame)).write_text(json.dumps(records))


def read_keypoints3d_folder(folder: str | Path) -> dict[int, dict[int, np.ndarray]]:
    """Read EasyMocap keypoints3d json files into frame -> pid -> (J, 4)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: keypoints3d folder not found")
    files = sorted(folder.glob("*.json"))
    if not files:
        raise FormatError(f"{folder}: no <frame>.json files")
    result: dict[int, dict[int, np.ndarray]] = {}
    for file in files:
        try:
            frame = int(file.stem)
        except ValueError:
            raise FormatError(f"{file}: file name is not a frame number") from None
        try:
            records = json.loads(file.read_text())
        except json.JSONDecodeError as err:
            raise FormatError(f"{file}: invalid json ({err})") from None
        if isinstance(records, dict):  # some writers wrap the list
            records = records.get("annots", records.get("people", [records]))
        people: dict[int, np.ndarray] = {}
        for record in records:
            if "keypoints3d" not in record:
                raise FormatError(f"{file}: a record lacks 'keypoints3d'")
            joints = _as_float_array(record["keypoints3d"], "keypoints3d", file)
            if joints.ndim != 2 or joints.shape[1] not in (3, 4):
                raise FormatError(f"{file}: keypoints3d has shape {joints.shape}, expected (J, 3) or (J, 4)")
            if joints.shape[1] == 3:
                joints = np.concatenate([joints, np.ones((len(joints), 1))], axis=1)
            people[int(record.get("id", len(people)))] = joints
        result[frame] = people
    return result


def write_annots(
    path: str | Path,
    people: Iterable[tuple[int, np.ndarray]],
    width: int,
    height: int,
    filename: str = "",
) -> None:
    """Write one EasyMocap 2D `annots` json: per person a bbox and (J, 3) keypoints (x, y, conf)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    annots = []
    for pid, keypoints in people:
        keypoints = np.asarray(keypoints, dtype=np.float64)
        valid = keypoints[:, 2] > 0
        if valid.any():
            lo = keypoints[valid, :2].min(axis=0)
            hi = keypoints[valid, :2].max(axis=0)
            bbox = [float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]), 1.0]
        else:
            bbox = [0.0, 0.0, 0.0, 0.0, 0.0]
        annots.append({"personID": int(pid), "bbox": bbox, "keypoints": np.round(keypoints, 3).tolist()})
    payload = {"filename": filename, "height": int(height), "width": int(width), "annots": annots}
    path.write_text(json.dumps(payload))


def read_annots(path: str | Path) -> dict[int, np.ndarray]:
    """Read one EasyMocap 2D `annots` json into pid -> (J, 3) keypoints."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: annots file not found") from None
    except json.JSONDecodeError as err:
        raise FormatError(f"{path}: invalid json ({err})") from None
    return {
        int(a.get("personID", a.get("id", i))): np.asarray(a["keypoints"], dtype=np.float64)
        for i, a in enumerate(payload.get("annots", []))
    }


def read_annots_folder(
    folder: str | Path, camera_names: Sequence[str], frames: Sequence[int], num_joints: int = 24,
) -> dict[int, np.ndarray]:
    """Read EasyMocap 2D detections `<folder>/<cam>/<frame:06d>.json` for many views and frames.

    Returns person id -> (C, F, num_joints, 3) keypoints (u, v, confidence) in the order of
    `camera_names` and `frames`; a person absent from a view's file has confidence 0 there.
    Raises FileNotFoundError for a missing file and FormatError for keypoints of the wrong
    shape or with NaN/infinite values.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: annots folder not found")
    frames = [int(f) for f in frames]
    per_file: dict[tuple[int, int], dict[int, np.ndarray]] = {}
    for c, cam in enumerate(camera_names):
        for f, frame in enumerate(frames):
            path = folder / str(cam) / _frame_name(frame)
            people = read_annots(path)
            for pid, keypoints in people.items():
                if keypoints.ndim != 2 or keypoints.shape != (num_joints, 3):
                    raise FormatError(f"{path}: person {pid} has keypoints of shape {keypoints.shape}, "
                                      f"expected ({num_joints}, 3)")
                if not np.all(np.isfinite(keypoints)):
                    raise FormatError(f"{path}: person {pid} has NaN or infinite keypoints")
            per_file[c, f] = people
    pids = sorted({pid for people in per_file.values() for pid in people})
    result = {pid: np.zeros((len(camera_names), len(frames), num_joints, 3)) for pid in pids}
    for (c, f), people in per_file.items():
        for pid, keypoints in people.items():
            result[pid][c, f] = keypoints
    return result
