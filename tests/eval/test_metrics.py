"""Multi-person 3D pose metrics and the avatarpose-eval command, on hand-computed cases."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from avatarpose_ns.body.skeleton import BODY25_TO_AVATARPOSE19, SMPL_LIMBS
from avatarpose_ns.eval.loading import load_body25_regressor
from avatarpose_ns.eval.metrics import (
    AVATARPOSE19,
    AVATARPOSE19_JOINT_NAMES,
    evaluate_sequence,
    greedy_match,
    limbs_correct,
    smpl_vertices_to_avatarpose19,
    voc_average_precision,
)

# A 24-joint SMPL-ordered skeleton in metres. The left forearm (elbow 18 -> wrist 20)
# lies along x and is exactly 0.25 m long; the wrist is only in that PCP limb.
SKELETON = np.array([
    [0.0, 0.0, 1.0],     # 0 pelvis
    [0.1, 0.0, 0.9],     # 1 left_hip
    [-0.1, 0.0, 0.9],    # 2 right_hip
    [0.0, 0.0, 1.1],     # 3 spine1
    [0.1, 0.0, 0.5],     # 4 left_knee
    [-0.1, 0.0, 0.5],    # 5 right_knee
    [0.0, 0.0, 1.2],     # 6 spine2
    [0.1, 0.0, 0.1],     # 7 left_ankle
    [-0.1, 0.0, 0.1],    # 8 right_ankle
    [0.0, 0.0, 1.3],     # 9 spine3
    [0.1, 0.1, 0.0],     # 10 left_foot
    [-0.1, 0.1, 0.0],    # 11 right_foot
    [0.0, 0.0, 1.5],     # 12 neck
    [0.1, 0.0, 1.45],    # 13 left_collar
    [-0.1, 0.0, 1.45],   # 14 right_collar
    [0.0, 0.0, 1.7],     # 15 head
    [0.2, 0.0, 1.45],    # 16 left_shoulder
    [-0.2, 0.0, 1.45],   # 17 right_shoulder
    [0.5, 0.0, 1.45],    # 18 left_elbow
    [-0.5, 0.0, 1.45],   # 19 right_elbow
    [0.75, 0.0, 1.45],   # 20 left_wrist
    [-0.75, 0.0, 1.45],  # 21 right_wrist
    [0.85, 0.0, 1.45],   # 22 left_hand
    [-0.85, 0.0, 1.45],  # 23 right_hand
])
LEFT_WRIST = 20
NUM_LIMBS = len(SMPL_LIMBS)
A = SKELETON
B = SKELETON + np.array([2.0, 0.0, 0.0])  # a second person 2 m to the side
C = SKELETON + np.array([0.0, 3.0, 0.0])
AP_KEYS = (25, 50, 75, 100, 125, 150)


def shift(pose: np.ndarray, metres: float, axis: int = 1) -> np.ndarray:
    """Translate a whole pose: every joint error becomes `metres`."""
    out = pose.copy()
    out[:, axis] += metres
    return out


def assert_ap(metrics, expected: dict[int, float]) -> None:
    for k, v in expected.items():
        assert metrics.ap[k] == pytest.approx(v, abs=1e-6), f"AP@{k}"


# ----------------------------------------------------------------------- building blocks


def test_voc_ap_hand_computed():
    # ranking TP FP TP FP TP over 3 GT: precision 1, 1/2, 2/3, 1/2, 3/5;
    # envelope 1, 2/3, 2/3, 3/5, 3/5; recall steps of 1/3 at ranks 1, 3, 5
    assert voc_average_precision([1, 0, 1, 0, 1], 3) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    assert voc_average_precision([1, 0, 1, 0, 0], 3) == pytest.approx((1 + 2 / 3) / 3)
    assert voc_average_precision([0, 1], 1) == pytest.approx(0.5)
    # FP TP TP over 2 GT: raw precision 1/2 at the first TP, but the envelope lifts it to 2/3
    assert voc_average_precision([0, 1, 1], 2) == pytest.approx(2 / 3)
    assert voc_average_precision([1, 1], 2) == pytest.approx(1.0)
    assert voc_average_precision([], 2) == 0.0
    with pytest.raises(ValueError):
        voc_average_precision([1], 0)


def test_greedy_match_ascending_and_cutoff():
    cost = np.array([[1.0, 2.0], [0.5, 600.0], [3.0, 4.0]])
    # 0.5 takes (1, 0); then 1.0 (0, 0) blocked; 2.0 takes (0, 1); rest blocked
    assert greedy_match(cost) == [(1, 0), (0, 1)]
    assert greedy_match(np.array([[499.0, 501.0]]), 500.0) == [(0, 0)]
    assert greedy_match(np.array([[500.0]]), 500.0) == []  # strictly below the cutoff
    assert greedy_match(np.zeros((0, 3))) == []


def test_limbs_correct_boundary():
    pred = SKELETON.copy()
    pred[LEFT_WRIST, 1] += 0.25  # error 250 mm = forearm length: mean 125 = 0.5 x 250 -> correct
    ok = limbs_correct(pred * 1000, SKELETON * 1000, SMPL_LIMBS)
    assert ok.all()
    pred[LEFT_WRIST, 1] += 1e-6
    ok = limbs_correct(pred * 1000, SKELETON * 1000, SMPL_LIMBS)
    assert ok.sum() == NUM_LIMBS - 1 and not ok[SMPL_LIMBS.index((18, 20))]


# ----------------------------------------------------------------------- sequences


def test_perfect_prediction():
    gt = {f: {0: A, 1: B} for f in range(3)}
    pred = {f: {0: A.copy(), 1: B.copy()} for f in range(3)}
    m = evaluate_sequence(pred, gt)
    assert m.mpjpe == 0.0
    assert m.pcp == 100.0 and m.pck50 == 100.0 and m.recall500 == 100.0
    assert_ap(m, {k: 100.0 for k in AP_KEYS})
    assert m.num_frames == 3 and m.num_gt == 6 and m.num_pred == 6 and m.num_matched == 6
    assert m.per_joint_mpjpe.shape == (24,)
    assert set(m.per_group_mpjpe) == {"torso", "legs", "arms", "hands"}


def test_swapped_person_ids_still_match():
    gt = {0: {0: A, 1: B}, 1: {0: A, 1: B}}
    pred = {0: {7: B.copy(), 3: A.copy()}, 1: {0: B.copy(), 1: A.copy()}}
    m = evaluate_sequence(pred, gt)
    assert m.mpjpe == 0.0 and m.pcp == 100.0
    assert_ap(m, {k: 100.0 for k in AP_KEYS})
    assert set(m.per_person) == {0, 1}  # keyed by GT id
    assert all(p.mpjpe == 0.0 and p.num_matched == 2 for p in m.per_person.values())
    frame0 = m.matched_frames == 0
    assert dict(zip(m.matched_gt_ids[frame0], m.matched_pred_ids[frame0])) == {0: 3, 1: 7}


def test_missing_person():
    gt = {0: {0: A, 1: B}}
    m = evaluate_sequence({0: {0: A.copy()}}, gt)
    assert m.recall500 == 50.0
    assert_ap(m, {k: 50.0 for k in AP_KEYS})  # one TP at precision 1, recall 1/2
    assert m.mpjpe == 0.0 and m.num_matched == 1
    # B's closest prediction is A's, 2 m away: all of B's limbs are wrong
    assert m.pcp == 50.0
    assert m.per_person[1].num_matched == 0 and math.isnan(m.per_person[1].mpjpe)
    assert m.per_person[1].pcp == 0.0 and m.per_person[0].pcp == 100.0


def test_missing_frame_counts_as_miss():
    gt = {0: {0: A}, 1: {0: A}}
    m = evaluate_sequence({0: {0: A.copy()}, 5: {0: A.copy()}}, gt)  # frame 5 has no GT: ignored
    assert m.num_frames == 2 and m.num_gt == 2 and m.num_pred == 1
    assert m.recall500 == 50.0 and m.pcp == 50.0 and m.mpjpe == 0.0
    assert_ap(m, {k: 50.0 for k in AP_KEYS})


def test_extra_person_lowers_ap_only_where_it_should():
    gt = {0: {0: A, 1: B}}
    base = {0: {0: A.copy(), 1: shift(B, 0.06)}}  # errors 0 and 60 mm
    with_extra = {0: {0: A.copy(), 1: shift(B, 0.06), 2: shift(A, 0.03)}}  # duplicate of A at 30 mm
    m0 = evaluate_sequence(base, gt)
    m1 = evaluate_sequence(with_extra, gt)
    # ranking by error: A(0) TP, [extra(30) FP], B(60): FP below 75 mm, TP from 75 mm
    assert_ap(m0, {25: 50.0, 50: 50.0, 75: 100.0, 100: 100.0, 150: 100.0})
    assert_ap(m1, {25: 50.0, 50: 50.0, 75: 250 / 3, 100: 250 / 3, 150: 250 / 3})
    for m in (m0, m1):
        assert m.mpjpe == pytest.approx(30.0)  # (0 + 60) / 2, the extra is never matched
        assert m.num_matched == 2 and m.recall500 == 100.0
        assert m.pck50 == pytest.approx(50.0)  # A's 24 joints < 50 mm, B's 24 at 60 mm


def test_one_joint_off_by_60mm():
    pred = A.copy()
    pred[LEFT_WRIST, 1] += 0.06
    m = evaluate_sequence({0: {0: pred, 1: B.copy()}}, {0: {0: A, 1: B}})
    assert m.per_person[0].mpjpe == pytest.approx(60 / 24)  # 2.5 mm
    assert m.per_person[1].mpjpe == 0.0
    assert m.mpjpe == pytest.approx(60 / 48)
    assert m.per_person[0].pck50 == pytest.approx(100 * 23 / 24)
    assert m.pck50 == pytest.approx(100 * 47 / 48)
    # forearm 250 mm: mean endpoint error 30 <= 125 -> still correct
    assert m.pcp == 100.0
    assert m.per_joint_mpjpe[LEFT_WRIST] == pytest.approx(30.0)  # 60 and 0 over two pairs
    assert m.per_group_mpjpe["hands"] == pytest.approx(30.0 / 4)
    assert m.per_group_mpjpe["torso"] == 0.0 and m.per_group_mpjpe["arms"] == 0.0


def test_one_joint_off_fails_a_short_limb():
    short = A.copy()
    short[LEFT_WRIST, 0] = 0.55  # forearm 50 mm: 60 mm wrist error -> mean 30 > 25
    pred = short.copy()
    pred[LEFT_WRIST, 1] += 0.06
    m = evaluate_sequence({0: {0: pred}}, {0: {0: short}})
    assert m.pcp == pytest.approx(100 * (NUM_LIMBS - 1) / NUM_LIMBS)
    assert m.mpjpe == pytest.approx(2.5)


def test_mpjpe_500mm_cutoff():
    gt = {0: {0: A, 1: B}}
    pred = {0: {0: shift(A, 0.45, axis=2), 1: shift(B, 0.55, axis=2)}}
    m = evaluate_sequence(pred, gt)
    assert m.num_matched == 1 and m.mpjpe == pytest.approx(450.0)
    assert m.recall500 == 50.0
    assert_ap(m, {k: 0.0 for k in AP_KEYS})
    assert math.isnan(m.per_person[1].mpjpe)
    # nothing under 500 mm: no MPJPE at all
    m = evaluate_sequence({0: {0: shift(A, 0.6)}}, {0: {0: A}})
    assert m.num_matched == 0 and math.isnan(m.mpjpe) and math.isnan(m.pck50) and m.recall500 == 0.0


def test_ap_mixed_ranking_with_confidences():
    gt = {0: {0: A, 1: B}, 1: {0: C}}
    pred = {
        0: {1: shift(A, 0.01), 2: shift(A, 0.02), 3: shift(B, 0.01), 4: shift(A, 5.0, axis=0)},
        1: {5: shift(C, 0.03)},
    }
    conf = {0: {1: 0.9, 2: 0.8, 3: 0.7, 4: 0.6}, 1: {5: 0.5}}
    m = evaluate_sequence(pred, gt, pred_conf=conf)
    # K >= 50: TP FP TP FP TP -> (1 + 2/3 + 3/5) / 3; K = 25: the 30 mm one is FP -> (1 + 2/3) / 3
    assert_ap(m, {25: 100 * 5 / 9, 50: 100 * 34 / 45, 75: 100 * 34 / 45, 150: 100 * 34 / 45})
    assert m.recall500 == 100.0
    assert m.mpjpe == pytest.approx((10 + 10 + 30) / 3)
    assert m.ap_recall[25] == pytest.approx(200 / 3)


def test_confidence_ordering_is_used():
    gt = {0: {0: A}}
    pred = {0: {0: A.copy(), 1: shift(A, 0.03)}}
    by_error = evaluate_sequence(pred, gt)
    by_conf = evaluate_sequence(pred, gt, pred_conf={0: {0: 0.2, 1: 0.9}})
    assert by_error.ap[25] == 100.0  # exact one first: TP, then FP
    assert by_conf.ap[25] == pytest.approx(50.0)  # 30 mm one first: FP at 25 mm, then TP
    assert by_conf.ap[50] == 100.0  # 30 mm one is a TP at 50 mm
    with pytest.raises(ValueError, match="confidences"):
        evaluate_sequence(pred, gt, pred_conf={0: {0: 0.2}})


def test_joint_count_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="25 joints"):
        evaluate_sequence({0: {0: np.zeros((25, 3))}}, {0: {0: A}})
    with pytest.raises(ValueError, match="19 joints"):
        evaluate_sequence({0: {0: np.zeros((19, 3))}}, {0: {0: np.zeros((19, 3))}}, joint_set="smpl24")
    with pytest.raises(ValueError, match="no persons"):
        evaluate_sequence({}, {0: {}})


def test_avatarpose19_and_generic_joint_sets():
    gt19 = SKELETON[:19]
    m = evaluate_sequence({0: {0: gt19.copy()}}, {0: {0: gt19}}, joint_set="avatarpose19")
    assert m.pcp == 100.0 and m.mpjpe == 0.0 and len(AVATARPOSE19.limbs) == 18
    assert m.joint_names[0] == "mid_hip" and m.joint_names[1] == "neck" and m.joint_names[18] == "right_big_toe"
    assert AVATARPOSE19_JOINT_NAMES[9] == "right_ear" and AVATARPOSE19_JOINT_NAMES[17] == "left_big_toe"
    g = np.arange(45, dtype=float).reshape(15, 3) / 10
    m = evaluate_sequence({0: {0: shift(g, 0.01)}}, {0: {0: g}}, joint_set=None)
    assert m.mpjpe == pytest.approx(10.0) and math.isnan(m.pcp) and m.per_group_mpjpe == {}


def test_to_dict_is_json_ready():
    m = evaluate_sequence({0: {0: A.copy()}}, {0: {0: A, 1: B}})
    d = json.loads(json.dumps(m.to_dict()))
    assert d["per_person"]["1"]["mpjpe"] is None and d["ap"]["50"] == 50.0
    assert d["per_joint_mpjpe"]["left_wrist"] == 0.0


# ----------------------------------------------------------------------- BODY25 regressor


def test_body25_regressor_loading(tmp_path: Path):
    reg = np.random.default_rng(0).random((25, 30))
    np.save(tmp_path / "r.npy", reg)
    np.savez(tmp_path / "r.npz", J_regressor_body25=reg)
    np.savetxt(tmp_path / "r.txt", reg)
    np.save(tmp_path / "rt.npy", reg.T)
    for name in ("r.npy", "r.npz", "r.txt", "rt.npy"):
        np.testing.assert_allclose(load_body25_regressor(tmp_path / name), reg)
    # scipy sparse csr archive, densified without scipy
    rows, cols = np.nonzero(reg > 0.5)
    indptr = np.searchsorted(rows, np.arange(26))
    dense = np.where(reg > 0.5, reg, 0.0)
    np.savez(tmp_path / "s.npz", format=np.array(b"csr"), shape=np.array([25, 30]),
             indptr=indptr, indices=cols, data=reg[rows, cols])
    np.testing.assert_allclose(load_body25_regressor(tmp_path / "s.npz"), dense)

    with pytest.raises(FileNotFoundError, match="missing.npy"):
        load_body25_regressor(tmp_path / "missing.npy")
    np.save(tmp_path / "bad.npy", np.zeros((24, 30)))
    with pytest.raises(ValueError, match=r"bad\.npy.*\(25, V\)"):
        load_body25_regressor(tmp_path / "bad.npy")
    (tmp_path / "junk.npy").write_text("not numpy")
    with pytest.raises(ValueError, match="junk.npy"):
        load_body25_regressor(tmp_path / "junk.npy")
    with pytest.raises(ValueError, match="6890"):
        load_body25_regressor(tmp_path / "r.npy", num_vertices=6890)


def test_smpl_vertices_to_avatarpose19():
    verts = np.random.default_rng(1).normal(size=(2, 3, 25, 3))
    out = smpl_vertices_to_avatarpose19(verts, np.eye(25))  # vertex i is BODY25 joint i
    assert out.shape == (2, 3, 19, 3)
    np.testing.assert_allclose(out, verts[..., list(BODY25_TO_AVATARPOSE19), :])
    with pytest.raises(ValueError, match="vertices"):
        smpl_vertices_to_avatarpose19(np.zeros((10, 3)), np.eye(25))


# ----------------------------------------------------------------------- SMPL -> joints


class _FakeBodyModel:
    """joints = transl + j * 1 cm along x; 25 'vertices' = transl + v * 1 cm along z."""

    def joints_only(self, betas, body_pose, global_orient, transl):
        import torch

        return transl[:, None, :] + torch.arange(24.0)[None, :, None] * torch.tensor([0.01, 0.0, 0.0])

    def forward(self, betas, body_pose, global_orient, transl):
        import torch

        class Out:
            vertices = transl[:, None, :] + torch.arange(25.0)[None, :, None] * torch.tensor([0.0, 0.0, 0.01])

        return Out()


def test_smpl_sequences_to_joints():
    from avatarpose_ns.eval.loading import smpl_sequences_to_joints
    from avatarpose_ns.io.easymocap import SmplSequence

    seq = SmplSequence(np.zeros(10), np.zeros((3, 69)), np.zeros((3, 3)),
                       np.array([[0.0, 0, 0], [1, 0, 0], [2, 0, 0]]), np.array([10, 11, 12]))
    joints = smpl_sequences_to_joints({4: seq}, _FakeBodyModel(), "smpl24", chunk_size=2)
    assert sorted(joints) == [10, 11, 12] and joints[12][4].shape == (24, 3)
    np.testing.assert_allclose(joints[11][4][3], [1.03, 0, 0], atol=1e-6)
    j19 = smpl_sequences_to_joints({4: seq}, _FakeBodyModel(), "avatarpose19", body25_regressor=np.eye(25))
    np.testing.assert_allclose(j19[12][4][:, 2], 0.01 * np.array(BODY25_TO_AVATARPOSE19), atol=1e-6)


def test_cli_smpl_npz_with_builtin_body_model(tmp_path: Path):
    from avatarpose_ns.eval.cli import entrypoint
    from avatarpose_ns.io.easymocap import SmplSequence, write_smpl_npz

    try:
        from avatarpose_ns.body.body_model import BodyModel

        num_vertices = BodyModel().num_vertices
    except Exception as err:  # built-in model not available in this checkout
        pytest.skip(f"built-in body model unavailable: {err}")
    rng = np.random.default_rng(3)
    people = {
        pid: SmplSequence(np.zeros(10), rng.normal(size=(2, 69)) * 0.1, np.zeros((2, 3)),
                          np.array([[2.0 * pid, 0, 1]] * 2), np.array([5, 6]))
        for pid in (0, 1)
    }
    write_smpl_npz(tmp_path / "gt" / "smpl_gt" / "smpl.npz", people)
    moved = {pid: SmplSequence(s.betas, s.body_pose, s.global_orient, s.transl + [0, 0.01, 0], s.frames)
             for pid, s in people.items()}
    write_smpl_npz(tmp_path / "pred.npz", moved)
    out = tmp_path / "m.json"
    # a folder with exactly one <sub>/smpl.npz resolves to it
    entrypoint(["--pred", str(tmp_path / "pred.npz"), "--gt", str(tmp_path / "gt"), "--json", str(out)])
    res = json.loads(out.read_text())
    assert res["joint_set"] == "smpl24" and res["num_matched"] == 4
    assert res["mpjpe"] == pytest.approx(10.0, abs=1e-3)  # a 1 cm translation moves every joint 1 cm
    # the 19-joint protocol through a regressor: vertex averages also move 1 cm
    reg = np.zeros((25, num_vertices))
    reg[np.arange(25), np.arange(25) * 100] = 1.0
    np.save(tmp_path / "reg.npy", reg)
    entrypoint(["--pred", str(tmp_path / "pred.npz"), "--gt", str(tmp_path / "gt"), "--json", str(out),
                "--body25-regressor", str(tmp_path / "reg.npy")])
    res = json.loads(out.read_text())
    assert res["joint_set"] == "avatarpose19" and res["mpjpe"] == pytest.approx(10.0, abs=1e-3)
    # 25-joint keypoints against SMPL without a regressor: explain what is missing
    kp = _write_kp(tmp_path / "kp", {5: {0: np.zeros((25, 3))}})
    with pytest.raises(SystemExit, match="body25-regressor"):
        entrypoint(["--pred", str(kp), "--gt", str(tmp_path / "gt")])


# ----------------------------------------------------------------------- CLI


def _write_kp(folder: Path, frames: dict[int, dict[int, np.ndarray]]) -> Path:
    folder.mkdir(parents=True)
    for frame, people in frames.items():
        records = [{"id": pid, "keypoints3d": np.c_[j, np.ones(len(j))].tolist()} for pid, j in people.items()]
        (folder / f"{frame:06d}.json").write_text(json.dumps(records))
    return folder


def test_cli_keypoints3d_json(tmp_path: Path, capsys):
    from avatarpose_ns.eval.cli import entrypoint

    gt = _write_kp(tmp_path / "gt" / "keypoints3d", {0: {0: A, 1: B}, 1: {0: A, 1: B}})
    pred = _write_kp(tmp_path / "pred", {0: {0: shift(A, 0.04), 1: B}, 1: {1: shift(A, 0.04), 0: B}})
    out = tmp_path / "res" / "metrics.json"
    entrypoint(["--pred", str(pred), "--gt", str(tmp_path / "gt"), "--json", str(out)])
    res = json.loads(out.read_text())
    assert res["joint_set"] == "smpl24"
    assert res["mpjpe"] == pytest.approx(20.0)  # 40 and 0 mm pairs
    assert res["pck50"] == pytest.approx(100.0) and res["pcp"] == pytest.approx(100.0)
    assert res["recall500"] == 100.0 and res["num_matched"] == 4
    # by error: the two exact ones, then the two 40 mm ones (FP at 25 mm)
    assert res["ap"]["25"] == pytest.approx(50.0) and res["ap"]["50"] == pytest.approx(100.0)
    assert res["per_person"]["0"]["mpjpe"] == pytest.approx(40.0)
    assert res["per_person"]["1"]["mpjpe"] == pytest.approx(0.0)
    printed = capsys.readouterr().out
    assert "MPJPE" in printed and "per joint group" in printed


def test_cli_body25_keypoints_use_avatarpose19(tmp_path: Path):
    from avatarpose_ns.eval.cli import entrypoint

    body25 = np.random.default_rng(2).normal(size=(25, 3))
    pred25 = body25.copy()
    pred25[4, 0] += 0.19  # right wrist (joint 15 of 19) 190 mm off
    pred25[24, 0] += 1.0  # right heel is not among the 19 joints: ignored
    gt = _write_kp(tmp_path / "gt", {3: {0: body25}})
    pred = _write_kp(tmp_path / "pred", {3: {0: pred25}})
    out = tmp_path / "m.json"
    entrypoint(["--pred", str(pred), "--gt", str(gt), "--json", str(out)])
    res = json.loads(out.read_text())
    assert res["joint_set"] == "avatarpose19"
    assert res["mpjpe"] == pytest.approx(190 / 19, abs=1e-3)
    assert res["per_joint_mpjpe"]["right_wrist"] == pytest.approx(190.0, abs=1e-3)


def test_cli_errors_name_the_path(tmp_path: Path):
    from avatarpose_ns.eval.cli import entrypoint

    gt = _write_kp(tmp_path / "gt", {0: {0: A}})
    missing = tmp_path / "nope"
    with pytest.raises(SystemExit) as exc:
        entrypoint(["--pred", str(missing), "--gt", str(gt)])
    assert str(missing) in str(exc.value.code) and "no such file" in str(exc.value.code)

    other = _write_kp(tmp_path / "other", {7: {0: A}})
    with pytest.raises(SystemExit) as exc:
        entrypoint(["--pred", str(other), "--gt", str(gt)])
    assert "no overlapping frames" in str(exc.value.code) and str(other) in str(exc.value.code)

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "000000.json").write_text("{not json")
    with pytest.raises(SystemExit) as exc:
        entrypoint(["--pred", str(broken), "--gt", str(gt)])
    assert "000000.json" in str(exc.value.code)

    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(SystemExit) as exc:
        entrypoint(["--pred", str(tmp_path / "bad.npz"), "--gt", str(gt)])
    assert "bad.npz" in str(exc.value.code)

    j19 = _write_kp(tmp_path / "j19", {0: {0: SKELETON[:19]}})
    with pytest.raises(SystemExit) as exc:
        entrypoint(["--pred", str(j19), "--gt", str(gt)])
    assert "joint" in str(exc.value.code)
