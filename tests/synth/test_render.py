"""The exact ray-cast renderer and the synthetic people's appearance."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from avatarpose_ns.io.cameras import CameraCalib, pixel_rays, project_points
from avatarpose_ns.synth.appearance import PersonStyle, sample_style, vertex_colors
from avatarpose_ns.synth.render import MeshLayer, point_lights_diffuse, render_view


def _camera(size=128, focal=150.0, dist=(0, 0, 0, 0, 0)) -> CameraCalib:
    """At the world origin looking along +z (world = camera frame)."""
    K = np.array([[focal, 0, (size - 1) / 2], [0, focal, (size - 1) / 2], [0, 0, 1.0]])
    return CameraCalib("00", K, np.asarray(dist, float), np.eye(3), np.zeros(3), size, size)


def _layer(mesh: trimesh.Trimesh, color) -> MeshLayer:
    return MeshLayer(mesh.vertices.copy(), mesh.faces.copy(), np.tile(np.asarray(color, float), (len(mesh.vertices), 1)))


def _sphere(center, radius, subdivisions=4) -> trimesh.Trimesh:
    m = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    m.apply_translation(center)
    return m


def test_box_depth_and_mask_are_exact():
    cam = _camera()
    lo, hi = np.array([-0.3, -0.2, 1.8]), np.array([0.25, 0.3, 2.4])
    box = trimesh.creation.box(bounds=np.stack([lo, hi]))
    res = render_view([_layer(box, (0.2, 0.6, 0.9))], cam)
    # analytic slab intersection of every pixel ray
    o, d = pixel_rays(cam)
    with np.errstate(divide="ignore"):
        t1, t2 = (lo - o) / d, (hi - o) / d
    tnear = np.minimum(t1, t2).max(axis=1)
    tfar = np.maximum(t1, t2).min(axis=1)
    hit = tfar > tnear
    z = np.where(hit, tnear * d[:, 2], np.inf).reshape(cam.height, cam.width)
    mask = res.person_index == 0
    # only rays grazing an edge may disagree
    assert np.count_nonzero(mask != hit.reshape(mask.shape)) <= 2
    assert mask.sum() > 1000
    both = mask & hit.reshape(mask.shape)
    np.testing.assert_allclose(res.depth[both], z[both], atol=1e-4)
    assert np.all(np.isinf(res.depth[~mask]))
    assert res.rgb.dtype == np.uint8 and res.rgb.shape == (cam.height, cam.width, 3)
    assert res.person_index.dtype == np.int16 and res.depth.dtype == np.float32


def test_sphere_silhouette_and_depth_match_analytic():
    cam = _camera()
    c, r = np.array([0.1, -0.05, 2.5]), 0.5
    res = render_view([_layer(_sphere(c, r, subdivisions=5), (0.8, 0.8, 0.8))], cam)
    o, d = pixel_rays(cam)
    b = np.einsum("ij,ij->i", d, o - c)
    disc = b * b - (np.sum((o - c) ** 2, axis=1) - r * r)
    hit = (disc > 0).reshape(cam.height, cam.width)
    t = (-b - np.sqrt(np.maximum(disc, 0))).reshape(cam.height, cam.width)
    mask = res.person_index == 0
    iou = (mask & hit).sum() / (mask | hit).sum()
    assert iou > 0.98
    assert abs(int(mask.sum()) - int(hit.sum())) < 0.02 * hit.sum()
    # away from the rim the tessellated sphere is within its sagitta of the analytic one
    dz = d[:, 2].reshape(mask.shape)
    inner = mask & (disc.reshape(mask.shape) > 0.5 * r * r)
    np.testing.assert_allclose(res.depth[inner], (t * dz)[inner], atol=5e-4)


def test_nearer_layer_occludes_and_colours_follow_layers():
    cam = _camera()
    far = _layer(_sphere([0.0, 0.0, 3.0], 0.6), (0.1, 0.8, 0.1))  # layer 0, green
    near = _layer(_sphere([0.15, 0.0, 2.0], 0.2), (0.9, 0.1, 0.1))  # layer 1, red
    both = render_view([far, near], cam)
    far_only = render_view([far], cam)
    near_only = render_view([near], cam)
    overlap = (far_only.person_index == 0) & (near_only.person_index == 0)
    assert overlap.sum() > 200
    assert np.all(both.person_index[overlap] == 1)
    assert np.all(both.person_index[(far_only.person_index == 0) & ~overlap] == 0)
    np.testing.assert_array_equal(both.depth[overlap], near_only.depth[overlap])
    # colours come from the layer that was hit
    red, green = both.rgb[both.person_index == 1].astype(int), both.rgb[both.person_index == 0].astype(int)
    assert np.all(red[:, 0] > red[:, 1] + 20) and np.all(green[:, 1] > green[:, 0] + 20)
    # the headlit point facing the camera shows the albedo itself
    v, u = np.unravel_index(np.argmin(np.where(both.person_index == 1, both.depth, np.inf)), both.depth.shape)
    assert np.abs(both.rgb[v, u].astype(int) - np.array([230, 26, 26])).max() <= 3
    # background
    assert np.all(both.rgb[both.person_index == -1] == 128)
    # layer order does not matter for visibility; indices follow the list
    swapped = render_view([near, far], cam)
    np.testing.assert_array_equal(swapped.person_index[overlap], 0)


def test_distorted_camera_renders_where_project_points_says():
    dist = (-0.3, 0.08, 0.002, -0.001, 0.0)
    cam = _camera(size=160, focal=120.0, dist=dist)
    center = np.array([0.88, 0.72, 1.6])  # far off-axis, where distortion is strong
    res = render_view([_layer(_sphere(center, 0.05), (1, 1, 1))], cam)
    vs, us = np.nonzero(res.person_index == 0)
    assert len(us) > 10
    expected = project_points(center[None], cam)[0]
    assert np.hypot(us.mean() - expected[0], vs.mean() - expected[1]) < 0.5
    plain = _camera(size=160, focal=120.0)
    undistorted = project_points(center[None], plain)[0]
    assert np.hypot(*(undistorted - expected)) > 5.0  # the test is not vacuous


def test_background_noise_and_empty_scene():
    cam = _camera(size=64)
    res = render_view([], cam, background=(0.2, 0.4, 0.6))
    assert np.all(res.person_index == -1) and np.all(np.isinf(res.depth))
    np.testing.assert_array_equal(res.rgb[0, 0], [51, 102, 153])
    noisy = render_view([], cam, noise_std=0.02, rng=np.random.default_rng(0))
    diff = noisy.rgb.astype(float) - 128
    assert 3.0 < diff.std() < 7.0 and abs(diff.mean()) < 0.5


def test_key_light_shades_but_keeps_visible_sides_lit():
    cam = _camera()
    layer = _layer(_sphere([0, 0, 2.5], 0.5), (0.8, 0.8, 0.8))
    res = render_view([layer], cam, light_dir=(1.0, 0.0, 0.0), ambient=0.2)  # light from +x
    row = res.rgb[cam.height // 2, :, 0].astype(int)
    fg = res.person_index[cam.height // 2] == 0
    cols = np.nonzero(fg)[0]
    left, right = row[cols[2]], row[cols[-3]]
    assert right > left + 30
    assert row[fg].min() > 0.2 * 0.8 * 255 - 2


def test_point_lights_diffuse_hand_computed():
    point, normal = np.zeros((1, 3)), np.array([[1.0, 0.0, 0.0]])
    # facing one of two lights: mean cosine 1/2, doubled
    assert point_lights_diffuse(point, normal, np.array([[2.0, 0, 0], [-2.0, 0, 0]]))[0] == pytest.approx(1.0)
    # 45 degrees to one light, a grazing and a back light: mean (cos 45 + 0 + 0) / 3, doubled
    lights = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 3.0], [-1.0, 0.0, 0.0]])
    assert point_lights_diffuse(point, normal, lights)[0] == pytest.approx(2 * np.sqrt(0.5) / 3)


def test_lights_at_every_camera_shade_alike_in_every_view():
    """A surface point looks the same from two cameras when all their lights are on at once, unlike
    with a headlight per view (the colour of a Lambertian surface does not depend on the view)."""
    from avatarpose_ns.io.cameras import look_at_rotation

    centre = np.array([0.0, 0.0, 2.5])
    cam_a = _camera()
    centre_b = centre + 2.5 * np.array([np.sin(np.pi / 3), 0.0, -np.cos(np.pi / 3)])
    R_b = look_at_rotation(centre_b, centre, up=(0.0, -1.0, 0.0))
    cam_b = CameraCalib("01", cam_a.K, cam_a.dist, R_b, -R_b @ centre_b, cam_a.width, cam_a.height)
    layer = _layer(_sphere(centre, 0.5, subdivisions=5), (0.8, 0.8, 0.8))
    point = centre + 0.5 * np.array([0.0, 0.0, -1.0])  # faces camera A, 60 degrees off camera B

    def seen(cam, **light):
        u, v = np.rint(project_points(point[None], cam)[0]).astype(int)
        return render_view([layer], cam, **light).rgb[v, u].astype(float) / 255

    lights = np.stack([cam_a.center, cam_b.center])
    np.testing.assert_allclose(seen(cam_a, light_positions=lights), seen(cam_b, light_positions=lights), atol=0.03)
    assert np.all(seen(cam_a) - seen(cam_b) > 0.15)  # headlight: full light in A, about half in B


# ---------------------------------------------------------------------------- appearance


def _hue(rgb):
    import colorsys

    return colorsys.rgb_to_hsv(*rgb)[0]


def test_styles_are_distinct():
    rng = np.random.default_rng(0)
    styles = [sample_style(rng, i) for i in range(4)]
    for i in range(4):
        for j in range(i + 1, 4):
            dh = abs(_hue(styles[i].shirt) - _hue(styles[j].shirt))
            assert min(dh, 1 - dh) > 0.08
            assert styles[i].trousers != styles[j].trousers
        assert 0.06 <= styles[i].stripe_period_m <= 0.10
        assert max(styles[i].shirt) - min(styles[i].shirt) > 0.4  # saturated
    assert len({s.pattern for s in styles[:3]}) == 3


def test_vertex_colors_regions_and_pattern():
    # one vertex column per joint plus a strip of shirt vertices along the height
    joints = np.zeros((24, 3))
    joints[0] = [0, 0.9, 0]
    joints[15] = [0, 1.55, 0.02]
    style = PersonStyle(
        skin=(0.9, 0.7, 0.6), hair=(0.1, 0.05, 0.0), shirt=(0.9, 0.1, 0.1), shirt_secondary=(1.0, 0.9, 0.9),
        pattern="stripes", trousers=(0.1, 0.1, 0.5), shoes=(0.0, 0.0, 0.0), stripe_period_m=0.08,
    )
    verts, dom = [], []
    for j, pos in [(4, [0.1, 0.5, 0]), (7, [0.1, 0.05, 0]), (20, [0.7, 1.4, 0]), (12, [0, 1.45, 0]),
                   (15, [0, 1.50, 0.11]), (15, [0, 1.66, 0.0]), (15, [0, 1.55, -0.09])]:
        verts.append(pos)
        dom.append(j)
    ys = np.linspace(1.0, 1.3, 31)
    for y in ys:
        verts.append([0.0, y, 0.1])
        dom.append(9)
    verts = np.asarray(verts, float)
    w = np.full((len(verts), 24), 0.01)
    w[np.arange(len(verts)), dom] = 1.0
    col = vertex_colors(verts, w, joints, style)
    assert col.shape == (len(verts), 3) and col.min() >= 0 and col.max() <= 1
    np.testing.assert_allclose(col[0], style.trousers)
    np.testing.assert_allclose(col[1], style.shoes)
    np.testing.assert_allclose(col[2], style.skin)
    np.testing.assert_allclose(col[3], style.skin)
    np.testing.assert_allclose(col[4], style.skin)  # face
    np.testing.assert_allclose(col[5], style.hair)  # crown
    np.testing.assert_allclose(col[6], style.hair)  # back of the head
    shirt = col[7:]
    is_second = np.all(np.isclose(shirt, style.shirt_secondary), axis=1)
    is_base = np.all(np.isclose(shirt, style.shirt), axis=1)
    assert np.all(is_second | is_base) and 0.3 < is_second.mean() < 0.7
    # stripes alternate every half period (4 cm, i.e. every 4 samples here)
    changes = np.count_nonzero(np.diff(is_second.astype(int)))
    assert 6 <= changes <= 8


@pytest.mark.parametrize("pattern", ["checks", "plain"])
def test_other_patterns(pattern):
    style = sample_style(np.random.default_rng(1), 0)
    style.pattern = pattern
    joints = np.zeros((24, 3))
    xs, ys = np.meshgrid(np.linspace(-0.2, 0.2, 21), np.linspace(1.0, 1.4, 21))
    verts = np.stack([xs.ravel(), ys.ravel(), np.zeros(xs.size)], axis=1)
    w = np.zeros((len(verts), 24))
    w[:, 6] = 1
    col = vertex_colors(verts, w, joints, style)
    n_second = np.all(np.isclose(col, style.shirt_secondary), axis=1).sum()
    if pattern == "plain":
        assert n_second == 0
    else:
        assert 0.3 * len(col) < n_second < 0.7 * len(col)


def test_precomputed_rays_give_the_same_image():
    cam = _camera(size=64, dist=(-0.2, 0.05, 0, 0, 0))
    layer = _layer(_sphere([0, 0, 2.0], 0.4), (0.3, 0.5, 0.7))
    a = render_view([layer], cam)
    b = render_view([layer], cam, rays=pixel_rays(cam))
    np.testing.assert_array_equal(a.rgb, b.rgb)
    np.testing.assert_array_equal(a.depth, b.depth)
    with pytest.raises(ValueError):
        render_view([layer], cam, rays=pixel_rays(_camera(size=32)))

