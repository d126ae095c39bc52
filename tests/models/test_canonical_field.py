"""Canonical per-person fields: box handling, shapes, gradients, fitting, multi-person evaluation."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch

from avatarpose_ns.models.canonical_field import (
    CanonicalField,
    CanonicalFieldConfig,
    MultiPersonFields,
    spherical_harmonics,
    trunc_exp,
)
from avatarpose_ns.models.occupancy import canonical_bounding_cube


def _small_field(seed: int = 0, centre=(0.1, -0.2, 0.9), half=0.5) -> CanonicalField:
    torch.manual_seed(seed)
    return CanonicalField(dataclasses.replace(CanonicalFieldConfig.small(), implementation="torch"), centre, half)


def test_configs():
    released = CanonicalFieldConfig()
    assert (released.num_levels, released.features_per_level, released.log2_hashmap_size) == (16, 2, 19)
    assert (released.base_resolution, released.per_level_scale) == (16, 1.5)
    assert (released.hidden_dim, released.num_density_layers, released.geo_feat_dim) == (64, 1, 15)
    assert (released.hidden_dim_color, released.num_color_layers) == (64, 2)
    small = CanonicalFieldConfig.small()
    assert (small.num_levels, small.hidden_dim, small.hidden_dim_color) == (8, 32, 32)
    field = CanonicalField(released)
    linears = [m for m in field.density_mlp if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(32, 64), (64, 16)]
    linears = [m for m in field.color_mlp if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(15, 64), (64, 64), (64, 3)]


def test_canonical_bounding_cube_of_an_array():
    v = np.array([[-0.8, 0.0, -0.1], [0.8, 1.7, 0.2], [0.0, -0.1, 0.0]])
    centre, half = canonical_bounding_cube(v)
    torch.testing.assert_close(centre, torch.tensor([0.0, 0.8, 0.05], dtype=torch.float64))
    assert float(half) == pytest.approx(1.2 * 0.9)
    centre, half = canonical_bounding_cube(torch.tensor(v, dtype=torch.float32), scale=1.0)
    assert centre.dtype == torch.float32 and float(half) == pytest.approx(0.9)


def test_shapes_ranges_and_outside_box():
    field = _small_field()
    c = field.bbox_centre
    inside = c + (torch.rand(4, 5, 3) - 0.5) * 0.99  # within +-0.495 of the centre
    outside = c + torch.tensor([[0.6, 0.0, 0.0], [0.0, -0.51, 0.0], [0.0, 0.0, 3.0], [-2.0, 2.0, 0.0]])
    density, rgb = field(inside)
    assert density.shape == (4, 5) and rgb.shape == (4, 5, 3)
    assert torch.all(density > 0) and torch.all((rgb >= 0) & (rgb <= 1))
    pts = torch.cat([inside.reshape(-1, 3), outside])
    density, rgb = field(pts)
    assert torch.all(density[-4:] == 0) and torch.all(density[:-4] > 0)
    assert torch.all(rgb[-4:] == 0)
    d_only = field.density(pts)
    torch.testing.assert_close(d_only, density)
    empty_d, empty_rgb = field(torch.zeros(0, 3))
    assert empty_d.shape == (0,) and empty_rgb.shape == (0, 3)


def test_gradients_reach_points_and_parameters():
    field = _small_field().double()
    pts = (field.bbox_centre + (torch.rand(5, 3, dtype=torch.float64) - 0.5) * 0.8).requires_grad_(True)

    def f(p):
        d, rgb = field(p)
        return torch.cat([d[:, None], rgb], -1)

    assert torch.autograd.gradcheck(f, (pts,), eps=1e-7, atol=1e-5, rtol=1e-3)
    density, rgb = field(pts.float().double())
    (density.sum() + rgb.sum()).backward()
    assert field.encoding.params.grad.abs().sum() > 0
    assert all(p.grad is not None for p in field.density_mlp.parameters())


def test_trunc_exp_gradient_is_clamped():
    x = torch.tensor([0.0, 20.0, -20.0], requires_grad=True)
    trunc_exp(x).sum().backward()
    torch.testing.assert_close(x.grad, torch.exp(torch.tensor([0.0, 15.0, -15.0])))


@pytest.fixture
def one_thread():
    """Tiny ops run faster on one thread, and far faster when the cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_small_field_fits_a_sphere(one_thread):
    torch.manual_seed(0)
    field = _small_field(centre=(0.0, 0.0, 0.0), half=1.0)
    opt = torch.optim.Adam(field.parameters(), lr=1e-2, betas=(0.9, 0.99), eps=1e-15)
    g = torch.Generator().manual_seed(0)
    colour = torch.tensor([0.9, 0.2, 0.1])

    def batch(n=1024):
        p = (torch.rand(n, 3, generator=g) * 2 - 1) * 0.95
        inside = (p.norm(dim=-1) < 0.5).float()
        return p, inside * 20.0, inside

    def loss_fn(p, target, inside):
        density, rgb = field(p)
        loss = (torch.log1p(density) - torch.log1p(target)).square().mean()
        return loss + ((rgb - colour).square().sum(-1) * inside).mean()

    p_eval, t_eval, in_eval = batch(8192)
    with torch.no_grad():
        initial = loss_fn(p_eval, t_eval, in_eval).item()
    for _ in range(200):
        p, t, inside = batch()
        loss = loss_fn(p, t, inside)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        final = loss_fn(p_eval, t_eval, in_eval).item()
        density = field.density(p_eval)
    assert final < 0.1 * initial, (initial, final)
    assert density[in_eval > 0].median() > 5.0 and density[in_eval == 0].median() < 1.0


def test_state_dict_round_trip_with_weights_only_load():
    field = _small_field()
    buf = io.BytesIO()
    torch.save(field.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    other = CanonicalField(field.config)
    other.load_state_dict(state)
    pts = torch.rand(20, 3) - 0.5
    for a, b in zip(field(pts), other(pts)):
        torch.testing.assert_close(a, b)


def test_multi_person_fields():
    torch.manual_seed(0)
    cfg = CanonicalFieldConfig.small()
    cfg.implementation = "torch"
    verts = [torch.randn(50, 3) * 0.3, torch.randn(50, 3) * 0.3 + torch.tensor([1.0, 0.0, 0.0])]
    fields = MultiPersonFields.from_canonical_vertices(verts, cfg)
    assert len(fields) == 2 and fields.num_people == 2
    centre, half = canonical_bounding_cube(verts[1])
    torch.testing.assert_close(fields[1].bbox_centre, centre)
    torch.testing.assert_close(fields[1].bbox_half_size, half)

    pts = torch.stack([v[:40] for v in verts])  # (2, 40, 3)
    density, rgb = fields.forward_all(pts)
    assert density.shape == (2, 40) and rgb.shape == (2, 40, 3)
    for person in range(2):
        d, c = fields.forward_person(person, pts[person])
        torch.testing.assert_close(density[person], d)
        torch.testing.assert_close(rgb[person], c)

    valid = torch.rand(2, 40) > 0.3
    density_v, rgb_v = fields(pts, valid)
    assert torch.all(density_v[~valid] == 0) and torch.all(rgb_v[~valid] == 0)
    torch.testing.assert_close(density_v[valid], density[valid])
    torch.testing.assert_close(fields.density_all(pts, valid), density_v)
    with pytest.raises(ValueError):
        fields.forward_all(torch.zeros(3, 4, 3))


def test_spherical_harmonics_are_orthonormal():
    """Exact quadrature (Gauss-Legendre in cos(theta) x uniform in phi) of Y_i Y_j over the sphere is the identity."""
    nodes, weights = np.polynomial.legendre.leggauss(8)
    phi = np.arange(16) * 2 * np.pi / 16
    cos_t, ph = np.meshgrid(nodes, phi, indexing="ij")
    sin_t = np.sqrt(1 - cos_t**2)
    dirs = torch.from_numpy(np.stack([sin_t * np.cos(ph), sin_t * np.sin(ph), cos_t], -1).reshape(-1, 3))
    w = torch.from_numpy(np.repeat(weights, len(phi)) * 2 * np.pi / len(phi))
    for degree in range(4):
        Y = spherical_harmonics(dirs, degree)
        assert Y.shape == (len(dirs), (degree + 1) ** 2)
        gram = Y.T @ (Y * w[:, None])
        torch.testing.assert_close(gram, torch.eye(Y.shape[1], dtype=torch.float64), atol=1e-12, rtol=0)
    with pytest.raises(ValueError):
        spherical_harmonics(dirs, 4)


def test_view_dependent_colour_uses_directions_and_leaves_density_alone():
    torch.manual_seed(0)
    config = dataclasses.replace(CanonicalFieldConfig.small(), implementation="torch", direction_sh_degree=2)
    field = CanonicalField(config, (0.0, 0.0, 0.0), 0.5)
    assert field.color_mlp[0].in_features == config.geo_feat_dim + 9
    points = torch.rand(64, 3) * 0.6 - 0.3
    points[0] = 2.0  # outside the cube
    dirs = torch.nn.functional.normalize(torch.randn(64, 3), dim=-1)
    density, rgb, _ = field.query(points, directions=dirs)
    density_back, rgb_back, _ = field.query(points, directions=-dirs)
    torch.testing.assert_close(density, density_back)
    assert (rgb[1:] - rgb_back[1:]).abs().max() > 1e-4  # degree-1 terms flip sign
    assert torch.all(rgb[0] == 0) and density[0] == 0
    # no directions: the colour for the constant harmonic alone
    _, rgb_none, _ = field.query(points[1:])
    features = torch.zeros(63, 9)
    features[:, 0] = spherical_harmonics(dirs[:1], 0)[0, 0]
    geo = field.density_mlp(field.encoding(field.normalize(points[1:])[0]))[:, 1:]
    torch.testing.assert_close(rgb_none, torch.sigmoid(field.color_mlp(torch.cat([geo, features], -1))))
    with pytest.raises(ValueError, match="directions"):
        field.query(points, directions=dirs[:10])
    with pytest.raises(ValueError, match="direction_sh_degree"):
        CanonicalField(dataclasses.replace(config, direction_sh_degree=5))
    # multi-person evaluation passes each person's directions through
    fields = MultiPersonFields([((0.0, 0.0, 0.0), 0.5)] * 2, config)
    valid = torch.rand(2, 64) > 0.3
    d_all, rgb_all = fields.forward_all(torch.stack([points, points]), valid, directions=torch.stack([dirs, -dirs]))
    for person, sign in enumerate((1.0, -1.0)):
        _, expected, _ = fields[person].query(points, directions=sign * dirs)
        torch.testing.assert_close(rgb_all[person][valid[person]], expected[valid[person]])
