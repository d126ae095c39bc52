"""Multi-person 3D pose metrics: MPJPE, PCP3D, AP@K, Recall@500, PCK@50.

Pure numpy. Poses come in metres in absolute world coordinates (no alignment);
every reported distance is in millimetres and every ratio in percent.

Per frame, with P predictions and G ground-truth (GT) persons of J joints:

    pred (P, J, 3)   gt (G, J, 3)   optional confidences (P,)

- error(p, g): mean over joints of the Euclidean distance (MPJPE) between
  prediction p and GT person g.
- MPJPE: greedy one-to-one matching per frame in ascending error, only pairs
  with error < 500 mm; averaged over the matched pairs (per joint errors are kept
  for per-joint, per-group and per-person tables).
- AP@K (VoxelPose protocol): each prediction is paired with its closest GT in its
  frame. All predictions of the sequence are ranked by confidence (descending)
  or, without confidences, by that error (ascending). Walking the ranking, a
  prediction is a true positive if its error < K and its GT has not been taken
  by an earlier prediction, otherwise a false positive. AP is the VOC all-point
  interpolated area under the precision/recall curve.
- Recall@500: share of GT persons that are the closest GT of at least one
  prediction with error < 500 mm (VoxelPose's definition).
- PCP3D: per GT person the closest prediction (no one-to-one constraint); a limb
  (a, b) is correct if (|pred_a - gt_a| + |pred_b - gt_b|) / 2 <= 0.5 |gt_a - gt_b|.
  A GT person in a frame without predictions gets all its limbs wrong.
- PCK@50: share of the joints of matched (MPJPE) pairs with error < 50 mm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from collections.abc import Mapping

import numpy as np

from avatarpose_ns.body.skeleton import (
    BODY25_TO_AVATARPOSE19,
    SMPL_JOINT_GROUPS,
    SMPL_JOINT_NAMES,
    SMPL_LIMBS,
)

AP_THRESHOLDS_MM: tuple[int, ...] = (25, 50, 75, 100, 125, 150)
MATCH_THRESHOLD_MM = 500.0
RECALL_THRESHOLD_MM = 500.0
PCK_THRESHOLD_MM = 50.0
PCP_ALPHA = 0.5

# --------------------------------------------------------------------------- joint sets

BODY25_JOINT_NAMES: tuple[str, ...] = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder",
    "left_elbow", "left_wrist", "mid_hip", "right_hip", "right_knee", "right_ankle",
    "left_hip", "left_knee", "left_ankle", "right_eye", "left_eye", "right_ear",
    "left_ear", "left_big_toe", "left_small_toe", "left_heel", "right_big_toe",
    "right_small_toe", "right_heel",
)

# the 19 AvatarPose joints: BODY25 rows in BODY25_TO_AVATARPOSE19 order
AVATARPOSE19_JOINT_NAMES: tuple[str, ...] = tuple(BODY25_JOINT_NAMES[i] for i in BODY25_TO_AVATARPOSE19)
# 0 mid_hip, 1 neck, 2 right_hip, 3 left_hip, 4 nose, 5 right_shoulder, 6 left_shoulder,
# 7 right_knee, 8 left_knee, 9 right_ear, 10 left_ear, 11 right_elbow, 12 left_elbow,
# 13 right_ankle, 14 left_ankle, 15 right_wrist, 16 left_wrist, 17 left_big_toe, 18 right_big_toe

# limbs of the 19-joint skeleton, as in AvatarPose's evaluation
AVATARPOSE19_LIMBS: tuple[tuple[int, int], ...] = (
    (0, 1), (0, 2), (0, 3),            # spine, hips
    (1, 4), (1, 5), (1, 6),            # neck-nose, shoulders
    (2, 7), (3, 8),                    # thighs
    (4, 9), (4, 10),                   # nose-ears
    (5, 11), (6, 12),                  # upper arms
    (7, 13), (8, 14),                  # shins
    (11, 15), (12, 16),                # forearms
    (13, 18), (14, 17),                # feet (ankle to big toe)
)

# same grouping idea as SMPL_JOINT_GROUPS: torso+head, legs (hips down), arms, hands
AVATARPOSE19_JOINT_GROUPS: dict[str, tuple[int, ...]] = {
    "torso": (0, 1, 4, 9, 10),
    "legs": (2, 3, 7, 8, 13, 14, 17, 18),
    "arms": (5, 6, 11, 12),
    "hands": (15, 16),
}


@dataclass(frozen=True)
class JointSet:
    """A named joint set: joint names, PCP limbs (index pairs) and joint groups."""

    name: str
    joint_names: tuple[str, ...]
    limbs: tuple[tuple[int, int], ...] = ()
    groups: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)


SMPL24 = JointSet("smpl24", tuple(SMPL_JOINT_NAMES), tuple(SMPL_LIMBS), dict(SMPL_JOINT_GROUPS))
AVATARPOSE19 = JointSet("avatarpose19", AVATARPOSE19_JOINT_NAMES, AVATARPOSE19_LIMBS, AVATARPOSE19_JOINT_GROUPS)
JOINT_SETS: dict[str, JointSet] = {SMPL24.name: SMPL24, AVATARPOSE19.name: AVATARPOSE19}


def generic_joint_set(num_joints: int) -> JointSet:
    """A joint set with no limbs and no groups (PCP is then NaN)."""
    return JointSet(f"generic{num_joints}", tuple(f"joint_{i}" for i in range(num_joints)))


def get_joint_set(joint_set: str | JointSet) -> JointSet:
    """Look up a joint set by name ('smpl24', 'avatarpose19') or pass one through."""
    if isinstance(joint_set, JointSet):
        return joint_set
    try:
        return JOINT_SETS[joint_set]
    except KeyError:
        raise ValueError(f"unknown joint set '{joint_set}', expected one of {sorted(JOINT_SETS)}") from None


# --------------------------------------------------------------------------- building blocks


def joint_errors(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-joint Euclidean distances of every prediction to every GT person.

    pred (P, J, 3), gt (G, J, 3) -> (P, G, J), in the inputs' unit.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.ndim != 3 or gt.ndim != 3 or pred.shape[-1] != 3 or gt.shape[-1] != 3:
        raise ValueError(f"expected pred (P, J, 3) and gt (G, J, 3), got {pred.shape} and {gt.shape}")
    if pred.shape[1] != gt.shape[1]:
        raise ValueError(f"predictions have {pred.shape[1]} joints but ground truth has {gt.shape[1]}")
    return np.linalg.norm(pred[:, None] - gt[None], axis=-1)


def greedy_match(cost: np.ndarray, max_cost: float = math.inf) -> list[tuple[int, int]]:
    """Greedy one-to-one matching in ascending cost, keeping only pairs with cost < max_cost.

    cost (P, G) -> list of (row, col), in the order they were taken. Ties are
    broken by row then column index.
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2:
        raise ValueError(f"cost must be (P, G), got shape {cost.shape}")
    order = np.argsort(cost, axis=None, kind="stable")
    used_rows: set[int] = set()
    used_cols: set[int] = set()
    pairs: list[tuple[int, int]] = []
    for flat in order:
        r, c = divmod(int(flat), cost.shape[1])
        if not cost[r, c] < max_cost:
            break  # sorted: everything after is at least as large
        if r in used_rows or c in used_cols:
            continue
        used_rows.add(r)
        used_cols.add(c)
        pairs.append((r, c))
    return pairs


def voc_average_precision(is_tp: np.ndarray, num_gt: int) -> float:
    """VOC all-point interpolated AP of a ranked detection list, in [0, 1].

    is_tp (N,) bool, in ranking order (best first); num_gt: number of GT objects.
    Precision is replaced by its monotone envelope (max over all later ranks)
    and summed over the recall increments.
    """
    is_tp = np.asarray(is_tp, dtype=bool).reshape(-1)
    if num_gt <= 0:
        raise ValueError("AP needs at least one ground-truth person")
    if is_tp.size == 0:
        return 0.0
    tp = np.cumsum(is_tp)
    fp = np.cumsum(~is_tp)
    recall = tp / num_gt
    precision = tp / (tp + fp)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(steps * envelope))


def rank_predictions(errors: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
    """Ranking order for AP: by score descending (ties: error ascending), or by error ascending.

    errors (N,), scores (N,) or None -> (N,) indices.
    """
    errors = np.asarray(errors, dtype=np.float64).reshape(-1)
    if scores is None:
        return np.argsort(errors, kind="stable")
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if scores.shape != errors.shape:
        raise ValueError(f"scores {scores.shape} and errors {errors.shape} differ in length")
    return np.lexsort((errors, -scores))


def true_positives(ranked_errors: np.ndarray, ranked_gt: np.ndarray, threshold: float) -> np.ndarray:
    """TP flags of a ranked list: error < threshold and its GT not taken before.

    ranked_errors (N,) error of each prediction to its closest GT; ranked_gt (N,)
    int global id of that GT (-1 for none) -> (N,) bool.
    """
    taken: set[int] = set()
    flags = np.zeros(len(ranked_errors), dtype=bool)
    for i, (err, g) in enumerate(zip(ranked_errors, ranked_gt)):
        g = int(g)
        if g >= 0 and err < threshold and g not in taken:
            taken.add(g)
            flags[i] = True
    return flags


def limbs_correct(pred: np.ndarray, gt: np.ndarray, limbs: tuple[tuple[int, int], ...],
                  alpha: float = PCP_ALPHA) -> np.ndarray:
    """PCP limb test for one person. pred (J, 3), gt (J, 3) -> (L,) bool.

    A limb (a, b) is correct if the mean of its endpoint errors is <= alpha x GT limb length.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if not limbs:
        return np.zeros(0, dtype=bool)
    idx = np.asarray(limbs, dtype=np.int64)
    err = np.linalg.norm(pred - gt, axis=-1)  # (J,)
    length = np.linalg.norm(gt[idx[:, 0]] - gt[idx[:, 1]], axis=-1)
    return (err[idx[:, 0]] + err[idx[:, 1]]) / 2.0 <= alpha * length


# --------------------------------------------------------------------------- results


@dataclass
class PersonMetrics:
    """Results for one GT person id over the sequence. Distances in mm, ratios in %."""

    num_frames: int  # frames in which this GT person appears
    num_matched: int  # of those, frames with an MPJPE match (< 500 mm)
    mpjpe: float  # mean over matched frames; NaN if never matched
    pck50: float  # over matched frames' joints; NaN if never matched
    pcp: float  # over all its frames (unmatched ones count against it); NaN without limbs

    def to_dict(self) -> dict:
        return {k: _json_number(v) for k, v in self.__dict__.items()}


@dataclass
class PoseMetrics:
    """Sequence-level metrics. Distances in millimetres, ratios/AP in percent (0-100).

    NaN marks a metric that is undefined (no matched pairs, no limbs).
    """

    joint_set: str
    joint_names: tuple[str, ...]
    mpjpe: float
    pcp: float
    pck50: float
    ap: dict[int, float]  # threshold K (mm) -> AP@K (%)
    ap_recall: dict[int, float]  # threshold K (mm) -> recall at the end of the ranking (%)
    recall500: float
    per_joint_mpjpe: np.ndarray  # (J,) mm over matched pairs
    per_group_mpjpe: dict[str, float]
    per_person: dict[int, PersonMetrics]  # by GT person id
    num_frames: int  # GT frames evaluated
    num_gt: int  # GT persons over all frames
    num_pred: int  # predictions over the evaluated frames
    num_matched: int  # matched (pred, GT) pairs
    # matched pairs, for further analysis: (M, J) mm and (M,) ids
    matched_errors: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0)))
    matched_frames: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int64))
    matched_gt_ids: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int64))
    matched_pred_ids: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int64))

    @property
    def per_person_mpjpe(self) -> dict[int, float]:
        return {pid: p.mpjpe for pid, p in self.per_person.items()}

    def to_dict(self) -> dict:
        """JSON-ready summary (NaN -> None); matched pair arrays are left out."""
        return {
            "joint_set": self.joint_set,
            "units": {"distance": "mm", "ratio": "percent"},
            "mpjpe": _json_number(self.mpjpe),
            "pcp": _json_number(self.pcp),
            "pck50": _json_number(self.pck50),
            "ap": {str(k): _json_number(v) for k, v in self.ap.items()},
            "ap_recall": {str(k): _json_number(v) for k, v in self.ap_recall.items()},
            "recall500": _json_number(self.recall500),
            "per_joint_mpjpe": {
                name: _json_number(v) for name, v in zip(self.joint_names, self.per_joint_mpjpe)
            },
            "per_group_mpjpe": {k: _json_number(v) for k, v in self.per_group_mpjpe.items()},
            "per_person": {str(pid): p.to_dict() for pid, p in self.per_person.items()},
            "num_frames": self.num_frames,
            "num_gt": self.num_gt,
            "num_pred": self.num_pred,
            "num_matched": self.num_matched,
        }


def _json_number(value):
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


# --------------------------------------------------------------------------- evaluation

FramePoses = Mapping[int, Mapping[int, np.ndarray]]  # frame -> person id -> (J, 3) metres


def _stack(people: Mapping[int, np.ndarray], what: str, frame: int) -> tuple[list[int], np.ndarray | None]:
    """Sorted ids and (N, J, 3) array of one frame's persons; arrays of (J, >=3) use xyz."""
    ids = sorted(people)
    arrays = []
    for pid in ids:
        a = np.asarray(people[pid], dtype=np.float64)
        if a.ndim != 2 or a.shape[1] < 3:
            raise ValueError(f"{what} frame {frame} person {pid}: expected a (J, 3) array, got shape {a.shape}")
        arrays.append(a[:, :3])
    if not arrays:
        return ids, None
    joints = {a.shape[0] for a in arrays}
    if len(joints) != 1:
        raise ValueError(f"{what} frame {frame}: persons have different joint counts {sorted(joints)}")
    stacked = np.stack(arrays)
    if not np.all(np.isfinite(stacked)):
        raise ValueError(f"{what} frame {frame}: joints contain NaN or infinite values")
    return ids, stacked


@dataclass
class _Frame:
    """One GT frame's validated poses: ids and (N, J, 3) metres (None: no person), prediction confidences."""

    frame: int
    gt_ids: list[int]
    gt: np.ndarray | None
    pred_ids: list[int]
    pred: np.ndarray | None
    conf: np.ndarray  # (P,)


def _check_frames(pred: FramePoses, gt: FramePoses, jset: JointSet | None,
                  pred_conf: Mapping[int, Mapping[int, float]] | None) -> tuple[list[_Frame], JointSet]:
    """Stack and validate every GT frame; the joint set (a generic one when ``jset`` is None)."""
    frames = []
    num_joints: int | None = jset.num_joints if jset is not None else None
    for frame in sorted(gt):
        gt_ids, gt_arr = _stack(gt[frame], "ground truth", frame)
        pred_ids, pred_arr = _stack(pred.get(frame, {}), "prediction", frame)
        for what, arr in (("ground truth", gt_arr), ("prediction", pred_arr)):
            if arr is None:
                continue
            if num_joints is None:
                num_joints = arr.shape[1]
            if arr.shape[1] != num_joints:
                expected = f"joint set {jset.name}" if jset is not None else "the other poses"
                raise ValueError(
                    f"{what} frame {frame} has {arr.shape[1]} joints but {expected} has {num_joints}; "
                    "prediction and ground truth must use the same joint set"
                )
        if pred_conf is not None and pred_ids:
            frame_conf = pred_conf.get(frame, {})
            missing = [pid for pid in pred_ids if pid not in frame_conf]
            if missing:
                raise ValueError(f"pred_conf lacks confidences for frame {frame} persons {missing}")
            conf = np.asarray([float(frame_conf[pid]) for pid in pred_ids])
        else:
            conf = np.zeros(len(pred_ids))
        frames.append(_Frame(frame, gt_ids, gt_arr, pred_ids, pred_arr, conf))

    if num_joints is None or not any(f.gt_ids for f in frames):
        raise ValueError("ground truth contains no persons")
    return frames, jset if jset is not None else generic_joint_set(num_joints)


@dataclass
class SequenceMatches:
    """What the per-frame matching found, before any averaging. Errors in mm."""

    num_joints: int
    # per prediction (AP / recall): error to its closest GT, that GT's sequence-wide index (-1: none), confidence
    pred_errors: list[float] = field(default_factory=list)
    pred_gt_index: list[int] = field(default_factory=list)
    pred_conf: list[float] = field(default_factory=list)
    # matched pairs (MPJPE / PCK): per-joint errors (J,), frame, GT id, prediction id
    pair_errors: list[np.ndarray] = field(default_factory=list)
    pair_frames: list[int] = field(default_factory=list)
    pair_gt_ids: list[int] = field(default_factory=list)
    pair_pred_ids: list[int] = field(default_factory=list)
    # per GT person id: frames present, limbs correct
    person_frames: dict[int, int] = field(default_factory=dict)
    person_limbs_ok: dict[int, int] = field(default_factory=dict)
    limbs_ok: int = 0
    num_frames: int = 0
    num_gt: int = 0
    num_pred: int = 0


def match_frames(frames: list[_Frame], jset: JointSet) -> SequenceMatches:
    """Per frame: each prediction's closest GT, the greedy one-to-one MPJPE matching, PCP limbs."""
    limbs = jset.limbs
    found = SequenceMatches(num_joints=jset.num_joints, num_frames=len(frames))
    for f in frames:
        g_count = len(f.gt_ids)
        p_count = len(f.pred_ids)
        base = found.num_gt  # global GT index of this frame's first person
        found.num_gt += g_count
        found.num_pred += p_count
        for gid in f.gt_ids:
            found.person_frames[gid] = found.person_frames.get(gid, 0) + 1
            found.person_limbs_ok.setdefault(gid, 0)
        if p_count and g_count:
            errs = joint_errors(f.pred * 1000.0, f.gt * 1000.0)  # (P, G, J) mm
            cost = errs.mean(axis=-1)  # (P, G)
            closest = cost.argmin(axis=1)
            found.pred_errors.extend(cost[np.arange(p_count), closest].tolist())
            found.pred_gt_index.extend((base + closest).tolist())
            for p, g in greedy_match(cost, MATCH_THRESHOLD_MM):
                found.pair_errors.append(errs[p, g])
                found.pair_frames.append(f.frame)
                found.pair_gt_ids.append(f.gt_ids[g])
                found.pair_pred_ids.append(f.pred_ids[p])
            if limbs:
                nearest_pred = cost.argmin(axis=0)  # (G,)
                for g, gid in enumerate(f.gt_ids):
                    ok = int(limbs_correct(f.pred[nearest_pred[g]], f.gt[g], limbs).sum())
                    found.limbs_ok += ok
                    found.person_limbs_ok[gid] += ok
        elif p_count:  # predictions in a frame whose GT is empty: all false positives
            found.pred_errors.extend([math.inf] * p_count)
            found.pred_gt_index.extend([-1] * p_count)
        found.pred_conf.extend(f.conf.tolist())
    return found


def aggregate_matches(found: SequenceMatches, jset: JointSet, ranked_by_conf: bool,
                      ap_thresholds: tuple[float, ...] = AP_THRESHOLDS_MM) -> PoseMetrics:
    """Sequence-level metrics from the matching: AP@K, Recall@500, MPJPE, PCK@50, PCP, per joint/group/person."""
    num_gt, num_joints = found.num_gt, found.num_joints
    num_limbs = len(jset.limbs)
    errors = np.asarray(found.pred_errors, dtype=np.float64)
    gt_index = np.asarray(found.pred_gt_index, dtype=np.int64)
    scores = np.asarray(found.pred_conf, dtype=np.float64) if ranked_by_conf else None
    order = rank_predictions(errors, scores)
    ap: dict[int, float] = {}
    ap_recall: dict[int, float] = {}
    for k in ap_thresholds:
        flags = true_positives(errors[order], gt_index[order], float(k))
        key = int(k) if float(k).is_integer() else k
        ap[key] = 100.0 * voc_average_precision(flags, num_gt)
        ap_recall[key] = 100.0 * flags.sum() / num_gt
    recalled = np.unique(gt_index[(errors < RECALL_THRESHOLD_MM) & (gt_index >= 0)])
    recall500 = 100.0 * len(recalled) / num_gt

    matched = np.asarray(found.pair_errors, dtype=np.float64).reshape(len(found.pair_errors), num_joints)
    m_gt_arr = np.asarray(found.pair_gt_ids, dtype=np.int64)
    nan = float("nan")
    if len(matched):
        mpjpe = float(matched.mean())
        pck50 = 100.0 * float((matched < PCK_THRESHOLD_MM).mean())
        per_joint = matched.mean(axis=0)
    else:
        mpjpe = pck50 = nan
        per_joint = np.full(num_joints, nan)
    per_group = {
        name: float(per_joint[list(idx)].mean()) if len(matched) else nan for name, idx in jset.groups.items()
    }
    pcp = 100.0 * found.limbs_ok / (num_gt * num_limbs) if num_limbs else nan

    per_person: dict[int, PersonMetrics] = {}
    for gid in sorted(found.person_frames):
        rows = matched[m_gt_arr == gid]
        frames = found.person_frames[gid]
        per_person[gid] = PersonMetrics(
            num_frames=frames,
            num_matched=len(rows),
            mpjpe=float(rows.mean()) if len(rows) else nan,
            pck50=100.0 * float((rows < PCK_THRESHOLD_MM).mean()) if len(rows) else nan,
            pcp=100.0 * found.person_limbs_ok[gid] / (frames * num_limbs) if num_limbs else nan,
        )

    return PoseMetrics(
        joint_set=jset.name,
        joint_names=tuple(jset.joint_names),
        mpjpe=mpjpe,
        pcp=pcp,
        pck50=pck50,
        ap=ap,
        ap_recall=ap_recall,
        recall500=recall500,
        per_joint_mpjpe=per_joint,
        per_group_mpjpe=per_group,
        per_person=per_person,
        num_frames=found.num_frames,
        num_gt=num_gt,
        num_pred=found.num_pred,
        num_matched=len(matched),
        matched_errors=matched,
        matched_frames=np.asarray(found.pair_frames, dtype=np.int64),
        matched_gt_ids=m_gt_arr,
        matched_pred_ids=np.asarray(found.pair_pred_ids, dtype=np.int64),
    )


def evaluate_sequence(
    pred: FramePoses,
    gt: FramePoses,
    joint_set: str | JointSet | None = "smpl24",
    pred_conf: Mapping[int, Mapping[int, float]] | None = None,
    ap_thresholds: tuple[float, ...] = AP_THRESHOLDS_MM,
) -> PoseMetrics:
    """Evaluate multi-person 3D poses over a sequence.

    pred, gt: frame -> person id -> (J, 3) joints in metres (extra columns,
        e.g. a confidence, are ignored). Every GT frame is evaluated; a GT frame
        without predictions counts its persons as misses. Predicted frames absent
        from the GT are ignored (nothing to score them against).
    joint_set: 'smpl24', 'avatarpose19', a JointSet, or None for any J without
        limbs/groups (PCP is then NaN).
    pred_conf: frame -> person id -> confidence, for every prediction, or None
        (then AP ranks by error).

    Raises ValueError on joint-count mismatches, malformed arrays, missing
    confidences or a GT without any person.
    """
    frames, jset = _check_frames(pred, gt, get_joint_set(joint_set) if joint_set is not None else None, pred_conf)
    return aggregate_matches(match_frames(frames, jset), jset, pred_conf is not None, ap_thresholds)


# --------------------------------------------------------------------------- BODY25 joints


def body25_to_avatarpose19(joints: np.ndarray) -> np.ndarray:
    """Pick the 19 AvatarPose joints from BODY25 joints. (..., 25, C) -> (..., 19, C)"""
    joints = np.asarray(joints)
    if joints.ndim < 2 or joints.shape[-2] != 25:
        raise ValueError(f"expected BODY25 joints (..., 25, C), got shape {joints.shape}")
    return joints[..., list(BODY25_TO_AVATARPOSE19), :]


def smpl_vertices_to_avatarpose19(vertices: np.ndarray, regressor: np.ndarray) -> np.ndarray:
    """Regress the 19 AvatarPose joints from SMPL vertices.

    vertices (..., V, 3), regressor (25, V) -> (..., 19, 3), same unit as vertices.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    regressor = np.asarray(regressor, dtype=np.float64)
    if regressor.ndim != 2 or regressor.shape[0] != 25:
        raise ValueError(f"BODY25 regressor must be (25, V), got shape {regressor.shape}")
    if vertices.ndim < 2 or vertices.shape[-1] != 3 or vertices.shape[-2] != regressor.shape[1]:
        raise ValueError(
            f"vertices must be (..., {regressor.shape[1]}, 3) to match the regressor, got shape {vertices.shape}"
        )
    rows = regressor[list(BODY25_TO_AVATARPOSE19)]  # (19, V)
    return np.einsum("jv,...vc->...jc", rows, vertices)
