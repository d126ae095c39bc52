"""Triangulation, cross-view association, tracking and the capture volume on synthetic detections.

The detections are projections of known 3D keypoints with 0.5 px Gaussian noise, and in each test
one view is wrong. Tolerances: the cameras have f = 615 px at about 3.5 m, so 1 px is 5.7 mm at the
people; 0.5 px of noise triangulated from 3 or 4 views gives errors of about 2 mm (rms), so the max
over all keypoints and frames stays well under 15 mm unless a wrong view is let in (it moves a point
by 5 to 30 cm).
"""

from __future__ import annotations

import numpy as np

from avatarpose_ns.io.cameras import project_points, ring_rig
from avatarpose_ns.prepare.association import associate_views, track
from avatarpose_ns.prepare.reconstruct import ReconstructConfig, drop_far_keypoints, reconstruct_sequence
from avatarpose_ns.prepare.skeletons import COCO, to_smpl
from avatarpose_ns.prepare.triangulation import _dlt, triangulate
from avatarpose_ns.prepare.volume import in_capture, views_seeing
from avatarpose_ns.io.cameras import undistort_pixels

RNG = np.random.default_rng(7)
CAMS = ring_rig(4, radius=3.5, width=640, height=480, dist=(-0.05, 0.01), look_at=(0.0, 0.0, 0.9),
                rng=np.random.default_rng(1))
TEMPLATE = np.c_[RNG.uniform(-0.25, 0.25, 17), RNG.uniform(-0.15, 0.15, 17), RNG.uniform(0.05, 1.7, 17)]


def _detections(points: np.ndarray, noise_px: float = 0.5) -> np.ndarray:
    """(C, K, 3) noisy projections of (K, 3) points with confidence 0.9."""
    uv = np.stack([project_points(points, cam) for cam in CAMS])
    return np.concatenate([uv + RNG.normal(0, noise_px, uv.shape), np.full((*uv.shape[:2], 1), 0.9)], axis=-1)


def test_triangulation_ignores_one_wrong_view_per_keypoint():
    cams = ring_rig(5, radius=3.5, width=640, height=480, dist=(-0.05, 0.01), rng=np.random.default_rng(2))
    points = TEMPLATE + np.array([0.2, -0.1, 0.0])
    uv = np.stack([project_points(points, cam) for cam in cams])
    dets = np.concatenate([uv + RNG.normal(0, 0.5, uv.shape), np.full((5, 17, 1), 0.9)], axis=-1)
    wrong = RNG.integers(0, 5, 17)
    dets[wrong, np.arange(17), :2] += RNG.uniform(40, 120, (17, 2)) * RNG.choice([-1, 1], (17, 2))
    tri = triangulate(dets, cams, threshold_px=6.4)
    error = np.linalg.norm(tri.points - points, axis=-1)
    assert error.max() < 0.015, error.max()
    assert not tri.inliers[wrong, np.arange(17)].any()
    assert tri.inliers.sum() == 4 * 17
    # the plain weighted DLT over all views is dragged by the wrong one: what the robust step is for
    xy = np.stack([undistort_pixels(dets[c, :, :2], cam) for c, cam in enumerate(cams)]).transpose(1, 0, 2)
    Rt = np.stack([np.c_[c.R, c.T] for c in cams])[None].repeat(17, 0)
    plain = np.linalg.norm(_dlt(xy, Rt, np.full((17, 5), 0.9)) - points, axis=-1)
    assert plain.mean() > 5 * error.mean()


def _bystander_position() -> np.ndarray:
    """A place far from the people that exactly two of the four cameras see."""
    for x in np.linspace(-6, 6, 49):
        for y in np.linspace(-6, 6, 49):
            p = np.array([x, y, 0.9])
            if np.hypot(x, y) > 2.0 and views_seeing(p, CAMS) == 2 and all(
                    c.world_to_camera(p[None])[0, 2] > 0.5 for c in CAMS if views_seeing(p, [c])):
                return p
    raise AssertionError("no bystander position")


def _scene(num_frames: int = 6):
    """Two people walking side by side, and a bystander seen by two cameras; per frame and camera
    the detections in shuffled order, with person 0's right arm wrong in camera 2."""
    bystander = _bystander_position()
    truth, detections, orders = [], [], []
    for f in range(num_frames):
        people = [TEMPLATE + np.array([-0.5, 0.04 * f, 0.0]), TEMPLATE + np.array([0.5, -0.03 * f, 0.0])]
        truth.append(people)
        per_cam = [_detections(p) for p in people + [TEMPLATE + bystander - [0, 0, 0.9]]]
        per_cam[0][2, [6, 8, 10], :2] += [70.0, -40.0]  # a limb of another person, in one view
        frame_dets, frame_orders = [], []
        for c, cam in enumerate(CAMS):
            present = [p for p in range(3) if p < 2 or views_seeing(bystander, [cam])]
            order = RNG.permutation(present)
            frame_dets.append(np.stack([per_cam[p][c] for p in order]))
            frame_orders.append(order)
        detections.append(frame_dets)
        orders.append(frame_orders)
    return truth, detections, orders


def test_association_groups_each_person_across_views():
    truth, detections, orders = _scene(1)
    groups = associate_views(detections[0], CAMS, threshold_px=0.015 * 800)
    people = [{c: int(orders[0][c][d]) for c, d in g.items()} for g in groups]
    for g in people:
        assert len(set(g.values())) == 1, f"a group mixes people: {g}"
    by_person = {next(iter(g.values())): g for g in people}
    assert len(by_person[0]) == 4 and len(by_person[1]) == 4  # the wrong limb does not split person 0
    assert len(by_person[2]) == 2


def test_sequence_recovers_points_drops_the_bystander_and_keeps_ids():
    truth, detections, _ = _scene(6)
    result = reconstruct_sequence(detections, CAMS, list(range(0, 60, 10)), ReconstructConfig(), num_people=None)
    assert sorted(result.people) == [0, 1]
    assert sum("outside the common field of view" in d for d in result.dropped) == 6
    errors = []
    for pid, frames in result.people.items():
        assert sorted(frames) == list(range(0, 60, 10))
        # the same true person in every frame: ids are stable
        owners = {int(np.argmin([np.nanmean(np.linalg.norm(frames[fr].points - t, axis=-1)) for t in truth[i]]))
                  for i, fr in enumerate(sorted(frames))}
        assert len(owners) == 1
        owner = owners.pop()
        for i, fr in enumerate(sorted(frames)):
            errors.append(np.linalg.norm(frames[fr].points - truth[i][owner], axis=-1))
            assert sorted(frames[fr].views) == [0, 1, 2, 3]
            if owner == 0:  # the wrong limb in camera 2 was left out, not averaged in
                assert (frames[fr].errors[2, [6, 8, 10]] > 50).all()
                assert (frames[fr].errors[:, :6] < 3).all()
    errors = np.concatenate(errors)
    assert np.isfinite(errors).all()
    assert errors.max() < 0.015, errors.max()


def test_tracking_survives_a_missing_frame_and_swapped_order():
    a, b = TEMPLATE, TEMPLATE + [1.0, 0, 0]
    frames = [[a, b], [b + 0.02, a + 0.02], [a + 0.04], [b + 0.06, a + 0.06]]
    assert track(frames, max_distance_m=0.3) == [[0, 1], [1, 0], [0], [1, 0]]


def test_volume_box_and_field_of_view():
    person = TEMPLATE.copy()
    assert in_capture(person, CAMS)
    assert in_capture(person, CAMS, box=(-1, 1, -1, 1, 0, 2))
    assert not in_capture(person + [3.0, 0, 0], CAMS, box=(-1, 1, -1, 1, 0, 2))
    assert not in_capture(person + _bystander_position() - [0, 0, 0.9], CAMS)


def test_coco_to_smpl_means_and_confidence():
    kp = np.zeros((17, 3))
    kp[:, :2] = RNG.uniform(0, 100, (17, 2))
    kp[:, 2] = 0.8
    kp[3, 2] = 0.0  # left ear unseen: no head
    smpl = to_smpl(kp, COCO)
    np.testing.assert_allclose(smpl[0, :2], kp[[11, 12], :2].mean(0))
    assert smpl[0, 2] == 0.8 * 0.5 and smpl[15, 2] == 0.0 and smpl[3, 2] == 0.0
    np.testing.assert_allclose(smpl[18], kp[7])


def test_far_keypoints_are_dropped():
    points = TEMPLATE.copy()
    points[4] += [0.0, 2.5, 0.0]  # a two-view keypoint slid along a ray
    conf, inliers = np.full(17, 0.9), np.ones((4, 17), bool)
    drop_far_keypoints(points, conf, inliers, 1.2)
    assert np.isnan(points[4]).all() and conf[4] == 0 and not inliers[:, 4].any()
    assert np.isfinite(np.delete(points, 4, axis=0)).all()
