"""SMPL fitted to multi-view 2D keypoints: torch projection, recovery from a perturbed start, bad input."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from avatarpose_ns.fitting.smpl_fit_2d import (
    KeypointFit2DConfig, TorchCameras, fit_smpl_to_keypoints2d, project_points_torch,
)
from avatarpose_ns.io.cameras import project_points, ring_rig
from avatarpose_ns.io.easymocap import FormatError, SmplSequence, read_annots_folder, write_annots
from avatarpose_ns.synth.motions import facing_to_global_orient


def _rig(num_cameras=4):
    cameras = ring_rig(num_cameras, radius=3.0, width=256, height=256, fov_deg=55.0, dist=(-0.05, 0.01),
                       look_at=(0.0, 0.0, 0.9), rng=np.random.default_rng(0))
    # tangential distortion and k3 too, different per camera
    coefficients = ((-0.2, 0.05, 0.002, -0.001, 0.01), (0.1, -0.02, -0.003, 0.002, 0.0),
                    (-0.05, 0.01, 0.0, 0.0, -0.005), (0.0, 0.0, 0.001, 0.001, 0.0))
    return [dataclasses.replace(c, dist=np.array(coefficients[i % 4])) for i, c in enumerate(cameras)]


def _joints(body_model, seq):
    as_t = lambda a: torch.tensor(a, dtype=body_model.dtype)  # noqa: E731
    with torch.no_grad():
        return body_model.joints_only(as_t(seq.betas[None]), as_t(seq.body_pose), as_t(seq.global_orient),
                                      as_t(seq.transl)).double().numpy()


def _ground_truth(frames=3):
    t = np.linspace(0, 1, frames)
    pose = np.zeros((frames, 69))
    pose[:, 3 * 15 + 2] = -1.1 + 0.3 * t  # left shoulder down, lifting
    pose[:, 3 * 16 + 2] = 1.0
    pose[:, 3 * 17 + 1] = -0.9 * t  # left elbow bending
    pose[:, 3 * 3 + 0] = 0.6 * t  # left knee bending
    pose[:, 3 * 0 + 0] = -0.4 * t  # left hip flexing
    orient = facing_to_global_orient(np.full(frames, 0.7))
    transl = np.stack([np.linspace(0, 0.1, frames), np.zeros(frames), np.full(frames, 1.1)], axis=1)
    betas = np.random.default_rng(7).normal(0, 0.5, size=10)
    return SmplSequence(betas, pose, orient, transl, np.arange(frames))


def test_torch_projection_matches_opencv_with_distortion():
    cameras = _rig()
    points = np.random.default_rng(1).normal(size=(200, 3)) * [0.6, 0.6, 0.5] + [0.0, 0.0, 0.9]
    uv, depth = project_points_torch(torch.tensor(points), TorchCameras.from_calibs(cameras))
    assert uv.shape == (4, 200, 2) and depth.shape == (4, 200, 1)
    for c, cam in enumerate(cameras):
        expected = project_points(points, cam)  # cv2.projectPoints
        assert np.abs(uv[c].numpy() - expected).max() < 1e-4
        assert np.allclose(depth[c, :, 0].numpy(), cam.world_to_camera(points)[:, 2])


def test_fit_to_clean_keypoints_recovers_perturbed_pose(body_model):
    cameras = _rig()
    truth = _ground_truth()
    joints = _joints(body_model, truth)
    keypoints = np.stack([np.concatenate([project_points(joints.reshape(-1, 3), cam).reshape(3, 24, 2),
                                          np.ones((3, 24, 1))], axis=-1) for cam in cameras])

    rng = np.random.default_rng(3)
    init = SmplSequence(
        betas=truth.betas + rng.normal(0, 0.3, 10),
        body_pose=truth.body_pose + rng.normal(0, 0.12, truth.body_pose.shape),
        global_orient=truth.global_orient + rng.normal(0, 0.08, (3, 3)),
        transl=truth.transl + rng.normal(0, 0.04, (3, 3)),
        frames=truth.frames,
    )
    init_error = np.linalg.norm(_joints(body_model, init) - joints, axis=-1).mean()
    fit = fit_smpl_to_keypoints2d(body_model, cameras, keypoints, init, KeypointFit2DConfig(iterations=100))
    fit_error = np.linalg.norm(_joints(body_model, fit) - joints, axis=-1).mean()
    assert init_error > 0.04, init_error
    assert fit_error < 0.5 * init_error, (fit_error, init_error)
    assert fit.body_pose.shape == (3, 69) and fit.betas.shape == (10,)
    assert np.array_equal(fit.frames, truth.frames)


def test_fit_rejects_bad_input(body_model):
    cameras = _rig()
    truth = _ground_truth(frames=2)
    keypoints = np.zeros((4, 2, 24, 3))
    keypoints[..., 2] = 1.0
    with pytest.raises(ValueError, match="3 cameras given but keypoints2d holds 4 views"):
        fit_smpl_to_keypoints2d(body_model, cameras[:3], keypoints, truth)
    nan = keypoints.copy()
    nan[1, 0, 5, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        fit_smpl_to_keypoints2d(body_model, cameras, nan, truth)
    with pytest.raises(ValueError, match="frames"):
        fit_smpl_to_keypoints2d(body_model, cameras, np.zeros((4, 3, 24, 3)), truth)
    with pytest.raises(ValueError, match="shape"):
        fit_smpl_to_keypoints2d(body_model, cameras, np.zeros((4, 2, 25, 3)), truth)
    negative = keypoints.copy()
    negative[0, 0, 0, 2] = -1.0
    with pytest.raises(ValueError, match="confidences"):
        fit_smpl_to_keypoints2d(body_model, cameras, negative, truth)


def test_read_annots_folder(tmp_path):
    first = np.random.default_rng(0).uniform(0, 100, (24, 3))
    write_annots(tmp_path / "a" / "000000.json", [(0, first), (1, first + 1)], 128, 128)
    write_annots(tmp_path / "a" / "000001.json", [(1, first + 2)], 128, 128)
    write_annots(tmp_path / "b" / "000000.json", [], 128, 128)
    write_annots(tmp_path / "b" / "000001.json", [(0, first + 3)], 128, 128)
    people = read_annots_folder(tmp_path, ["a", "b"], [0, 1])
    assert sorted(people) == [0, 1] and people[0].shape == (2, 2, 24, 3)
    assert np.allclose(people[0][0, 0], first, atol=1e-3)
    assert np.allclose(people[0][1, 1], first + 3, atol=1e-3)
    assert not people[0][0, 1].any() and not people[1][1, 0].any()  # not detected: confidence 0
    with pytest.raises(FileNotFoundError, match="000002.json"):
        read_annots_folder(tmp_path, ["a", "b"], [0, 2])
    (tmp_path / "b" / "000001.json").write_text(json.dumps({"annots": [{"personID": 0, "keypoints": [[1, 2, 1]]}]}))
    with pytest.raises(FormatError, match="shape"):
        read_annots_folder(tmp_path, ["a", "b"], [0, 1])
