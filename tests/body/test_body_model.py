"""BodyModel: the smplx layer that also returns skinning weights and joint transforms."""

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from avatarpose_ns.body.body_model import BodyModel, BodyModelError, canonical_body_pose, resolve_body_model_path
from avatarpose_ns.body.skeleton import JOINT_INDEX as J


def _random_params(batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 10, generator=g) * 0.8, torch.randn(batch, 69, generator=g) * 0.3,
            torch.randn(batch, 3, generator=g), torch.randn(batch, 3, generator=g))


def test_forward_shapes_and_consistency(body_model):
    betas, pose, orient, transl = _random_params(3)
    out = body_model(betas, pose, orient, transl)
    V = body_model.num_vertices
    assert out.vertices.shape == (3, V, 3) and out.joints.shape == (3, 24, 3)
    assert out.joint_transforms.shape == (3, 24, 4, 4) and out.vertices.dtype == torch.float32
    # the joints are smplx's own first 24 joints, and joints_only agrees
    smplx_out = body_model.smpl(betas=betas, body_pose=pose, global_orient=orient, transl=transl)
    torch.testing.assert_close(out.joints, smplx_out.joints[:, :24], atol=1e-5, rtol=0)
    torch.testing.assert_close(body_model.joints_only(betas, pose, orient, transl), out.joints, atol=1e-6, rtol=0)
    # linear blend skinning with the returned transforms reproduces smplx's vertices (posedirs are zero)
    blended = torch.einsum("vj,bjmn->bvmn", body_model.skinning_weights, out.joint_transforms)
    homogeneous = torch.cat([out.shaped_vertices, torch.ones(3, V, 1)], dim=-1)
    skinned = torch.einsum("bvmn,bvn->bvm", blended, homogeneous)[..., :3]
    torch.testing.assert_close(skinned, out.vertices, atol=1e-4, rtol=0)


def test_parameters_broadcast_and_default_to_zero(body_model):
    betas = torch.zeros(1, 10)
    pose = torch.zeros(4, 69)
    out = body_model(betas=betas, body_pose=pose)
    assert out.vertices.shape[0] == 4
    torch.testing.assert_close(out.joints[0], body_model.rest_joints(betas)[0])


def test_canonical_pose_spreads_the_legs(body_model):
    out = body_model(body_pose=canonical_body_pose())
    joints = out.joints[0]
    for side, sign in (("left", 1.0), ("right", -1.0)):
        leg = joints[J[f"{side}_ankle"]] - joints[J[f"{side}_hip"]]
        angle = torch.atan2(sign * leg[0], -leg[1])
        assert abs(float(angle) - np.pi / 6) < 0.05
    torch.testing.assert_close(joints[J["left_ankle"]][0], -joints[J["right_ankle"]][0], atol=2e-3, rtol=0)


def test_missing_and_wrong_files_name_the_path(tmp_path):
    with pytest.raises(BodyModelError, match="nowhere.pkl: body model file not found"):
        BodyModel(tmp_path / "nowhere.pkl")
    with pytest.raises(BodyModelError, match="no SMPL model in this folder"):
        BodyModel(tmp_path)
    bad = tmp_path / "not_smpl.pkl"
    bad.write_bytes(pickle.dumps({"vertices": np.zeros((10, 3))}))
    with pytest.raises(BodyModelError, match=r"not_smpl\.pkl: not an SMPL model \(missing fields"):
        BodyModel(bad)
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"this is not a pickle")
    with pytest.raises(BodyModelError, match="garbage.pkl: not an SMPL model pickle"):
        BodyModel(garbage)


def test_real_format_smpl_pickle_is_a_drop_in(tmp_path, body_model):
    """A pickle laid out like the released SMPL_NEUTRAL.pkl (sparse regressor, 300 betas, chumpy-free)."""
    with open(body_model.model_path, "rb") as handle:
        fields = pickle.load(handle, encoding="latin1")
    real_like = dict(fields)
    real_like["J_regressor"] = sp.csc_matrix(np.asarray(fields["J_regressor"]))
    shapedirs = np.zeros(fields["shapedirs"].shape[:2] + (300,))
    shapedirs[..., :10] = fields["shapedirs"]
    real_like["shapedirs"] = shapedirs
    folder = tmp_path / "models" / "smpl"
    folder.mkdir(parents=True)
    with open(folder / "SMPL_NEUTRAL.pkl", "wb") as handle:
        pickle.dump(real_like, handle, protocol=2)
    assert resolve_body_model_path(tmp_path / "models") == folder / "SMPL_NEUTRAL.pkl"
    other = BodyModel(tmp_path / "models")
    betas, pose, orient, transl = _random_params(2, seed=3)
    torch.testing.assert_close(other(betas, pose, orient, transl).vertices,
                               body_model(betas, pose, orient, transl).vertices, atol=1e-5, rtol=0)


def test_shape_mismatch_is_reported(tmp_path, body_model):
    with open(body_model.model_path, "rb") as handle:
        fields = pickle.load(handle, encoding="latin1")
    fields["weights"] = fields["weights"][:, :20]
    path = tmp_path / "SMPL_NEUTRAL.pkl"
    with open(path, "wb") as handle:
        pickle.dump(fields, handle, protocol=2)
    with pytest.raises(BodyModelError, match=r"SMPL_NEUTRAL\.pkl: field 'weights' has shape"):
        BodyModel(tmp_path)
