"""The generated SMPL-format body model: loads through smplx, closed human surface,
sensible joints, skinning weights and shape directions, cached deterministically."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import smplx
import torch
import trimesh
from scipy.spatial import cKDTree

from avatarpose_ns.body import builtin
from avatarpose_ns.body.skeleton import JOINT_INDEX, NUM_JOINTS, SMPL_JOINT_NAMES, SMPL_PARENTS


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("avatarpose_cache")


@pytest.fixture(scope="session")
def model_path(cache_dir: Path) -> Path:
    return builtin.builtin_model_path(cache_dir)


@pytest.fixture(scope="session")
def fields(model_path: Path) -> dict:
    with open(model_path, "rb") as handle:
        return pickle.load(handle, encoding="latin1")


@pytest.fixture(scope="session")
def smpl(model_path: Path) -> smplx.SMPL:
    return smplx.SMPL(model_path=str(model_path), dtype=torch.float64)


@pytest.fixture(scope="session")
def mesh(fields: dict) -> trimesh.Trimesh:
    return trimesh.Trimesh(fields["v_template"], np.asarray(fields["f"], dtype=np.int64), process=False)


def _posed(smpl: smplx.SMPL, betas=None, body_pose=None):
    betas = torch.zeros(1, 10, dtype=torch.float64) if betas is None else betas
    body_pose = torch.zeros(1, 69, dtype=torch.float64) if body_pose is None else body_pose
    with torch.no_grad():
        return smpl(betas=betas, body_pose=body_pose)


def _shaped(fields: dict, k: int, value: float) -> np.ndarray:
    return fields["v_template"] + fields["shapedirs"][:, :, k] * value


def test_fields_have_smpl_names_and_shapes(fields: dict) -> None:
    v = fields["v_template"]
    num_v = len(v)
    assert num_v >= 6890  # smplx's default extra joints index vertices up to 6787
    assert fields["f"].shape[1] == 3 and fields["f"].max() == num_v - 1
    assert fields["shapedirs"].shape == (num_v, 3, 10)
    assert fields["posedirs"].shape == (num_v, 3, 207)
    assert fields["J_regressor"].shape == (NUM_JOINTS, num_v)
    assert fields["weights"].shape == (num_v, NUM_JOINTS)
    kintree = fields["kintree_table"]
    assert kintree.shape == (2, NUM_JOINTS)
    assert kintree[0, 0] == 4294967295
    assert list(kintree[0, 1:]) == list(SMPL_PARENTS[1:])
    assert list(kintree[1]) == list(range(NUM_JOINTS))


def test_loads_through_smplx(model_path: Path, fields: dict, smpl: smplx.SMPL) -> None:
    created = smplx.create(str(model_path), model_type="smpl")
    assert isinstance(created, smplx.SMPL)
    assert created.v_template.shape[0] == len(fields["v_template"])
    out = _posed(smpl)
    expected = fields["J_regressor"] @ fields["v_template"]
    np.testing.assert_allclose(out.joints[0, :24].numpy(), expected, atol=1e-9)
    np.testing.assert_allclose(out.vertices[0].numpy(), fields["v_template"], atol=1e-9)
    assert out.joints.shape[1] == 24 + 21  # face, feet and finger-tip landmarks by vertex id
    assert list(smpl.parents[1:].numpy()) == list(SMPL_PARENTS[1:])


def test_rest_joints_are_the_designed_ones(fields: dict) -> None:
    joints = fields["J_regressor"] @ fields["v_template"]
    np.testing.assert_allclose(joints, builtin.design_joints(), atol=1e-5)
    reg = fields["J_regressor"]
    assert reg.min() >= 0.0
    np.testing.assert_allclose(reg.sum(axis=1), 1.0, atol=1e-12)


def test_surface_is_closed_and_human_sized(mesh: trimesh.Trimesh) -> None:
    assert mesh.is_watertight
    assert mesh.is_winding_consistent
    assert mesh.volume > 0.0  # outward-facing triangles
    assert 0.045 < mesh.volume < 0.09  # an adult's volume in m^3
    assert mesh.body_count == 1
    low, high = mesh.bounds
    assert abs(low[1] - builtin.SOLE_Y) < 0.02
    assert 1.65 < high[1] - low[1] < 1.75
    edges = mesh.edges_unique_length
    assert 0.008 < edges.mean() < 0.016  # ~1-1.5 cm vertex spacing


def test_every_joint_lies_inside_the_body(mesh: trimesh.Trimesh, fields: dict) -> None:
    joints = fields["J_regressor"] @ fields["v_template"]
    inside = mesh.contains(joints)
    assert inside.all(), [SMPL_JOINT_NAMES[j] for j in np.nonzero(~inside)[0]]


def test_legs_and_arms_are_separate_from_each_other_and_the_trunk(mesh: trimesh.Trimesh) -> None:
    # between the knees and between the upper arm and the chest there is air
    gaps = np.array([[0.0, -0.70, 0.0], [0.0, -0.55, 0.0], [0.22, 0.12, -0.02], [-0.22, 0.12, -0.02]])
    assert not mesh.contains(gaps).any()


def test_rest_pose_is_mirror_symmetric(fields: dict) -> None:
    v = fields["v_template"]
    mirrored = v * np.array([-1.0, 1.0, 1.0])
    gap, _ = cKDTree(v).query(mirrored)
    assert gap.max() < 0.002
    joints = fields["J_regressor"] @ v
    for j, name in enumerate(SMPL_JOINT_NAMES):
        if name.startswith("left_"):
            other = JOINT_INDEX["right_" + name[5:]]
            np.testing.assert_allclose(joints[j] * [-1, 1, 1], joints[other], atol=1e-6)
        elif not name.startswith("right_"):
            assert abs(joints[j, 0]) < 1e-6


def test_skinning_weights(fields: dict, mesh: trimesh.Trimesh) -> None:
    w = fields["weights"]
    assert w.min() >= 0.0
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-9)
    dominant = np.bincount(w.argmax(axis=1), minlength=NUM_JOINTS)
    assert (dominant > 20).all(), dominant
    edges = mesh.edges_unique
    assert np.abs(w[edges[:, 0]] - w[edges[:, 1]]).max() < 0.3  # smooth across every edge


@pytest.mark.parametrize(
    "point, joint",
    [
        ((0.09, -0.50, 0.0), "left_hip"),  # thigh
        ((0.10, -0.90, 0.0), "left_knee"),  # shin
        ((0.10, -1.10, -0.02), "left_ankle"),  # instep
        ((0.11, -1.13, 0.18), "left_foot"),  # toes
        ((0.31, 0.22, -0.02), "left_shoulder"),  # upper arm
        ((0.56, 0.22, -0.02), "left_elbow"),  # forearm
        ((0.72, 0.22, -0.02), "left_wrist"),  # palm
        ((0.86, 0.22, -0.02), "left_hand"),  # fingers
        ((-0.56, 0.22, -0.02), "right_elbow"),
        ((0.0, 0.52, 0.0), "head"),
        ((0.0, 0.31, -0.08), "neck"),
        ((0.0, -0.30, -0.12), "pelvis"),
        ((0.0, 0.13, 0.11), "spine3"),
    ],
)
def test_body_parts_follow_their_joint(fields: dict, point, joint: str) -> None:
    v = fields["v_template"]
    nearest = np.linalg.norm(v - np.array(point), axis=1).argmin()
    assert np.linalg.norm(v[nearest] - point) < 0.1  # points on the bone axes
    assert fields["weights"][nearest].argmax() == JOINT_INDEX[joint]


def test_left_elbow_flexion(smpl: smplx.SMPL, fields: dict) -> None:
    rest = _posed(smpl)
    pose = torch.zeros(1, 69, dtype=torch.float64)
    elbow, wrist = JOINT_INDEX["left_elbow"], JOINT_INDEX["left_wrist"]
    pose[0, 3 * (elbow - 1) + 1] = -math.pi / 2  # about y: the forearm (+x) turns to the front (+z)
    bent = _posed(smpl, body_pose=pose)
    j0, j1 = rest.joints[0].numpy(), bent.joints[0].numpy()
    forearm = np.linalg.norm(j0[wrist] - j0[elbow])
    np.testing.assert_allclose(j1[elbow], j0[elbow], atol=1e-9)
    np.testing.assert_allclose(j1[wrist], j1[elbow] + forearm * np.array([0.0, 0.0, 1.0]), atol=1e-3)
    # the hand moves along, the right side stays put
    hand = JOINT_INDEX["left_hand"]
    assert j1[hand, 2] > j0[hand, 2] + 0.3
    right = [j for j, name in enumerate(SMPL_JOINT_NAMES) if not name.startswith("left_")]
    np.testing.assert_allclose(j1[right], j0[right], atol=1e-9)
    v0, v1 = rest.vertices[0].numpy(), bent.vertices[0].numpy()
    np.testing.assert_allclose(v1[v0[:, 0] < 0.0], v0[v0[:, 0] < 0.0], atol=1e-9)
    moved = np.linalg.norm(v1 - v0, axis=1)
    assert moved[v0[:, 0] > 0.65].min() > 0.15  # the whole hand swings forward


def test_shape_directions(smpl: smplx.SMPL, fields: dict, mesh: trimesh.Trimesh) -> None:
    def height(v: np.ndarray) -> float:
        return float(v[:, 1].max() - v[:, 1].min())

    def volume(v: np.ndarray) -> float:
        return trimesh.Trimesh(v, mesh.faces, process=False).volume

    def joints(v: np.ndarray) -> np.ndarray:
        return fields["J_regressor"] @ v

    def leg(v: np.ndarray) -> float:
        j = joints(v)
        return float(np.linalg.norm(j[1] - j[4]) + np.linalg.norm(j[4] - j[7]))

    def arm(v: np.ndarray) -> float:
        j = joints(v)
        return float(np.linalg.norm(j[16] - j[18]) + np.linalg.norm(j[18] - j[20]))

    lo, hi = {}, {}
    for k in range(10):
        lo[k], hi[k] = _shaped(fields, k, -2.0), _shaped(fields, k, 2.0)
        for v in (lo[k], hi[k]):
            assert np.isfinite(v).all()
    assert 0.10 < height(hi[0]) - height(lo[0]) < 0.40  # overall size
    assert volume(hi[1]) > 1.2 * volume(lo[1])  # girth
    assert abs(height(hi[1]) - height(lo[1])) < 0.02
    assert 0.05 < leg(hi[2]) - leg(lo[2]) < 0.25  # leg length
    assert abs(arm(hi[2]) - arm(lo[2])) < 1e-3
    assert 0.04 < arm(hi[3]) - arm(lo[3]) < 0.20  # arm length
    j_lo, j_hi = joints(lo[4]), joints(hi[4])
    assert (j_hi[16, 0] - j_hi[17, 0]) - (j_lo[16, 0] - j_lo[17, 0]) > 0.03  # shoulder width
    j_lo, j_hi = joints(lo[5]), joints(hi[5])
    assert (j_hi[1, 0] - j_hi[2, 0]) - (j_lo[1, 0] - j_lo[2, 0]) > 0.03  # hip width
    assert height(hi[6]) - height(lo[6]) > 0.04  # torso length
    assert volume(hi[9]) > volume(lo[9])  # limb thickness
    # shape moves the joints along through the regressor, also in smplx
    betas = torch.zeros(1, 10, dtype=torch.float64)
    betas[0, 0] = 2.0
    out = _posed(smpl, betas=betas)
    np.testing.assert_allclose(out.joints[0, :24].numpy(), joints(hi[0]), atol=1e-9)
    # every direction keeps the joints inside the shaped body
    for k in range(10):
        for v in (lo[k], hi[k]):
            assert trimesh.Trimesh(v, mesh.faces, process=False).contains(joints(v)).all(), k


def test_landmark_vertices_at_smplx_extra_joint_ids(fields: dict) -> None:
    v = fields["v_template"]
    ids = smplx.vertex_ids.vertex_ids["smplh"]
    nose = v[ids["nose"]]
    assert abs(nose[0]) < 0.005 and nose[2] > 0.12 and 0.35 < nose[1] < 0.5
    assert v[ids["leye"], 0] > 0.01 and v[ids["reye"], 0] < -0.01
    assert v[ids["lear"], 0] > 0.07 and v[ids["rear"], 0] < -0.07
    for side, sign in (("L", 1.0), ("R", -1.0)):
        assert v[ids[side + "BigToe"], 2] > 0.15 and sign * v[ids[side + "BigToe"], 0] > 0.05
        assert v[ids[side + "Heel"], 2] < -0.04 and v[ids[side + "Heel"], 1] < -1.1
    for side, sign in (("l", 1.0), ("r", -1.0)):
        for tip in ("index", "middle", "ring", "pinky"):
            assert sign * v[ids[side + tip], 0] > 0.84
        assert v[ids[side + "thumb"], 2] > 0.03  # the thumb points forward with palms down


def test_build_is_deterministic(fields: dict) -> None:
    again = builtin.build_builtin_model()
    assert set(again) == set(fields)
    for key, value in fields.items():
        if isinstance(value, np.ndarray):
            assert np.array_equal(value, again[key]), key


def test_cache_is_reused(cache_dir: Path, model_path: Path, monkeypatch) -> None:
    assert model_path.name == f"SMPL_NEUTRAL_builtin_v{builtin.BUILTIN_MODEL_VERSION}.pkl"
    assert model_path.parent == cache_dir / "body"
    mtime = model_path.stat().st_mtime_ns

    def no_rebuild() -> dict:
        raise AssertionError("the cached model was rebuilt")

    monkeypatch.setattr(builtin, "build_builtin_model", no_rebuild)
    assert builtin.builtin_model_path(cache_dir) == model_path
    assert model_path.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in model_path.parent.iterdir()) == [model_path.name]  # no temp files left
    # the default cache folder comes from $AVATARPOSE_CACHE
    other = cache_dir / "env_cache"
    (other / "body").mkdir(parents=True)
    (other / "body" / model_path.name).write_bytes(model_path.read_bytes())
    monkeypatch.setenv("AVATARPOSE_CACHE", str(other))
    assert builtin.builtin_model_path() == other / "body" / model_path.name
