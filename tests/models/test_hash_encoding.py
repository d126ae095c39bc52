"""Hash-grid encoding: layout, indexing, values and gradients against a slow reference."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from avatarpose_ns.models import hash_encoding
from avatarpose_ns.models.hash_encoding import HashGridEncoding, hash_grid_levels

# A small grid with both kinds of level: scales 3, 7, 15, 31, 63 -> resolutions 4, 8, 16, 32, 64;
# with 2^10 rows per level the first two (64 and 512 vertices) are dense, the rest hashed.
SMALL = dict(num_levels=5, log2_hashmap_size=10, base_resolution=4, per_level_scale=2.0)


def reference_encode(x: torch.Tensor, params: torch.Tensor, features: int, num_levels, log2_hashmap_size,
                     base_resolution, per_level_scale) -> torch.Tensor:
    """Straightforward per-level, per-corner Instant-NGP / tinycudann HashGrid (differentiable)."""
    table_size = 2**log2_hashmap_size
    table = params.view(-1, features)
    x = x.clamp(0.0, 1.0)
    outs = []
    offset = 0
    for level in range(num_levels):
        scale = float(np.float32(2.0 ** (level * math.log2(per_level_scale))) * base_resolution - 1.0)
        resolution = math.ceil(scale) + 1
        size = min(8 * math.ceil(resolution**3 / 8), table_size)
        dense = resolution**3 <= size
        pos = x * scale + 0.5
        cell = torch.floor(pos.detach())
        frac = pos - cell
        cell = cell.long()
        acc = 0.0
        for b in itertools.product((0, 1), repeat=3):
            c = cell + torch.tensor(b)
            if dense:
                index = (c[:, 0] + c[:, 1] * resolution + c[:, 2] * resolution**2) % size
            else:
                h = (c[:, 0] * 1) ^ (c[:, 1] * 2654435761) ^ (c[:, 2] * 805459861)
                index = (h % 2**32) % size  # uint32 arithmetic, then modulo the level's rows
            weight = torch.ones_like(frac[:, 0])
            for axis in range(3):
                weight = weight * (frac[:, axis] if b[axis] else 1.0 - frac[:, axis])
            acc = acc + weight[:, None] * table[offset + index]
        outs.append(acc)
        offset += size
    return torch.cat(outs, dim=-1)


def _points(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, generator=g, dtype=torch.float64)


def test_released_layout_matches_tinycudann_sizes():
    levels = hash_grid_levels(16, 19, 16, 1.5)
    assert [lv["resolution"] for lv in levels[:5]] == [16, 24, 36, 54, 81]
    assert [lv["dense"] for lv in levels] == [True] * 4 + [False] * 12
    assert [lv["size"] for lv in levels[:5]] == [16**3, 24**3, 36**3, 54**3, 2**19]
    enc = HashGridEncoding(implementation="torch")
    assert enc.n_output_dims == 32
    assert enc.params.shape == (2 * (16**3 + 24**3 + 36**3 + 54**3 + 12 * 2**19),)
    assert enc.table.shape == (enc.num_rows, 2)
    assert enc.params.abs().max() <= 1e-4


@pytest.mark.parametrize("shape", [(7, 3), (2, 5, 3), (0, 3)])
def test_output_shape_and_dtype(shape):
    enc = HashGridEncoding(features_per_level=2, implementation="torch", **SMALL)
    out = enc(torch.rand(*shape))
    assert out.shape == (*shape[:-1], 10)
    assert out.dtype == torch.float32


@pytest.mark.parametrize("features,chunked", [(2, False), (3, False), (2, True), (3, True)])
def test_matches_reference_values_and_gradients(features, chunked, monkeypatch):
    if chunked:  # the backward walks the levels in chunks of 2 (of 5)
        monkeypatch.setattr(hash_encoding, "_CHUNK_ELEMENTS", 2 * 8 * 301 * features)
    torch.manual_seed(0)
    enc = HashGridEncoding(features_per_level=features, implementation="torch", **SMALL).double()
    with torch.no_grad():
        enc.params.uniform_(-1.0, 1.0)  # large values make any indexing error visible
    x = _points(300)
    x[:5] = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 1.0], [0.5, 0.25, 1.0], [0.999, 1.0, 0.0]],
                         dtype=torch.float64)  # faces and corners of the cube
    x_out = torch.tensor([[-0.2, 0.5, 1.3]], dtype=torch.float64)  # clamped onto the cube
    x = torch.cat([x, x_out]).requires_grad_(True)
    weights = torch.randn(x.shape[0], SMALL["num_levels"] * features, dtype=torch.float64)

    out = enc(x)
    (out * weights).sum().backward()
    grad_table, grad_x = enc.params.grad.clone(), x.grad.clone()

    params_ref = enc.params.detach().clone().requires_grad_(True)
    x_ref = x.detach().clone().requires_grad_(True)
    ref = reference_encode(x_ref, params_ref, features, **SMALL)
    (ref * weights).sum().backward()

    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(grad_table, params_ref.grad, atol=1e-5, rtol=0)
    torch.testing.assert_close(grad_x, x_ref.grad, atol=1e-5, rtol=0)
    assert torch.all(grad_x[-1, [0, 2]] == 0)  # clamped coordinates


def test_float32_forward_matches_float64_reference():
    enc = HashGridEncoding(features_per_level=2, implementation="torch", **SMALL)
    with torch.no_grad():
        enc.params.uniform_(-1.0, 1.0)
    x = _points(500, seed=1)
    out = enc(x.float())
    ref = reference_encode(x, enc.params.detach().double(), 2, **SMALL)
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=0)


def test_position_gradient_matches_finite_differences():
    torch.manual_seed(1)
    enc = HashGridEncoding(features_per_level=2, implementation="torch", **SMALL).double()
    with torch.no_grad():
        enc.params.uniform_(-1.0, 1.0)
    x = (0.05 + 0.9 * _points(6, seed=2)).requires_grad_(True)
    # Piecewise trilinear: exact derivative away from cell faces (random points are, with probability 1).
    assert torch.autograd.gradcheck(lambda p: enc(p), (x,), eps=1e-7, atol=1e-5, rtol=1e-4)


def test_table_gradient_directional_derivative():
    torch.manual_seed(2)
    enc = HashGridEncoding(features_per_level=2, implementation="torch", **SMALL).double()
    x = _points(200, seed=3)
    w = torch.randn(200, 10, dtype=torch.float64)
    (enc(x) * w).sum().backward()
    direction = torch.randn_like(enc.params)
    with torch.no_grad():
        base = enc.params.clone()
        enc.params.copy_(base + 1e-3 * direction)
        plus = (enc(x) * w).sum()
        enc.params.copy_(base - 1e-3 * direction)
        minus = (enc(x) * w).sum()
    fd = (plus - minus) / 2e-3
    torch.testing.assert_close((enc.params.grad * direction).sum(), fd, atol=1e-8, rtol=1e-8)  # linear in the table


def test_dense_levels_have_no_collisions_and_hashed_levels_wrap():
    enc = HashGridEncoding(features_per_level=2, implementation="torch", **SMALL)
    levels = enc.levels
    assert [lv["dense"] for lv in levels] == [True, True, False, False, False]
    for level, lv in enumerate(levels[:4]):  # resolutions 4, 8, 16, 32
        res = lv["resolution"]
        # One point per grid cell, placed inside its cell: all cells' corners together cover every vertex.
        scale = lv["scale"]
        g = torch.stack(torch.meshgrid(*[torch.arange(res - 1)] * 3, indexing="ij"), -1).reshape(-1, 3)
        x = ((g.double() + 0.25 - 0.5) / scale).clamp(0, 1).float()  # pos = x*scale + 0.5 = cell + 0.25
        idx, _ = enc.corner_indices_and_weights(x)
        idx = idx[level].long()  # (8, M)
        corners = g.unsqueeze(0) + torch.tensor(list(itertools.product((0, 1), repeat=3))).view(8, 1, 3)
        assert torch.all((idx >= lv["offset"]) & (idx < lv["offset"] + lv["size"]))
        vertex_key = (corners[..., 0] * res + corners[..., 1]) * res + corners[..., 2]
        pairs = torch.unique(torch.stack([vertex_key.reshape(-1), idx.reshape(-1)], 1), dim=0)
        n_vertices = torch.unique(vertex_key).numel()
        n_rows = torch.unique(idx).numel()
        assert pairs.shape[0] == n_vertices  # one row per vertex (a function of the vertex)
        if lv["dense"]:
            assert n_rows == n_vertices  # injective: no collisions
            expected = lv["offset"] + corners[..., 0] + corners[..., 1] * res + corners[..., 2] * res * res
            assert torch.equal(idx, expected)
        else:
            assert n_vertices > lv["size"]  # more vertices than rows: the hash wraps into the table
            assert n_rows > 0.9 * lv["size"]  # and spreads over (nearly) all of it


def test_module_state_is_portable():
    enc = HashGridEncoding(features_per_level=2, implementation="torch", **SMALL)
    state = enc.state_dict()
    assert list(state) == ["params"]
    other = HashGridEncoding(features_per_level=2, implementation="torch", **SMALL)
    other.load_state_dict(state)
    x = torch.rand(50, 3)
    torch.testing.assert_close(other(x), enc(x))
