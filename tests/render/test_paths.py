"""Camera paths with times: geometry against hand-computed poses, and the camera_path.json round trip
through nerfstudio's own reader (what ns-render camera-path uses)."""

import math

import numpy as np
import pytest
import torch

from avatarpose_ns.render.paths import (camera_path_json, look_at, orbit_poses, sweep_times,
                                        through_cameras_poses, vertical_fov_degrees)
from avatarpose_ns.render.render import strip_indices


def test_look_at_keeps_z_up_and_looks_at_the_target():
    pose = look_at(np.array([3.0, 0.0, 1.0]), np.zeros(3))
    forward, up, right = -pose[:, 2], pose[:, 1], pose[:, 0]
    np.testing.assert_allclose(forward, np.array([-3.0, 0.0, -1.0]) / math.sqrt(10), atol=1e-12)
    np.testing.assert_allclose(right, [0.0, 1.0, 0.0], atol=1e-12)  # camera at +x looking at -x: right is +y
    assert up[2] > 0.9  # the image's up is the scene's up, tilted by the downward look only
    np.testing.assert_allclose(pose[:, :3].T @ pose[:, :3], np.eye(3), atol=1e-12)
    assert np.linalg.det(pose[:, :3]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="up axis"):
        look_at(np.array([0.0, 0.0, 2.0]), np.zeros(3))


def test_orbit_goes_round_once_at_radius_and_height():
    poses = orbit_poses(8, radius=2.0, height=0.5, start_azimuth=math.pi / 2)
    positions = poses[:, :, 3]
    np.testing.assert_allclose(np.linalg.norm(positions[:, :2], axis=1), 2.0)
    np.testing.assert_allclose(positions[:, 2], 0.5)
    np.testing.assert_allclose(positions[0], [0.0, 2.0, 0.5], atol=1e-12)
    np.testing.assert_allclose(positions[2], [-2.0, 0.0, 0.5], atol=1e-12)  # a quarter turn on, counter-clockwise
    for pose in poses:  # every view looks at the centre with the scene's up up
        forward = -pose[:, 2]
        np.testing.assert_allclose(np.cross(forward, -pose[:, 3]), 0.0, atol=1e-12)
        assert pose[2, 1] > 0.9 and abs(pose[2, 0]) < 1e-12


def test_path_through_cameras_visits_each_camera_in_azimuth_order():
    angles = [0.0, 2.0, 4.0, 1.0]  # given out of order
    cameras = np.stack([look_at(np.array([2 * math.cos(a), 2 * math.sin(a), 0.3]), np.zeros(3)) for a in angles])
    poses = through_cameras_poses(cameras, steps_per_camera=4)
    assert len(poses) == 16
    order = [2, 0, 3, 1]  # by azimuth in (-pi, pi]: 4 rad (= 4 - 2 pi), 0, 1, 2 rad
    for k, index in enumerate(order):
        np.testing.assert_allclose(poses[4 * k], cameras[index], atol=1e-9)
    # between cameras the path keeps the distance from the axis (round the people, not through them)
    np.testing.assert_allclose(np.linalg.norm(poses[:, :2, 3], axis=1), 2.0, atol=1e-9)
    halfway = poses[4 * 3 + 2]  # from the camera at 2 rad on round to the one at 4 rad: the midpoint is at 3 rad
    angle = 3.0
    np.testing.assert_allclose(halfway[:2, 3], [2 * math.cos(angle), 2 * math.sin(angle)], atol=1e-9)


def test_camera_path_json_round_trips_through_nerfstudio_with_times():
    from nerfstudio.cameras.camera_paths import get_path_from_json

    poses = orbit_poses(5, radius=2.0, height=0.5)
    times = sweep_times(5)
    np.testing.assert_allclose(times, [0.0, 0.25, 0.5, 0.75, 1.0])
    fov = vertical_fov_degrees(fy=300.0, height=240)
    path = camera_path_json(poses, times, fov, width=320, height=240, fps=10)
    assert path["seconds"] == pytest.approx(0.5)
    cameras = get_path_from_json(path)
    assert cameras.times is not None
    torch.testing.assert_close(cameras.times.reshape(-1).double(), torch.as_tensor(times))
    torch.testing.assert_close(cameras.camera_to_worlds.double(), torch.as_tensor(poses), atol=1e-6, rtol=0)
    torch.testing.assert_close(cameras.fy.reshape(-1).double(), torch.full((5,), 300.0, dtype=torch.float64),
                               atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="5 poses but 4 times"):
        camera_path_json(poses, times[:4], fov, 320, 240, 10)


def test_strip_indices_spread_from_first_to_last():
    assert strip_indices(48, 6) == [0, 9, 19, 28, 38, 47]
    assert strip_indices(3, 6) == [0, 1, 2]
