"""Interpenetration depths against closed-form cases (spheres)."""

import numpy as np
import pytest
import trimesh

from avatarpose_ns.eval.interpenetration import interpenetration, penetration_depths


def test_depths_of_overlapping_spheres_match_the_analytic_distance():
    a = trimesh.creation.icosphere(subdivisions=4, radius=1.0)
    b = trimesh.creation.icosphere(subdivisions=4, radius=1.0)
    b.apply_translation([1.5, 0.0, 0.0])
    depths = penetration_depths(np.asarray(a.vertices), b)
    distance_to_centre = np.linalg.norm(a.vertices - [1.5, 0.0, 0.0], axis=1)
    inside = distance_to_centre < 0.999  # clear of the faceted surface
    outside = distance_to_centre > 1.001
    assert inside.sum() > 20
    assert np.all(depths[outside] == 0)
    # depth = radius - distance to the centre, up to the icosphere's faceting (< 2 mm here)
    np.testing.assert_allclose(depths[inside], 1.0 - distance_to_centre[inside], atol=2e-3)


def test_interpenetration_summary_over_people_and_frames():
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    v = np.asarray(sphere.vertices)
    apart = np.stack([v, v + [3.0, 0, 0]])  # (K=2, V, 3)
    overlapping = np.stack([v, v + [0.8, 0, 0]])
    vertices = np.stack([apart, overlapping], axis=1)  # (K, F=2, V, 3)
    result = interpenetration(vertices, np.asarray(sphere.faces))
    # frame 0: nothing inside; frame 1: the caps within 0.5 of the other centre, up to 0.2 m deep
    assert 0 < result["inside_share"] < 0.25
    assert result["max_depth_m"] == pytest.approx(0.2, abs=0.01)
    assert 0 < result["mean_vertex_depth_m"] < result["mean_depth_m"] < result["max_depth_m"]
    separated = interpenetration(np.stack([apart, apart], axis=1), np.asarray(sphere.faces))
    assert separated == {"inside_share": 0.0, "mean_depth_m": 0.0, "mean_vertex_depth_m": 0.0, "max_depth_m": 0.0}
    with pytest.raises(ValueError, match="K, F, V, 3"):
        interpenetration(v, np.asarray(sphere.faces))
