"""Inverse / forward SMPL skinning between posed and canonical space."""

import time

import pytest
import torch

from avatarpose_ns.body.body_model import canonical_body_pose
from avatarpose_ns.models.deformer import (
    MAX_DIST,
    SkinningDeformer,
    forward_skinning,
    invert_affine,
    inverse_skinning,
    skin_directions,
    vertex_normals,
)
from avatarpose_ns.models.nearest_vertex import (
    GRID_CELL_SIZE,
    _resolve_method,
    build_vertex_grid,
    nearest_vertex_index,
)


def _bodies(body_model, body_pose, seed=0, requires_grad=False, transl=(0.7, 0.1, 2.5)):
    """Posed and canonical bodies of one person: (params, posed output, canonical output)."""
    g = torch.Generator().manual_seed(seed)
    params = {
        "betas": torch.randn(1, 10, generator=g) * 0.5,
        "body_pose": body_pose,
        "global_orient": torch.randn(1, 3, generator=g) * 0.4,
        "transl": torch.tensor([transl]),
    }
    if requires_grad:
        params = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
    posed = body_model(**params)
    canon = body_model(betas=params["betas"], body_pose=canonical_body_pose(1))
    return params, posed, canon


def _surface_points(body_model, canon, max_offset, seed=0):
    """Canonical vertices moved along their normals by up to max_offset metres."""
    g = torch.Generator().manual_seed(seed)
    verts = canon.vertices[0].detach()
    normals = vertex_normals(verts, body_model.faces)
    offset = (torch.rand(verts.shape[0], 1, generator=g) * 2 - 1) * max_offset
    return verts + normals * offset


def test_invert_affine_matches_linalg_inv():
    g = torch.Generator().manual_seed(0)
    m = torch.eye(4, dtype=torch.float64).repeat(50, 1, 1)
    m[:, :3, :] = torch.randn(50, 3, 4, generator=g, dtype=torch.float64)
    torch.testing.assert_close(invert_affine(m), torch.linalg.inv(m), atol=1e-9, rtol=1e-9)


def test_forward_skinning_of_canonical_vertices_is_smpl_lbs(body_model):
    g = torch.Generator().manual_seed(1)
    _, posed, canon = _bodies(body_model, torch.randn(1, 69, generator=g) * 0.3)
    result = forward_skinning(canon.vertices[0], canon.vertices[0], posed.joint_transforms[0],
                              canon.joint_transforms[0], body_model.skinning_weights)
    assert bool((result.vertex_index == torch.arange(body_model.num_vertices)).all())
    torch.testing.assert_close(result.points, posed.vertices[0], atol=1e-5, rtol=0)


def test_round_trip_canonical_posed_canonical(body_model):
    """Points within 2 cm of the canonical surface, a moderate pose around the canonical one."""
    g = torch.Generator().manual_seed(2)
    _, posed, canon = _bodies(body_model, canonical_body_pose(1) + torch.randn(1, 69, generator=g) * 0.15, seed=2)
    deformer = SkinningDeformer.from_body_model(body_model)
    A_p, A_c = posed.joint_transforms[0], canon.joint_transforms[0]

    # on the vertices themselves the nearest vertex is the same both ways: exact everywhere
    on_surface = canon.vertices[0]
    back = deformer.inverse(deformer.forward_skin(on_surface, canon.vertices[0], A_p, A_c).points,
                            posed.vertices[0], A_p, A_c)
    assert bool(back.valid.all())
    assert float((back.points - on_surface).norm(dim=-1).max()) < 1e-4

    points = _surface_points(body_model, canon, 0.02, seed=2)
    fwd = deformer.forward_skin(points, canon.vertices[0], A_p, A_c)
    back = deformer.inverse(fwd.points, posed.vertices[0], A_p, A_c)
    error = (back.points - points).norm(dim=-1)
    assert bool(back.valid.all())
    # where both directions pick the same vertex the maps are exact inverses
    same = back.vertex_index == fwd.vertex_index
    assert float(same.float().mean()) > 0.99
    assert float(error[same].max()) < 1e-4
    assert float((error < 1e-4).float().mean()) > 0.99
    # elsewhere the nearest vertex changed between the spaces: bounded by the blend difference
    assert float(error.max()) < 0.03


def test_far_points_are_invalid_and_finite(body_model):
    _, posed, canon = _bodies(body_model, torch.zeros(1, 69))
    verts = posed.vertices[0]
    deformer = SkinningDeformer.from_body_model(body_model)
    far = torch.stack([verts.mean(0) + torch.tensor([2.0, 0.0, 0.0]), verts.amax(0) + 0.06, verts.amin(0) - 0.3])
    near = verts[:5] + torch.tensor([0.0, 0.0, 0.01])
    result = deformer.inverse(torch.cat([far, near]), verts, posed.joint_transforms[0], canon.joint_transforms[0])
    assert result.valid.tolist() == [False] * 3 + [True] * 5
    assert bool(torch.isinf(result.distance[:3]).all()) and bool((result.vertex_index[:3] == -1).all())
    assert bool((result.distance[3:] <= 0.0101).all())
    assert bool(torch.isfinite(result.points).all())
    # without a cutoff the search is exact and everything is valid
    exact = inverse_skinning(far, verts, posed.joint_transforms[0], canon.joint_transforms[0],
                             body_model.skinning_weights, max_dist=None)
    assert bool(exact.valid.all()) and float(exact.distance.min()) > 0.05


def test_gradients_reach_pose_orientation_translation_and_shape(body_model):
    g = torch.Generator().manual_seed(3)
    params, posed, canon = _bodies(body_model, torch.randn(1, 69, generator=g) * 0.2, requires_grad=True)
    verts = posed.vertices[0]
    points = verts.detach()[::7] + torch.randn(verts[::7].shape, generator=g) * 0.01
    result = SkinningDeformer.from_body_model(body_model).inverse(points, verts, posed.joint_transforms[0],
                                                                  canon.joint_transforms[0])
    assert float(result.valid.float().mean()) > 0.9
    loss = (result.points[result.valid] ** 2).sum() + result.distance[result.valid].sum()
    loss.backward()
    for name in ("body_pose", "global_orient", "transl", "betas"):
        grad = params[name].grad
        assert grad is not None, name
        assert bool(torch.isfinite(grad).all()), name
        assert float(grad.abs().sum()) > 0, name


def test_gradients_match_finite_differences():
    """The map is differentiable in both transform sets with the neighbour fixed."""
    g = torch.Generator().manual_seed(4)
    num_verts, num_joints = 30, 4
    vertices = torch.randn(num_verts, 3, generator=g, dtype=torch.float64)
    weights = torch.rand(num_verts, num_joints, generator=g, dtype=torch.float64)
    weights = weights / weights.sum(1, keepdim=True)

    def random_transforms():
        t = torch.eye(4, dtype=torch.float64).repeat(num_joints, 1, 1)
        t[:, :3, :3] += 0.2 * torch.randn(num_joints, 3, 3, generator=g, dtype=torch.float64)
        t[:, :3, 3] = torch.randn(num_joints, 3, generator=g, dtype=torch.float64)
        return t.requires_grad_()

    A_p, A_c = random_transforms(), random_transforms()
    points = vertices[:10] + 0.01 * torch.randn(10, 3, generator=g, dtype=torch.float64)
    points.requires_grad_()
    torch.autograd.gradcheck(
        lambda a, b, x: inverse_skinning(x, vertices, a, b, weights, max_dist=None, method="cdist").points,
        (A_p, A_c, points))


def test_rigid_weights_give_the_rigid_inverse(body_model):
    g = torch.Generator().manual_seed(5)
    _, posed, canon = _bodies(body_model, torch.randn(1, 69, generator=g) * 0.3)
    joint = 18  # left elbow
    weights = torch.zeros_like(body_model.skinning_weights)
    weights[:, joint] = 1.0
    deformer = SkinningDeformer(weights, body_model.faces)
    verts = posed.vertices[0].detach()
    points = verts[::11] + torch.randn(verts[::11].shape, generator=g) * 0.01
    A_p, A_c = posed.joint_transforms[0].detach(), canon.joint_transforms[0].detach()
    result = deformer.inverse(points, verts, A_p, A_c)
    rigid = (A_c[joint].double() @ torch.linalg.inv(A_p[joint].double())).float()
    expected = points @ rigid[:3, :3].T + rigid[:3, 3]
    torch.testing.assert_close(result.points, expected, atol=1e-5, rtol=0)


def test_skinned_directions_follow_the_point_map(body_model):
    """A direction carried by `skin_directions` is the direction between two inverse-skinned
    points a short step apart along it (same nearest vertex: the map is the same affine map)."""
    g = torch.Generator().manual_seed(3)
    _, posed, canon = _bodies(body_model, torch.randn(1, 69, generator=g) * 0.3)
    deformer = SkinningDeformer(body_model.skinning_weights, body_model.faces, method="cdist")
    verts = posed.vertices[0].detach().double()
    A_p, A_c = posed.joint_transforms[0].detach().double(), canon.joint_transforms[0].detach().double()
    points = verts[::7] + torch.randn(verts[::7].shape, generator=g, dtype=torch.float64) * 0.01
    dirs = torch.nn.functional.normalize(torch.randn(points.shape, generator=g, dtype=torch.float64), dim=-1)
    start = deformer.inverse(points, verts, A_p, A_c)
    end = deformer.inverse(points + 1e-4 * dirs, verts, A_p, A_c)
    same = (start.vertex_index == end.vertex_index) & start.valid
    assert same.sum() > 1000
    expected = torch.nn.functional.normalize(end.points - start.points, dim=-1)[same]
    carried = skin_directions(dirs, start.vertex_index, A_p, A_c, body_model.skinning_weights.double())[same]
    torch.testing.assert_close(carried, expected, atol=1e-8, rtol=0)
    torch.testing.assert_close(carried.norm(dim=-1), torch.ones(len(carried), dtype=torch.float64))
    # no vertex found: the root joint's rotation
    root = skin_directions(dirs[:2], torch.tensor([-1, -1]), A_p, A_c, body_model.skinning_weights.double())
    rigid = A_c[0] @ torch.linalg.inv(A_p[0])
    torch.testing.assert_close(root, dirs[:2] @ rigid[:3, :3].T)
    multi = deformer.inverse_directions_multi(dirs[None], start.vertex_index[None], A_p[None], A_c[None])
    torch.testing.assert_close(multi[0], skin_directions(dirs, start.vertex_index, A_p, A_c,
                                                         body_model.skinning_weights.double()))


@pytest.mark.parametrize("max_dist", [None, 0.05])
def test_kdtree_and_cdist_agree(body_model, max_dist):
    g = torch.Generator().manual_seed(6)
    _, posed, canon = _bodies(body_model, torch.randn(1, 69, generator=g) * 0.2)
    verts = posed.vertices[0].detach()
    lo, hi = verts.amin(0) - 0.1, verts.amax(0) + 0.1
    points = torch.cat([verts[::5] + torch.randn(verts[::5].shape, generator=g) * 0.02,
                        lo + torch.rand(2000, 3, generator=g) * (hi - lo)])
    idx_tree = nearest_vertex_index(points, verts, max_dist=max_dist, method="kdtree")
    idx_cdist = nearest_vertex_index(points, verts, max_dist=max_dist, method="cdist", chunk_size=1000)
    # identical up to exact ties (and points at the cutoff within float error)
    same = idx_tree == idx_cdist
    assert float(same.float().mean()) > 0.999
    found = (idx_tree >= 0) & (idx_cdist >= 0)
    d_tree = (points - verts[idx_tree.clamp_min(0)]).norm(dim=-1)
    d_cdist = (points - verts[idx_cdist.clamp_min(0)]).norm(dim=-1)
    torch.testing.assert_close(d_tree[found], d_cdist[found], atol=1e-5, rtol=0)
    if max_dist is not None:
        assert 0.1 < float((idx_tree >= 0).float().mean()) < 0.9
    A_p, A_c = posed.joint_transforms[0], canon.joint_transforms[0]
    kw = dict(max_dist=0.05 if max_dist is None else max_dist)
    a = inverse_skinning(points, verts, A_p, A_c, body_model.skinning_weights, method="kdtree", **kw)
    b = inverse_skinning(points, verts, A_p, A_c, body_model.skinning_weights, method="cdist", **kw)
    both = a.valid & b.valid & (a.vertex_index == b.vertex_index)
    assert float((a.valid == b.valid).float().mean()) > 0.999
    torch.testing.assert_close(a.points[both], b.points[both], atol=1e-6, rtol=0)


def _brute_force_float64(points, vertices, chunk=512):
    """Nearest and second-nearest distance (N,) and the nearest index (N,), float64."""
    p = points.double() - vertices.double().mean(0)
    v = vertices.double() - vertices.double().mean(0)
    v_sq = v.square().sum(-1)
    best, second, index = [], [], []
    for start in range(0, p.shape[0], chunk):
        q = p[start:start + chunk]
        d2 = (q.square().sum(-1, keepdim=True) - 2 * q @ v.T + v_sq).clamp_min(0)
        top = d2.topk(2, dim=1, largest=False)
        best.append(top.values[:, 0].sqrt())
        second.append(top.values[:, 1].sqrt())
        index.append(top.indices[:, 0])
    return torch.cat(best), torch.cat(second), torch.cat(index)


def _grid_test_points(verts, normals, grid, generator):
    """Points of every kind the grid must handle, (N, 3) in verts.dtype, and a label (N,) per kind:
    0 near the surface, 1 uniform in a box reaching past the grid, 2 on cell borders (one, two or
    three coordinates), 3 about max_dist out along a vertex normal, 4 on the grid's outer faces and
    corners."""
    dtype, n = verts.dtype, verts.shape[0]
    centre, h = grid.centre[0], grid.cell_size
    near = verts[::3] + torch.randn(verts[::3].shape, generator=generator, dtype=dtype) * 0.02
    lo, hi = grid.origin + centre - 0.1, grid.origin + centre + grid.dims * h + 0.1
    boxed = lo + torch.rand(3000, 3, generator=generator, dtype=dtype) * (hi - lo)
    # snap random near points to the nearest cell border on a random subset of axes
    pick = near[torch.randint(near.shape[0], (3000,), generator=generator)]
    local = pick - centre - grid.origin
    snapped = torch.round(local / h) * h
    axes = torch.rand(3000, 3, generator=generator) < 0.5
    border = torch.where(axes, snapped, local) + grid.origin + centre
    pick = torch.randint(n, (3000,), generator=generator)
    radius = MAX_DIST + (torch.rand(3000, 1, generator=generator, dtype=dtype) * 2 - 1) * 2e-3
    shell = verts[pick] + normals[pick] * radius
    extent = grid.dims.to(dtype) * h
    corners = torch.rand(500, 3, generator=generator, dtype=dtype) * extent
    face = torch.randint(3, (500,), generator=generator)
    side = torch.randint(2, (500,), generator=generator).to(dtype)
    corners[torch.arange(500), face] = side * extent[face]
    corners = torch.cat([corners, torch.zeros(1, 3, dtype=dtype), extent[None]]) + grid.origin + centre
    parts = [near, boxed, border, shell, corners]
    labels = torch.cat([torch.full((len(x),), k) for k, x in enumerate(parts)])
    return torch.cat(parts), labels


@pytest.mark.parametrize("cell_size, dtype", [(0.02, torch.float32), (GRID_CELL_SIZE, torch.float32),
                                             (0.05, torch.float64), (0.12, torch.float32)])
def test_grid_search_matches_float64_brute_force(body_model, cell_size, dtype):
    """Cells smaller and larger than max_dist (0.12: neighbours only), float32 and float64."""
    g = torch.Generator().manual_seed(9)
    _, posed, _ = _bodies(body_model, torch.randn(1, 69, generator=g) * 0.3, seed=9)
    verts = posed.vertices[0].detach().to(dtype)
    grid = build_vertex_grid(verts, MAX_DIST, cell_size)
    points, labels = _grid_test_points(verts, vertex_normals(verts, body_model.faces), grid, g)
    index = nearest_vertex_index(points, verts, max_dist=MAX_DIST, method="grid", cell_size=cell_size,
                                 chunk_size=997)  # many chunks of differing candidate counts
    best, second, reference = _brute_force_float64(points, verts)

    # float32 inputs are rounded by ~1e-7 m when centred, so decisions that close are ties
    tol = 2e-6 if dtype == torch.float32 else 1e-9
    clear = (best - MAX_DIST).abs() > tol
    assert torch.equal((index >= 0)[clear], (best <= MAX_DIST)[clear])
    found = index >= 0
    chosen = (points.double() - verts.double()[index.clamp_min(0)]).norm(dim=-1)
    assert float((chosen - best)[found].abs().max()) <= tol
    unique = found & (second - best > tol)
    assert torch.equal(index[unique], reference[unique])
    assert float(unique.float().mean()) > 0.4

    # every kind of point is there, inside and outside max_dist, and some lie outside the grid
    local = (points - grid.centre - grid.origin) / grid.cell_size
    outside = ((local < 0) | (local >= grid.dims)).any(dim=-1)
    assert int(outside.sum()) > 100 and not bool(found[outside].any())
    for kind in range(5):
        assert int((labels == kind).sum()) > 0
    assert 0.1 < float(found[labels == 3].float().mean()) < 0.9
    assert float(found[labels == 0].float().mean()) > 0.9
    # matching the brute force of the other methods too, with identical validity for identical indices
    cdist = nearest_vertex_index(points, verts, max_dist=MAX_DIST, method="cdist", chunk_size=4096)
    same = cdist == index
    assert float(same.float().mean()) > 0.999


def test_grid_search_edge_cases(body_model):
    _, posed, _ = _bodies(body_model, torch.zeros(1, 69))
    verts = posed.vertices[0].detach()
    empty = nearest_vertex_index(torch.zeros(0, 3), verts, max_dist=MAX_DIST, method="grid")
    assert empty.shape == (0,) and empty.dtype == torch.long
    odd = torch.tensor([[float("nan"), 0.0, 0.0], [float("inf"), 0.0, 0.0], [0.0, 0.0, -float("inf")]])
    far = verts.mean(0) + torch.tensor([[3.0, 0.0, 0.0], [0.0, -5.0, 0.0]])
    assert nearest_vertex_index(torch.cat([odd, far]), verts, MAX_DIST, method="grid").tolist() == [-1] * 5
    on_vertices = nearest_vertex_index(verts, verts, MAX_DIST, method="grid")
    assert torch.equal(on_vertices, torch.arange(verts.shape[0]))
    # a single vertex; the grid then has a few cells only
    one = torch.tensor([[0.2, 1.0, 3.0]])
    queries = one + torch.tensor([[0.0, 0.0, 0.0], [0.049, 0.0, 0.0], [0.0, 0.0, 0.051], [0.028, 0.028, 0.028]])
    assert nearest_vertex_index(queries, one, MAX_DIST, method="grid").tolist() == [0, 0, -1, 0]
    # without a bound the grid is not used: the exact brute force answers
    points = verts[:50] + 0.2
    unbounded = nearest_vertex_index(points, verts, max_dist=None, method="grid")
    assert torch.equal(unbounded, nearest_vertex_index(points, verts, max_dist=None, method="cdist"))
    assert _resolve_method("auto", torch.device("cuda"), MAX_DIST) == "grid"
    assert _resolve_method("auto", torch.device("cuda"), None) == "cdist"
    assert _resolve_method("auto", torch.device("cpu"), MAX_DIST) == "kdtree"


def test_inverse_skinning_grid_matches_cdist(body_model):
    g = torch.Generator().manual_seed(10)
    people = [_bodies(body_model, torch.randn(1, 69, generator=g) * 0.2, seed=s, transl=(0.8 * s, 0.0, 2.0))
              for s in range(2)]
    posed_vertices = torch.cat([p.vertices for _, p, _ in people]).detach()
    A_p = torch.cat([p.joint_transforms for _, p, _ in people]).detach()
    A_c = torch.cat([c.joint_transforms for _, _, c in people]).detach()
    lo = posed_vertices.amin(1, keepdim=True) - 0.1
    hi = posed_vertices.amax(1, keepdim=True) + 0.1
    boxed = lo + torch.rand(2, 3000, 3, generator=g) * (hi - lo)
    near = posed_vertices[:, ::4] + torch.randn(posed_vertices[:, ::4].shape, generator=g) * 0.02
    points = torch.cat([boxed, near], dim=1)
    mask = torch.rand(points.shape[:2], generator=g) < 0.8
    results = {}
    for method in ("grid", "cdist"):
        deformer = SkinningDeformer.from_body_model(body_model, method=method)
        results[method] = deformer.inverse_multi(points, posed_vertices, A_p, A_c, mask=mask)
    grid, cdist = results["grid"], results["cdist"]
    same = grid.vertex_index == cdist.vertex_index
    assert float(same.float().mean()) > 0.999
    assert torch.equal(grid.valid[same], cdist.valid[same])
    torch.testing.assert_close(grid.points[same], cdist.points[same], atol=0, rtol=0)
    torch.testing.assert_close(grid.distance[same], cdist.distance[same], atol=0, rtol=0)
    assert 0.2 < float(grid.valid[mask].float().mean()) < 0.9
    # one person with the functional API and forward skinning's bounded search
    single = inverse_skinning(points[0], posed_vertices[0], A_p[0], A_c[0], body_model.skinning_weights,
                              method="grid", cell_size=0.05)
    reference = inverse_skinning(points[0], posed_vertices[0], A_p[0], A_c[0], body_model.skinning_weights,
                                 method="cdist")
    same = single.vertex_index == reference.vertex_index
    assert float(same.float().mean()) > 0.999
    torch.testing.assert_close(single.points[same], reference.points[same], atol=0, rtol=0)


def test_inverse_multi_matches_per_person_and_respects_mask(body_model):
    g = torch.Generator().manual_seed(7)
    people = [_bodies(body_model, torch.randn(1, 69, generator=g) * 0.2, seed=s, transl=(0.8 * s, 0.0, 2.0))
              for s in range(2)]
    posed_vertices = torch.cat([p.vertices for _, p, _ in people])
    A_p = torch.cat([p.joint_transforms for _, p, _ in people])
    A_c = torch.cat([c.joint_transforms for _, _, c in people])
    points = posed_vertices[:, ::20] + torch.randn(2, posed_vertices[:, ::20].shape[1], 3, generator=g) * 0.03
    mask = torch.rand(points.shape[:2], generator=g) < 0.6
    deformer = SkinningDeformer.from_body_model(body_model)
    full = deformer.inverse_multi(points, posed_vertices, A_p, A_c)
    masked = deformer.inverse_multi(points, posed_vertices, A_p, A_c, mask=mask)
    for person in range(2):
        single = deformer.inverse(points[person], posed_vertices[person], A_p[person], A_c[person])
        torch.testing.assert_close(full.points[person], single.points)
        assert torch.equal(full.valid[person], single.valid)
    torch.testing.assert_close(masked.points[mask], full.points[mask])
    assert torch.equal(masked.valid[mask], full.valid[mask])
    assert not bool(masked.valid[~mask].any())
    assert bool(torch.isinf(masked.distance[~mask]).all()) and bool((masked.vertex_index[~mask] == -1).all())


def test_inverse_timing_65k_points_two_people(body_model):
    """Not a timed test: prints the cost of the deformer at training size (run with -s)."""
    g = torch.Generator().manual_seed(8)
    people = [_bodies(body_model, torch.randn(1, 69, generator=g) * 0.2, seed=s, transl=(0.8 * s, 0.0, 2.0),
                      requires_grad=True) for s in range(2)]
    posed_vertices = torch.cat([p.vertices for _, p, _ in people])
    A_p = torch.cat([p.joint_transforms for _, p, _ in people])
    A_c = torch.cat([c.joint_transforms for _, _, c in people])
    num_points = 65536
    lo = posed_vertices.detach().amin(1, keepdim=True) - 0.1
    hi = posed_vertices.detach().amax(1, keepdim=True) + 0.1
    boxed = lo + torch.rand(2, num_points, 3, generator=g) * (hi - lo)  # ray samples: mostly empty space
    idx = torch.randint(0, posed_vertices.shape[1], (2, num_points), generator=g)
    near = torch.gather(posed_vertices.detach(), 1, idx[..., None].expand(-1, -1, 3))
    near = near + torch.randn(near.shape, generator=g) * 0.03
    deformer = SkinningDeformer.from_body_model(body_model)
    for name, points in (("uniform in padded box", boxed), ("within ~3 cm of the body", near)):
        times = []
        for _ in range(3):
            start = time.perf_counter()
            result = deformer.inverse_multi(points, posed_vertices, A_p, A_c)
            mid = time.perf_counter()
            result.points[result.valid].sum().backward(retain_graph=True)
            times.append((mid - start, time.perf_counter() - mid))
        fwd, bwd = min(t[0] for t in times), min(t[1] for t in times)
        print(f"\ninverse deformer, 2 people x {num_points} points ({name}, V={posed_vertices.shape[1]}, "
              f"search={deformer.method}): forward {fwd * 1e3:.0f} ms, backward {bwd * 1e3:.0f} ms, "
              f"valid {float(result.valid.float().mean()):.2f}")
        assert bool(torch.isfinite(result.points).all())
