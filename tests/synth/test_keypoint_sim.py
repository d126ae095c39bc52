"""The simulated keypoint estimator errs where real ones do: occlusion, contact, limb swaps."""

import dataclasses

import numpy as np

from avatarpose_ns.body.skeleton import JOINT_INDEX as J
from avatarpose_ns.io.cameras import ring_rig
from avatarpose_ns.synth.keypoints import KeypointNoiseConfig, simulate_keypoints2d, simulate_keypoints3d

CAMERAS = ring_rig(4, radius=3.0, width=200, height=200, look_at=(0.0, 0.0, 1.0))
QUIET = KeypointNoiseConfig(swap_probability=0.0, miss_probability=0.0)


def _two_people(frames: int, gap: float) -> np.ndarray:
    """Person 0 and a copy of it `gap` metres along x. (2, F, 24, 3)"""
    rng = np.random.default_rng(0)
    body = rng.uniform(-0.3, 0.3, size=(24, 3)) + [0.0, 0.0, 1.0]
    body[:, 0] *= 0.3
    joints = np.broadcast_to(body, (2, frames, 24, 3)).copy()
    joints[1, ..., 0] += gap
    return joints


def _error(keypoints, joints):
    return np.linalg.norm(keypoints[..., :3] - joints, axis=-1)


def test_occluded_joints_err_more():
    joints = _two_people(400, gap=3.0)
    hidden = np.zeros((4, 2, 400, 24), dtype=bool)
    hidden[:, 0] = True  # person 0 hidden in every view
    keypoints = simulate_keypoints3d(joints, CAMERAS, hidden, np.random.default_rng(1), QUIET)
    error = _error(keypoints, joints)
    assert error[0].mean() > 1.5 * error[1].mean()
    assert keypoints[0, ..., 3].mean() < keypoints[1, ..., 3].mean()  # and are less confident


def test_joints_in_contact_err_more_and_drift_towards_the_other_person():
    apart = _error(simulate_keypoints3d(_two_people(400, 3.0), CAMERAS, np.zeros((4, 2, 400, 24), bool),
                                        np.random.default_rng(2), QUIET), _two_people(400, 3.0))
    close_joints = _two_people(400, 0.05)
    close = simulate_keypoints3d(close_joints, CAMERAS, np.zeros((4, 2, 400, 24), bool), np.random.default_rng(2), QUIET)
    assert _error(close, close_joints).mean() > 1.5 * apart.mean()
    drift = (close[0, ..., 0] - close_joints[0, ..., 0]).mean()
    assert drift > 0.003  # person 1 stands at +x: person 0's joints are pulled that way


def test_limb_swaps_exchange_left_and_right():
    joints = _two_people(10, 3.0)
    config = dataclasses.replace(QUIET, scale=1e-6, confusion=0.0, swap_probability=1.0, swap_frames=(1, 1))
    keypoints = simulate_keypoints3d(joints, CAMERAS, np.zeros((4, 2, 10, 24), bool), np.random.default_rng(3), config)
    swapped = np.abs(keypoints[0, :, J["left_elbow"], :3] - joints[0, :, J["right_elbow"]]).max(-1) < 1e-4
    assert swapped.any() and not swapped.all()  # a swap lasts one frame, then one frame of rest
    np.testing.assert_allclose(keypoints[0, :, J["pelvis"], :3], joints[0, :, J["pelvis"]], atol=1e-4)


def test_hidden_joints_can_be_missed_and_2d_detections_follow_visibility():
    joints = _two_people(50, 3.0)
    hidden = np.zeros((4, 2, 50, 24), dtype=bool)
    hidden[:, 0, :, J["left_wrist"]] = True
    config = dataclasses.replace(QUIET, miss_probability=1.0, miss_probability_2d=1.0)
    keypoints = simulate_keypoints3d(joints, CAMERAS, hidden, np.random.default_rng(4), config)
    assert np.all(keypoints[0, :, J["left_wrist"], 3] == 0.0)
    assert np.all(keypoints[0, :, J["pelvis"], 3] > 0.0)
    detections = simulate_keypoints2d(joints, CAMERAS[2], hidden[2], np.random.default_rng(5), config)
    assert np.all(detections[0, :, J["left_wrist"], 2] == 0.0)
    visible = detections[1, :, J["pelvis"]]
    assert np.all(visible[:, 2] > 0.5)
