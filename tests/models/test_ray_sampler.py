"""Ray / box intersection, per-person stratified sampling and the canonical occupancy grid."""

import io
import math

import pytest
import torch

from avatarpose_ns.models.occupancy import OccupancyGrid, canonical_bounding_cube
from avatarpose_ns.models.ray_sampler import (
    PersonRaySampler,
    posed_bounding_boxes,
    ray_aabb,
    stratified_samples,
)

UNIT_MIN, UNIT_MAX = torch.zeros(3), torch.ones(3)


def _rays(*pairs):
    origins = torch.tensor([o for o, _ in pairs], dtype=torch.float32)
    directions = torch.tensor([d for _, d in pairs], dtype=torch.float32)
    return origins, directions


def test_ray_hits_box_from_outside():
    s = 1 / math.sqrt(3)
    origins, directions = _rays(((-2.0, 0.5, 0.5), (1.0, 0.0, 0.0)), ((-1.0, -1.0, -1.0), (s, s, s)),
                                ((0.5, 3.0, 0.25), (0.0, -1.0, 0.0)))
    t_near, t_far, hit = ray_aabb(origins, directions, UNIT_MIN, UNIT_MAX)
    assert hit.tolist() == [True, True, True]
    torch.testing.assert_close(t_near, torch.tensor([2.0, math.sqrt(3), 2.0]))
    torch.testing.assert_close(t_far, torch.tensor([3.0, 2 * math.sqrt(3), 3.0]))


def test_ray_starting_inside_the_box():
    origins, directions = _rays(((0.5, 0.5, 0.5), (0.0, 0.0, 1.0)), ((0.2, 0.5, 0.5), (-0.6, 0.8, 0.0)))
    t_near, t_far, hit = ray_aabb(origins, directions, UNIT_MIN, UNIT_MAX)
    assert hit.all()
    torch.testing.assert_close(t_near, torch.zeros(2))
    torch.testing.assert_close(t_far, torch.tensor([0.5, 0.2 / 0.6]))
    t_near, _, _ = ray_aabb(origins, directions, UNIT_MIN, UNIT_MAX, near_plane=0.1)
    torch.testing.assert_close(t_near, torch.full((2,), 0.1))


def test_rays_missing_the_box():
    origins, directions = _rays(((-2.0, 2.0, 0.5), (1.0, 0.0, 0.0)),  # passes above
                                ((2.0, 0.5, 0.5), (1.0, 0.0, 0.0)),  # box behind the ray
                                ((-1.0, -1.0, 0.5), (0.6, -0.8, 0.0)))  # oblique, away
    t_near, t_far, hit = ray_aabb(origins, directions, UNIT_MIN, UNIT_MAX)
    assert hit.tolist() == [False, False, False]
    assert torch.isfinite(t_near).all() and torch.isfinite(t_far).all()
    # far plane before the box: a miss too
    _, _, hit = ray_aabb(*_rays(((-2.0, 0.5, 0.5), (1.0, 0.0, 0.0))), UNIT_MIN, UNIT_MAX, far_plane=1.5)
    assert not hit.any()


def test_axis_parallel_rays_have_no_nan():
    origins, directions = _rays(((0.5, 0.5, -1.0), (0.0, 0.0, 1.0)),  # hits through the z faces
                                ((0.0, 0.5, -1.0), (0.0, -0.0, 1.0)),  # on the x = 0 face plane, -0.0
                                ((1.5, 0.5, -1.0), (0.0, 0.0, 1.0)),  # parallel, outside the x slab
                                ((0.5, -3.0, 0.5), (0.0, 2.0, 0.0)),  # non-unit direction
                                ((0.5, 0.5, 0.5), (0.0, 0.0, 0.0)))  # degenerate: no direction at all
    t_near, t_far, hit = ray_aabb(origins, directions, UNIT_MIN, UNIT_MAX)
    assert not torch.isnan(t_near).any() and not torch.isnan(t_far).any()
    assert torch.isfinite(t_near).all() and torch.isfinite(t_far).all()
    assert hit.tolist() == [True, True, False, True, False]
    torch.testing.assert_close(t_near[[0, 1, 3]], torch.tensor([1.0, 1.0, 1.5]))
    torch.testing.assert_close(t_far[[0, 1, 3]], torch.tensor([2.0, 2.0, 2.0]))


def test_vectorised_over_people_boxes():
    g = torch.Generator().manual_seed(0)
    origins = torch.randn(200, 3, generator=g) * 2
    directions = torch.nn.functional.normalize(torch.randn(200, 3, generator=g), dim=-1)
    box_min = torch.tensor([[-0.5, -1.0, -0.3], [0.2, -0.8, -0.4], [-1.0, 0.0, 0.0]])
    box_max = box_min + torch.tensor([[0.8, 1.8, 0.6], [0.7, 1.6, 0.5], [0.5, 0.5, 0.5]])
    t_near, t_far, hit = ray_aabb(origins, directions, box_min, box_max)
    assert t_near.shape == (200, 3) and hit.any()
    for person in range(3):
        tn, tf, h = ray_aabb(origins, directions, box_min[person], box_max[person])
        assert torch.equal(h, hit[:, person])
        torch.testing.assert_close(tn, t_near[:, person])
        torch.testing.assert_close(tf, t_far[:, person])
    # the entry/exit points lie on the boxes' surfaces
    entry = origins[:, None] + t_near[..., None] * directions[:, None]
    inside_start = ((origins[:, None] >= box_min) & (origins[:, None] <= box_max)).all(-1)
    on_face = ((entry - box_min).abs().amin(-1) < 1e-5) | ((entry - box_max).abs().amin(-1) < 1e-5)
    assert bool(on_face[hit & ~inside_start].all())


def test_posed_bounding_boxes_margin():
    verts = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]], [[-1.0, -1.0, -1.0], [0.0, 0.5, 0.0]]])
    lo, hi = posed_bounding_boxes(verts, margin=0.1)
    torch.testing.assert_close(lo, torch.tensor([[-0.1, -0.1, -0.1], [-1.1, -1.1, -1.1]]))
    torch.testing.assert_close(hi, torch.tensor([[1.1, 2.1, 3.1], [0.1, 0.6, 0.1]]))


def _two_people_samples(training, generator=None, num_samples=64, min_step=0.005):
    g = torch.Generator().manual_seed(1)
    origins = torch.tensor([0.0, 0.0, -3.0]) + torch.randn(300, 3, generator=g) * 0.05
    targets = torch.rand(300, 3, generator=g) * torch.tensor([2.0, 2.0, 0.5]) - torch.tensor([1.0, 1.0, 0.25])
    directions = torch.nn.functional.normalize(targets - origins, dim=-1)
    box_min = torch.tensor([[-0.8, -0.9, -0.2], [0.1, -0.9, -0.25]])
    box_max = torch.tensor([[0.0, 0.9, 0.2], [0.9, 0.9, -0.2]])  # person 1's box is 5 cm deep
    sampler = PersonRaySampler(num_samples=num_samples, min_step=min_step)
    return origins, directions, sampler(origins, directions, box_min, box_max, training=training,
                                       generator=generator)


def test_samples_sorted_inside_interval_and_spaced():
    origins, directions, samples = _two_people_samples(training=True, generator=torch.Generator().manual_seed(2))
    assert samples.t.shape == (300, 2, 64) and samples.positions.shape == (300, 2, 64, 3)
    assert samples.hit[:, 0].any() and samples.hit[:, 1].any()
    valid = samples.valid
    assert torch.equal(valid.any(-1), samples.hit)
    assert bool((samples.t[..., 1:] >= samples.t[..., :-1]).all())  # sorted per (ray, person), padding included
    t_near, t_far = samples.t_near[..., None], samples.t_far[..., None]
    assert bool(((samples.t >= t_near - 1e-6) & (samples.t <= t_far + 1e-6))[valid].all())
    # bins of equal width >= min_step tile the interval; padding has zero width
    length = (samples.t_far - samples.t_near)[samples.hit]
    torch.testing.assert_close(samples.deltas.sum(-1)[samples.hit], length)
    long_enough = (samples.t_far - samples.t_near) >= 0.005
    assert bool((samples.deltas[valid & long_enough[..., None]] >= 0.005 - 1e-6).all())
    assert bool((samples.deltas[~valid] == 0).all())
    expected = torch.floor((samples.t_far - samples.t_near) / 0.005).clamp(1, 64).long() * samples.hit
    assert torch.equal(samples.num_valid, expected)
    assert bool((samples.num_valid[:, 1][samples.hit[:, 1]] < 64).any())  # the shallow box needs fewer slots
    torch.testing.assert_close(samples.positions, origins[:, None, None] + samples.t[..., None]
                               * directions[:, None, None])


def test_eval_is_deterministic_midpoints_and_training_jitters():
    _, _, a = _two_people_samples(training=False)
    _, _, b = _two_people_samples(training=False)
    assert torch.equal(a.t, b.t)
    step = (a.t_far - a.t_near) / a.num_valid.clamp_min(1)
    torch.testing.assert_close(a.t[..., 0][a.hit], (a.t_near + 0.5 * step)[a.hit])
    _, _, c = _two_people_samples(training=True, generator=torch.Generator().manual_seed(3))
    _, _, d = _two_people_samples(training=True, generator=torch.Generator().manual_seed(4))
    assert not torch.equal(c.t[c.valid], d.t[d.valid])
    assert torch.equal(c.valid, a.valid)


def test_per_person_layout_round_trip_and_narrowing():
    _, _, samples = _two_people_samples(training=False, num_samples=16)
    positions, valid = samples.per_person()
    assert positions.shape == (2, 300 * 16, 3) and valid.shape == (2, 300 * 16)
    assert torch.equal(samples.from_per_person(positions), samples.positions)
    assert torch.equal(samples.from_per_person(valid), samples.valid)
    keep = samples.from_per_person(positions[..., 0] < 0)
    narrowed = samples.with_valid(keep)
    assert torch.equal(narrowed.valid, samples.valid & keep)
    assert bool((narrowed.deltas[~narrowed.valid] == 0).all())


def test_misses_are_padding_only():
    t_near = torch.tensor([[0.0, 1.0]])
    t_far = torch.tensor([[0.0, 1.0]])
    hit = torch.tensor([[False, True]])
    s = stratified_samples(torch.zeros(1, 3), torch.tensor([[0.0, 0.0, 1.0]]), t_near, t_far, hit, num_samples=8)
    assert not s.valid[0, 0].any() and s.num_valid[0, 0] == 0 and bool((s.deltas == 0).all())
    assert not torch.isnan(s.t).any()


# ---------------------------------------------------------------------------- occupancy grid
def _sphere_density(centre, radius):
    def density(points):  # (L, M, 3) -> (L, M)
        return ((points - centre).norm(dim=-1) < radius).float() * 10.0
    return density


def test_occupancy_starts_full_and_keeps_only_cells_near_the_sphere():
    centre, radius, res = torch.tensor([0.1, -0.2, 0.05]), 0.3, 32
    grid = OccupancyGrid(centres=torch.stack([centre, centre]), half_sizes=torch.tensor([0.6, 0.8]), resolution=res)
    assert grid.occupied.all()  # nothing pruned before the field has learnt
    fn = _sphere_density(centre, radius)
    g = torch.Generator().manual_seed(0)
    assert grid.update(fn, step=0, generator=g)
    assert grid.occupied.all()  # decayed ones are still above the threshold
    assert not grid.update(fn, step=7, generator=g)  # not an update step
    for step in range(20, 20 * 26, 20):
        grid.update(fn, step=step, generator=g)
    assert int(grid.num_updates) == 26
    cell_centres = grid.cell_centres()  # (L, R^3, 3)
    dist = (cell_centres - centre).norm(dim=-1)
    half_diag = (grid.cell_size * math.sqrt(3) / 2)[:, None]
    occupied = grid.occupied.reshape(2, -1)
    assert bool(occupied[dist < radius - half_diag].all())
    assert not bool(occupied[dist > radius + half_diag].any())
    # query at cell centres returns the stored flags; outside the cube is empty
    assert torch.equal(grid.query(cell_centres), occupied)
    outside = torch.tensor([[[5.0, 0.0, 0.0]], [[0.1, -0.2, 0.9]]])
    assert not grid.query(outside).any()
    # pruning narrows a valid mask to occupied cells
    points = torch.stack([centre.expand(4, 3), centre + torch.tensor([[0.5, 0.0, 0.0]]).expand(4, 3)])
    valid = torch.tensor([[True, True, False, True]] * 2)
    pruned = grid.prune(points, valid)
    assert pruned.tolist() == [[True, True, False, True], [False] * 4]


def test_occupancy_state_dict_round_trip():
    centres, half = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]), torch.tensor([0.5, 0.7])
    grid = OccupancyGrid(centres, half, resolution=16)
    for step in range(0, 30 * 20, 20):
        grid.update(_sphere_density(torch.zeros(3), 0.2), step=step, generator=torch.Generator().manual_seed(step))
    buffer = io.BytesIO()
    torch.save(grid.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)  # checkpoints load under torch >= 2.6 defaults
    other = OccupancyGrid(torch.zeros(2, 3), 1.0, resolution=16)
    other.load_state_dict(state)
    for name in ("centre", "half_size", "values", "occupied", "num_updates"):
        assert torch.equal(getattr(other, name), getattr(grid, name)), name
    points = torch.rand(2, 100, 3) - 0.5
    assert torch.equal(other.query(points), grid.query(points))
    assert 0 < float(grid.occupied_fraction()[0]) < 0.2


def test_canonical_bounding_cube(body_model):
    from avatarpose_ns.body.body_model import canonical_body_pose

    verts = body_model(body_pose=canonical_body_pose(2), betas=torch.tensor([[0.0] * 10, [1.0] + [0.0] * 9])).vertices
    centre, half = canonical_bounding_cube(verts)
    assert centre.shape == (2, 3) and half.shape == (2,)
    lo, hi = verts.amin(1), verts.amax(1)
    torch.testing.assert_close(half, 1.2 * ((hi - lo) / 2).amax(-1))
    assert bool(((verts - centre[:, None]).abs() <= half[:, None, None] / 1.2 + 1e-6).all())
    assert float(half[1]) > float(half[0])  # taller person, larger cube


@pytest.mark.parametrize("num_people", [1, 3])
def test_sampler_deformer_grid_pipeline_shapes(body_model, num_people):
    """Samples -> per-person inverse skinning -> occupancy pruning, the model's order of operations."""
    from avatarpose_ns.body.body_model import canonical_body_pose
    from avatarpose_ns.models.deformer import SkinningDeformer

    transl = torch.tensor([[0.9 * p, 0.0, 0.0] for p in range(num_people)])
    posed = body_model(body_pose=torch.zeros(num_people, 69), transl=transl)
    canon = body_model(body_pose=canonical_body_pose(num_people))
    sampler = PersonRaySampler(num_samples=32)
    box_min, box_max = sampler.boxes(posed.vertices)
    g = torch.Generator().manual_seed(0)
    origins = torch.tensor([0.0, 0.0, 3.0]).expand(64, 3)
    targets = torch.rand(64, 3, generator=g) * torch.tensor([2.0, 1.6, 0.1]) - torch.tensor([0.6, 0.8, 0.05])
    directions = torch.nn.functional.normalize(targets - origins, dim=-1)
    samples = sampler(origins, directions, box_min, box_max, training=True, generator=g)
    positions, valid = samples.per_person()
    deformed = SkinningDeformer.from_body_model(body_model).inverse_multi(
        positions, posed.vertices, posed.joint_transforms, canon.joint_transforms, mask=valid)
    centre, half = canonical_bounding_cube(canon.vertices)
    grid = OccupancyGrid(centre, half, resolution=16)
    keep = grid.prune(deformed.points, deformed.valid)
    assert keep.shape == (num_people, 64 * 32)
    final = samples.with_valid(samples.from_per_person(keep))
    assert final.valid.any() and not (final.valid & ~samples.valid).any()


def test_kept_cells_stay_occupied_after_an_update():
    import torch

    from avatarpose_ns.models.occupancy import OccupancyGrid

    grid = OccupancyGrid(torch.zeros(1, 3), torch.ones(1), resolution=8, decay=0.0, threshold=0.5)
    grid.update(lambda points: torch.zeros(points.shape[:-1]))  # an empty field empties every cell
    kept = torch.zeros(1, 8 ** 3, dtype=torch.bool)
    kept[0, [3, 100]] = True
    surface = grid.cell_centres()[:, [3, 100]]  # (1, 2, 3) points in the kept cells
    assert not grid.query(surface).any()
    grid.keep_cells(kept)
    assert grid.query(surface).all()
    assert int(grid.occupied.sum()) == 2
