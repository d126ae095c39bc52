"""Per-person initial SMPL parameters (training) and ground truth (evaluation only).

Initialisation, first match wins (or ``init_path`` when given, which may be any
of these files or folders):

1. ``smpl_init/smpl.npz``: AvatarPose's dict ``human_<pid>`` -> betas, body_pose, ...;
2. ``smpl/<frame:06d>.json``: EasyMocap's ``[{id, Rh, Th, poses, shapes}]``. EasyMocap
   poses the model with zero translation, then rotates it by Rh about the model
   origin and adds Th; standard SMPL rotates about the root joint, so
   ``global_orient = Rh o poses[:3]`` and ``transl = Th - j0 + R(Rh) j0`` with ``j0``
   the rest-pose root joint for those betas;
3. ``keypoints3d/<frame:06d>.json``: 3D joints (24 SMPL joints, or BODY25 mapped
   onto the SMPL joints it shares) fitted with ``fit_smpl_to_joints``. The fit is
   cached on disk, keyed by the keypoints, the frames and the body model.

Everything is returned in the input world frame, restricted to the selected
frames, one ``SmplSequence`` per person id. Ground truth is loaded separately,
and problems with it are warnings (training does not need it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from collections.abc import Sequence

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from avatarpose_ns.body.body_model import BodyModel, root_joint
from avatarpose_ns.scene.transform import transform_smpl
from avatarpose_ns.dataparsers.sequence import LOG, SequenceError
from avatarpose_ns.fitting import source_digest
from avatarpose_ns.fitting.smpl_fit import FitConfig, fit_smpl_to_joints
from avatarpose_ns.io.easymocap import FormatError, SmplSequence, read_keypoints3d_folder, read_smpl_npz, write_smpl_npz

NUM_BETAS = 10
FIT_CACHE_VERSION = 1
INIT_CANDIDATES = ("smpl_init/smpl.npz", "smpl/<frame>.json (EasyMocap Rh/Th/poses/shapes)",
                   "keypoints3d/<frame>.json")

# SMPL joint -> BODY25 keypoint for the joints both skeletons share (approximately: OpenPose hips sit a
# little lower and wider than SMPL's); the other SMPL joints get zero confidence.
BODY25_FOR_SMPL: dict[int, int] = {
    0: 8, 1: 12, 2: 9, 4: 13, 5: 10, 7: 14, 8: 11, 10: 19, 11: 22, 12: 1,
    16: 5, 17: 2, 18: 6, 19: 3, 20: 7, 21: 4,
}


# ----------------------------------------------------------------------------- helpers


def posed_joints(body: BodyModel, seq: SmplSequence) -> np.ndarray:
    """The 24 posed joints (F, 24, 3) of one person."""
    with torch.no_grad():
        joints = body.joints_only(torch.tensor(seq.betas[None], dtype=body.dtype),
                                  torch.tensor(seq.body_pose, dtype=body.dtype),
                                  torch.tensor(seq.global_orient, dtype=body.dtype),
                                  torch.tensor(seq.transl, dtype=body.dtype))
    return joints.double().numpy()


def _frame_json(folder: Path, frame: int) -> Path:
    return folder / f"{frame:06d}.json"


def _finite(value: object, what: str, path: Path) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise SequenceError(f"{path}: {what} is not numeric") from None
    if not np.all(np.isfinite(array)):
        raise SequenceError(f"{path}: {what} contains NaN or infinite values")
    return array


def validate_people(people: dict[int, SmplSequence], source: str) -> None:
    """Shapes and finiteness of SMPL parameters; errors name ``source``."""
    if not people:
        raise SequenceError(f"{source}: no people")
    for pid, seq in people.items():
        if seq.betas.size != NUM_BETAS:
            raise SequenceError(f"{source}: person {pid} has {seq.betas.size} betas, expected {NUM_BETAS}")
        if seq.body_pose.shape[1] != 69:
            raise SequenceError(f"{source}: person {pid} body_pose has {seq.body_pose.shape[1]} values per frame, "
                                "expected 69")
        for name in ("betas", "body_pose", "global_orient", "transl"):
            if not np.all(np.isfinite(getattr(seq, name))):
                raise SequenceError(f"{source}: person {pid} {name} contains NaN or infinite values")


def restrict_frames(people: dict[int, SmplSequence], frames: Sequence[int], source: str) -> dict[int, SmplSequence]:
    """Each person's parameters at exactly ``frames``; a selected frame a person lacks is an error."""
    out = {}
    for pid, seq in people.items():
        index = {int(f): i for i, f in enumerate(seq.frames)}
        missing = [f for f in frames if f not in index]
        if missing:
            have = f"{seq.frames.min()}..{seq.frames.max()}" if seq.num_frames else "none"
            raise SequenceError(f"{source}: person {pid} has no parameters for frames {missing[:8]}"
                                f"{' ...' if len(missing) > 8 else ''} (it has frames {have})")
        rows = [index[f] for f in frames]
        out[pid] = SmplSequence(seq.betas, seq.body_pose[rows], seq.global_orient[rows], seq.transl[rows],
                                np.asarray(frames))
    return out


# ----------------------------------------------------------------------------- readers


def read_npz_checked(path: Path) -> dict[int, SmplSequence]:
    """``read_smpl_npz`` with every failure reported as an error naming the file."""
    try:
        people = read_smpl_npz(path)
    except FormatError as err:
        raise SequenceError(str(err)) from None
    except ValueError as err:
        raise SequenceError(f"{path}: wrong array shapes ({err})") from None
    validate_people(people, str(path))
    return people


def read_easymocap_smpl(folder: Path, frames: Sequence[int], body: BodyModel) -> dict[int, SmplSequence]:
    """EasyMocap ``smpl/<frame>.json`` (Rh, Th, poses, shapes) converted to standard SMPL parameters."""
    records: dict[int, list[dict]] = {}
    for frame in frames:
        path = _frame_json(folder, frame)
        if not path.is_file():
            raise SequenceError(f"{path}: EasyMocap SMPL file for frame {frame} not found")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise SequenceError(f"{path}: invalid json ({err})") from None
        if isinstance(data, dict):
            data = data.get("annots", [data])
        for i, rec in enumerate(data):
            missing = [k for k in ("Rh", "Th", "poses", "shapes") if k not in rec]
            if missing:
                raise SequenceError(f"{path}: record {i} lacks {missing}")
            rh = _finite(rec["Rh"], "Rh", path).reshape(-1)
            th = _finite(rec["Th"], "Th", path).reshape(-1)
            poses = _finite(rec["poses"], "poses", path).reshape(-1)
            shapes = _finite(rec["shapes"], "shapes", path).reshape(-1)
            if rh.size != 3 or th.size != 3:
                raise SequenceError(f"{path}: record {i}: Rh and Th must have 3 values (got {rh.size}, {th.size})")
            if poses.size not in (69, 72):
                raise SequenceError(f"{path}: record {i}: poses has {poses.size} values, expected 72 (or 69)")
            if shapes.size != NUM_BETAS:
                raise SequenceError(f"{path}: record {i}: shapes has {shapes.size} values, expected {NUM_BETAS}")
            if poses.size == 69:
                poses = np.concatenate([np.zeros(3), poses])
            records.setdefault(int(rec.get("id", i)), []).append(
                {"frame": frame, "Rh": rh, "Th": th, "poses": poses, "shapes": shapes, "path": path})
    people = {}
    for pid, recs in sorted(records.items()):
        if len(recs) != len(frames):
            seen = {r["frame"] for r in recs}
            absent = [f for f in frames if f not in seen]
            raise SequenceError(f"{_frame_json(folder, absent[0])}: person {pid} is missing in this frame "
                                f"({len(absent)} frames in all); every person needs parameters in every frame")
        betas = np.mean([r["shapes"] for r in recs], axis=0)
        poses = np.stack([r["poses"] for r in recs])
        local = SmplSequence(betas, poses[:, 3:], poses[:, :3], np.zeros((len(recs), 3)), np.asarray(frames))
        rotation = Rotation.from_rotvec(np.stack([r["Rh"] for r in recs])).as_matrix()
        people[pid] = transform_smpl(local, rotation, np.stack([r["Th"] for r in recs]), root_joint(body, betas))
    return people


def _keypoint_arrays(folder: Path, frames: Sequence[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Person id -> (joints (F, 24, 3), confidence (F, 24)) over ``frames``; NaN where a person is unseen."""
    try:
        data = read_keypoints3d_folder(folder)
    except FormatError as err:
        raise SequenceError(str(err)) from None
    pids = sorted({pid for f in frames for pid in data.get(f, {})})
    out = {pid: (np.full((len(frames), 24, 3), np.nan), np.zeros((len(frames), 24))) for pid in pids}
    for i, frame in enumerate(frames):
        for pid, kp in data.get(frame, {}).items():
            if kp.shape[0] == 24:
                out[pid][0][i], out[pid][1][i] = kp[:, :3], kp[:, 3]
            elif kp.shape[0] == 25:
                for smpl_joint, body25 in BODY25_FOR_SMPL.items():
                    out[pid][0][i, smpl_joint], out[pid][1][i, smpl_joint] = kp[body25, :3], kp[body25, 3]
            else:
                raise SequenceError(f"{_frame_json(folder, frame)}: person {pid} has {kp.shape[0]} keypoints; "
                                    "expected 24 (SMPL joints) or 25 (BODY25)")
    return out


def _fill_gaps(joints: np.ndarray, conf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frames where a person is unseen: joints interpolated from its other frames, at low confidence."""
    seen = np.isfinite(joints).all(axis=(1, 2))
    if seen.all():
        return joints, conf
    positions = np.arange(len(joints))
    filled = joints.copy()
    for j in range(joints.shape[1]):
        for c in range(3):
            filled[:, j, c] = np.interp(positions, positions[seen], joints[seen, j, c])
    conf = conf.copy()
    conf[~seen] = 0.1 * conf[seen].mean(axis=0)
    return filled, conf


def fit_keypoints(folder: Path, frames: Sequence[int], body: BodyModel,
                  cache_dir: Path | None) -> dict[int, SmplSequence]:
    """SMPL fitted to ``keypoints3d/<frame>.json``, per person over the selected frames.

    A person seen in fewer than half the frames is dropped (a spurious detection); one missing in a
    few frames is interpolated there, both with a warning.
    """
    arrays = _keypoint_arrays(folder, frames)
    people: dict[int, SmplSequence] = {}
    config = FitConfig()
    for pid, (joints, conf) in arrays.items():
        seen = np.isfinite(joints).all(axis=(1, 2))
        if seen.sum() < max(1, len(frames) / 2):
            LOG.warning("%s: person %d appears in only %d of %d frames; not used", folder, pid, seen.sum(), len(frames))
            continue
        if not seen.all():
            LOG.warning("%s: person %d is missing in frames %s; its joints there are interpolated", folder, pid,
                        [f for f, s in zip(frames, seen) if not s][:8])
        joints, conf = _fill_gaps(joints, conf)
        key = hashlib.sha1(b"".join([
            np.ascontiguousarray(joints).tobytes(), np.ascontiguousarray(conf).tobytes(),
            np.asarray(frames, dtype=np.int64).tobytes(), str(body.model_path).encode(),
            json.dumps(asdict(config), sort_keys=True).encode(), str(FIT_CACHE_VERSION).encode(),
            source_digest().encode(),
        ])).hexdigest()[:16]
        cached = cache_dir / "smpl_fit" / f"{key}.npz" if cache_dir is not None else None
        if cached is not None and cached.is_file():
            people[pid] = read_smpl_npz(cached)[0]
            continue
        LOG.info("fitting SMPL to the keypoints of person %d (%d frames)", pid, len(frames))
        people[pid] = fit_smpl_to_joints(body, joints, conf, np.asarray(frames), config)
        if cached is not None:
            write_smpl_npz(cached, {0: people[pid]})
    if not people:
        raise SequenceError(f"{folder}: no person is seen in enough of the selected frames")
    return people


# ----------------------------------------------------------------------------- sources


def _kind(path: Path) -> tuple[str, Path]:
    """What an init path holds: ('npz', file), ('smpl', folder) or ('keypoints3d', folder)."""
    if path.is_file():
        return "npz", path
    if (path / "smpl.npz").is_file():
        return "npz", path / "smpl.npz"
    files = sorted(path.glob("*.json"))
    if not files:
        raise SequenceError(f"{path}: neither an smpl.npz nor a folder of <frame>.json files")
    try:
        data = json.loads(files[0].read_text())
    except json.JSONDecodeError as err:
        raise SequenceError(f"{files[0]}: invalid json ({err})") from None
    records = data.get("annots", [data]) if isinstance(data, dict) else data
    first = records[0] if records else {}
    if "Rh" in first or "poses" in first:
        return "smpl", path
    if "keypoints3d" in first:
        return "keypoints3d", path
    raise SequenceError(f"{files[0]}: neither EasyMocap SMPL (Rh, Th, poses, shapes) nor keypoints3d records")


def find_init(root: Path, init_path: Path | None = None) -> tuple[str, Path]:
    """Which initialisation a sequence uses (first match wins, see module docstring): its kind
    ('npz', 'smpl' or 'keypoints3d') and file or folder."""
    if init_path is not None:
        path = init_path if init_path.is_absolute() else root / init_path
        if not path.exists():
            raise SequenceError(f"{path}: initialisation path not found")
        return _kind(path)
    # folders count only with <frame>.json inside: Hi4D's smpl/ holds ground-truth npz files
    candidates = [p for p in (root / "smpl_init" / "smpl.npz", root / "smpl", root / "keypoints3d")
                  if p.is_file() or (p.is_dir() and any(p.glob("*.json")))]
    if not candidates:
        raise SequenceError(f"{root}: no SMPL initialisation (looked for {', '.join(INIT_CANDIDATES)}); "
                            "pass init_path to use one stored elsewhere")
    return _kind(candidates[0])


def init_frames(root: Path, init_path: Path | None = None) -> list[int]:
    """Every frame number the initialisation has (any person), before the frame selection."""
    kind, path = find_init(root, init_path)
    if kind == "npz":
        return sorted({int(f) for seq in read_npz_checked(path).values() for f in seq.frames})
    return sorted(int(p.stem) for p in path.glob("*.json") if p.stem.isdigit())


def load_init(root: Path, frames: Sequence[int], body: BodyModel, init_path: Path | None = None,
              cache_dir: Path | None = None) -> tuple[dict[int, SmplSequence], str]:
    """The initialisation (first match wins, see module docstring) and a description of its source."""
    kind, path = find_init(root, init_path)
    if kind == "npz":
        people = restrict_frames(read_npz_checked(path), frames, str(path))
    elif kind == "smpl":
        people = read_easymocap_smpl(path, frames, body)
    else:
        people = fit_keypoints(path, frames, body, cache_dir)
    validate_people(people, str(path))
    return dict(sorted(people.items())), f"{kind}:{path}"


def load_gt_npz(path: Path, frames: Sequence[int]) -> dict[int, SmplSequence] | None:
    """Ground-truth SMPL at the selected frames it covers, or None (with a warning) when unusable."""
    try:
        people = read_npz_checked(path)
    except SequenceError as err:
        LOG.warning("ground truth not used: %s", err)
        return None
    out = {}
    for pid, seq in people.items():
        rows = [i for i, f in enumerate(seq.frames) if int(f) in set(frames)]
        if rows:
            out[pid] = SmplSequence(seq.betas, seq.body_pose[rows], seq.global_orient[rows], seq.transl[rows],
                                    seq.frames[rows])
    if not out:
        LOG.warning("%s: ground truth covers none of the selected frames; not used", path)
        return None
    return out


def load_gt_keypoints(folder: Path, frames: Sequence[int]) -> dict[int, dict[int, np.ndarray]] | None:
    """Ground-truth 3D joints frame -> pid -> (J, 4) at the selected frames, or None (with a warning)."""
    try:
        data = read_keypoints3d_folder(folder)
    except (FormatError, FileNotFoundError) as err:
        LOG.warning("ground-truth keypoints not used: %s", err)
        return None
    out = {f: data[f] for f in frames if f in data}
    return out or None


def check_person_ids(init: dict[int, SmplSequence], init_source: str, gt_ids: Sequence[int], gt_source: str) -> None:
    """Init and ground truth name their people independently; evaluation matches people by pose
    (docs/design.md#metrics), so differing ids are a warning, not an error."""
    if sorted(init) != sorted(gt_ids):
        LOG.warning("person ids differ between the initialisation %s (%s) and the ground truth %s (%s); "
                    "evaluation matches people by their poses, not by id", init_source, sorted(init), gt_source,
                    sorted(gt_ids))
