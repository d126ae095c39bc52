"""Sampling near the posed bodies (body shell) and the SMPL-body start of the canonical fields."""

import torch

from avatarpose_ns.body.body_model import canonical_body_pose
from avatarpose_ns.models.body_prior import canonical_body_cells, fit_field_to_body, inside_body
from avatarpose_ns.models.body_shell import body_shell_grid
from avatarpose_ns.models.canonical_field import CanonicalField, CanonicalFieldConfig
from avatarpose_ns.models.deformer import vertex_normals
from avatarpose_ns.models.nearest_vertex import nearest_vertex_index
from avatarpose_ns.models.occupancy import canonical_bounding_cube
from avatarpose_ns.models.ray_sampler import PersonRaySampler, ray_aabb, shell_samples


def _two_posed_bodies(body_model):
    pose = torch.zeros(2, 69)
    pose[1, 47] = -1.2  # one elbow bent
    transl = torch.tensor([[0.0, 0.0, 0.0], [0.8, 0.1, 0.0]])
    return body_model(betas=torch.zeros(2, 10), body_pose=pose, transl=transl).vertices


def _distance_to_vertices(points, vertices):
    return torch.cdist(points, vertices).amin(dim=-1)


def test_shell_holds_every_point_near_the_body_and_nothing_far(body_model):
    vertices = _two_posed_bodies(body_model)
    radius = 0.05
    shell = body_shell_grid(vertices, radius, cell_size=0.02)
    generator = torch.Generator().manual_seed(0)
    for person in range(2):
        lo, hi = vertices[person].amin(0) - 0.3, vertices[person].amax(0) + 0.3
        points = lo + torch.rand(40000, 3, generator=generator) * (hi - lo)
        distance = _distance_to_vertices(points, vertices[person])
        query = torch.zeros(2, len(points), 3)
        query[person] = points
        inside = shell.query(query)[person]
        assert inside[distance <= radius].all(), "a point within the radius is outside the shell"
        # a cube of ceil(radius / cell) cells around each vertex's cell: nothing beyond its corners
        reach = 3  # ceil(0.05 / 0.02)
        assert not inside[distance > (reach + 1) * 0.02 * 3 ** 0.5].any()
        assert inside[distance > radius].float().mean() < 0.5


def test_shell_samples_are_in_the_shell_sorted_and_capped(body_model):
    vertices = _two_posed_bodies(body_model)
    shell = body_shell_grid(vertices, 0.05)
    centre = vertices.mean(dim=(0, 1))
    generator = torch.Generator().manual_seed(1)
    origins = centre + torch.tensor([0.0, -4.0, 0.0]) + (torch.rand(300, 3, generator=generator) - 0.5) * 1.5
    directions = torch.nn.functional.normalize(centre - origins + (torch.rand(300, 3, generator=generator) - 0.5),
                                               dim=-1)
    sampler = PersonRaySampler(num_samples=16, min_step=0.01, margin=0.1)
    box_min, box_max = sampler.boxes(vertices)
    samples = sampler(origins, directions, box_min, box_max, training=True, generator=generator, shell=shell)
    assert samples.t.shape == (300, 2, 16)
    assert (samples.num_valid <= 16).all() and samples.num_valid.sum() > 0
    points, valid = samples.per_person()
    assert shell.query(points)[valid].all()
    t = samples.t
    assert (t[..., 1:] >= t[..., :-1]).all(), "samples must stay sorted per (ray, person)"
    assert (samples.deltas[~samples.valid] == 0).all()
    # with every k-th candidate kept, the samples' deltas cover the in-shell part of the ray
    # (all candidates kept: num_samples large) up to one stride of rounding
    t_near, t_far, hit = ray_aabb(origins, directions, box_min, box_max)
    capped = shell_samples(origins, directions, t_near, t_far, hit, shell, num_samples=16, min_step=0.01,
                           training=False)
    dense = shell_samples(origins, directions, t_near, t_far, hit, shell, num_samples=4096, min_step=0.01,
                          training=False)
    covered, inside_length = capped.deltas.sum(dim=-1), dense.deltas.sum(dim=-1)
    stride = capped.deltas.amax(dim=-1)
    assert (covered >= inside_length - 1e-5).all() and (covered < inside_length + stride + 1e-5).all()
    assert (dense.deltas[dense.valid] == 0.01).all() and (capped.num_valid <= 16).all()


def test_shell_sampling_does_not_step_over_a_thin_limb(body_model):
    """A ray grazing the forearm: box sampling with few slots can miss it, shell sampling may not."""
    vertices = _two_posed_bodies(body_model)[:1]
    shell = body_shell_grid(vertices, 0.05)
    wrist = vertices[0][vertices[0][:, 0].argmax()]  # the right hand tip in the rest pose (+x arm)
    origins = (wrist - torch.tensor([0.1, 0.0, 0.0]) + torch.tensor([0.0, -3.0, 0.0]))[None]
    directions = torch.tensor([[0.0, 1.0, 0.0]])
    t_near, t_far, hit = ray_aabb(origins, directions, *PersonRaySampler(margin=0.1).boxes(vertices))
    samples = shell_samples(origins, directions, t_near, t_far, hit, shell, num_samples=8, min_step=0.01,
                            training=False)
    points = samples.positions[0, 0][samples.valid[0, 0]]
    assert len(points) >= 4
    assert _distance_to_vertices(points, vertices[0]).amin() < 0.02


def test_inside_body_matches_distance_sign_on_the_canonical_body(body_model):
    canonical = body_model(betas=torch.zeros(1, 10), body_pose=canonical_body_pose(1)).vertices[0]
    normals = vertex_normals(canonical, body_model.faces)
    pelvis_centre = canonical.mean(0)
    # points on the inward and outward normals 1 cm from random vertices
    pick = torch.randperm(len(canonical), generator=torch.Generator().manual_seed(0))[:2000]
    inner = canonical[pick] - 0.01 * normals[pick]
    outer = canonical[pick] + 0.01 * normals[pick]
    assert inside_body(inner, canonical, normals).float().mean() > 0.97
    assert inside_body(outer, canonical, normals).float().mean() < 0.03
    assert inside_body(pelvis_centre[None], canonical, normals).item()


def test_field_fitted_to_the_body_is_solid_inside_and_empty_outside(body_model):
    torch.manual_seed(0)
    canonical = body_model(betas=torch.zeros(1, 10), body_pose=canonical_body_pose(1)).vertices[0]
    centre, half = canonical_bounding_cube(canonical)
    field = CanonicalField(CanonicalFieldConfig.small(), centre, half)
    loss = fit_field_to_body(field, canonical, body_model.faces, steps=80, num_points=8192)
    normals = vertex_normals(canonical, body_model.faces)
    pick = torch.randperm(len(canonical), generator=torch.Generator().manual_seed(1))[:2000]
    with torch.no_grad():
        opacity_in = -torch.expm1(-field.density(canonical[pick] - 0.02 * normals[pick]) * 0.01)
        opacity_out = -torch.expm1(-field.density(canonical[pick] + 0.03 * normals[pick]) * 0.01)
    assert loss < 0.3
    assert opacity_in.median() > 0.9 and opacity_out.median() < 0.1


def test_body_cells_cover_the_body_volume(body_model):
    canonical = body_model(betas=torch.zeros(1, 10), body_pose=canonical_body_pose(1)).vertices[0]
    centre, half = canonical_bounding_cube(canonical)
    resolution = 32
    ticks = (torch.arange(resolution) + 0.5) / resolution * 2 - 1
    centres = centre + torch.stack(torch.meshgrid(ticks, ticks, ticks, indexing="ij"), -1).reshape(-1, 3) * half
    cell = float(2 * half / resolution)
    cells = canonical_body_cells(centres, canonical, body_model.faces, cell)
    # every vertex's cell is kept; so is the pelvis interior; far corners are not
    index = torch.floor((canonical - (centre - half)) / cell).long().clamp(0, resolution - 1)
    flat = (index[:, 0] * resolution + index[:, 1]) * resolution + index[:, 2]
    assert cells[flat].all()
    nearest = nearest_vertex_index(centres, canonical)
    far = (centres - canonical[nearest]).norm(dim=-1) > 0.3
    assert not cells[far].any()
    assert 0.02 < cells.float().mean() < 0.3
