import numpy as np
import torch

from avatarpose_ns.body.priors import angle_prior
from avatarpose_ns.fitting.smpl_fit import fit_smpl_to_joints, geman_mcclure
from avatarpose_ns.synth.motions import facing_to_global_orient


def _known_motion(body_model, frames=6):
    rng = np.random.default_rng(7)
    betas = rng.normal(0, 0.6, size=10)
    t = np.linspace(0, 1, frames)[:, None]
    pose = np.zeros((frames, 69))
    pose[:, 3 * 15 + 2] = -1.1 + 0.3 * t[:, 0]  # left shoulder down, lifting
    pose[:, 3 * 16 + 2] = 1.0
    pose[:, 3 * 17 + 1] = -0.9 * t[:, 0]  # left elbow bending
    pose[:, 3 * 3 + 0] = 0.6 * t[:, 0]  # left knee bending
    pose[:, 3 * 0 + 0] = -0.4 * t[:, 0]  # left hip flexing
    orient = facing_to_global_orient(np.full(frames, 0.7))
    transl = np.stack([np.linspace(0, 0.2, frames), np.zeros(frames), np.full(frames, 1.1)], axis=1)
    as_t = lambda a: torch.tensor(a, dtype=torch.float32)
    joints = body_model.joints_only(as_t(betas[None]), as_t(pose), as_t(orient), as_t(transl)).numpy()
    return joints


def test_fit_recovers_known_pose_from_clean_joints(body_model):
    joints = _known_motion(body_model)
    fit = fit_smpl_to_joints(body_model, joints)
    as_t = lambda a: torch.tensor(a, dtype=torch.float32)
    fitted = body_model.joints_only(as_t(fit.betas[None]), as_t(fit.body_pose), as_t(fit.global_orient),
                                    as_t(fit.transl)).numpy()
    error_mm = np.linalg.norm(fitted - joints, axis=-1).mean() * 1000
    assert error_mm < 10.0, error_mm
    assert fit.body_pose.shape == (6, 69) and fit.betas.shape == (10,)


def test_fit_ignores_missing_joints(body_model):
    joints = _known_motion(body_model)
    corrupted = joints.copy()
    corrupted[:, 20] += 0.5  # a wildly wrong left wrist ...
    confidence = np.ones(joints.shape[:2])
    confidence[:, 20] = 0.0  # ... marked as missed
    fit = fit_smpl_to_joints(body_model, corrupted, confidence)
    as_t = lambda a: torch.tensor(a, dtype=torch.float32)
    fitted = body_model.joints_only(as_t(fit.betas[None]), as_t(fit.body_pose), as_t(fit.global_orient),
                                    as_t(fit.transl)).numpy()
    assert np.linalg.norm(fitted[:, 20] - joints[:, 20], axis=-1).mean() < 0.1


def test_angle_prior_penalises_hyperextension_only():
    pose = torch.zeros(3, 69)
    pose[1, 3 * 17 + 1] = -1.0  # left elbow flexed: the natural way
    pose[2, 3 * 17 + 1] = 1.0  # bent backwards
    rest, natural, backwards = angle_prior(pose)
    assert natural < rest < backwards
    assert backwards - rest > 5 * (rest - natural)


def test_geman_mcclure_is_quadratic_near_zero_and_bounded():
    squared = torch.tensor([0.0, 1e-6, 0.25, 100.0, 1e8], dtype=torch.float64)
    value = geman_mcclure(squared, 0.5)
    np.testing.assert_allclose(value.numpy(), squared.numpy() * 0.25 / (squared.numpy() + 0.25), rtol=1e-12)
    assert abs(float(value[1]) - 1e-6) < 1e-10 and float(value[-1]) < 0.25 and float(value[-1]) > 0.2499
