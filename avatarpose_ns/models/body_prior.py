"""Start each canonical field as the person's SMPL body: solid inside the mesh, empty outside.

A field learned from images alone starts as faint fog filling the 5 cm shell the
deformer allows, and carving that fog into a body takes thousands of steps (too
many for a CPU schedule, and a faint person can be pruned away altogether). The
canonical SMPL mesh already says where the body is, to within clothing and pose
error, so the density is first fitted to it: points near the canonical surface are
labelled inside or outside by the nearest vertex's normal, and the field's opacity
over `step` metres is fitted to that label by binary cross-entropy. Colours are left
to the images. Then `canonical_body_cells` gives the occupancy-grid cells that hold
the body, so pruning never removes the body itself.

Torch, and scipy's cKDTree for the neighbour search on a CPU.
Shapes: V vertices, F faces, N points, L people, R grid resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from avatarpose_ns.models.canonical_field import CanonicalField
from avatarpose_ns.models.deformer import vertex_normals
from avatarpose_ns.models.nearest_vertex import nearest_vertex_index
from avatarpose_ns.models.losses import densities_to_opacities


@torch.no_grad()
def inside_body(points: torch.Tensor, vertices: torch.Tensor, normals: torch.Tensor) -> torch.Tensor:
    """points (N, 3), mesh vertices (V, 3) with unit normals (V, 3) -> (N,) bool: behind the nearest vertex's
    tangent plane. Exact enough within a few centimetres of a closed, smooth body surface."""
    index = nearest_vertex_index(points, vertices)
    return ((points - vertices[index]) * normals[index]).sum(dim=-1) < 0


def body_training_points(vertices: torch.Tensor, normals: torch.Tensor, num_points: int, spread: float,
                         generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Points near the surface: random vertices moved along their normals by N(0, spread), plus jitter.
    -> points (N, 3), inside (N,) bool."""
    device = vertices.device
    pick = torch.randint(vertices.shape[0], (num_points,), generator=generator, device=device)
    offset = torch.randn(num_points, 1, generator=generator, device=device) * spread
    jitter = torch.randn(num_points, 3, generator=generator, device=device) * (spread / 4)
    points = vertices[pick] + offset * normals[pick] + jitter
    return points, inside_body(points, vertices, normals)


def fit_field_to_body(field: CanonicalField, vertices: torch.Tensor, faces: torch.Tensor, steps: int = 150,
                      num_points: int = 16384, spread: float = 0.03, step: float = 0.01, lr: float = 1e-2,
                      seed: int = 0) -> float:
    """Fit the field's density to the canonical body (V, 3) with faces (F, 3). Returns the final loss.

    Opacity over `step` metres, 1 - exp(-sigma step), is pushed to 1 inside the mesh and 0
    outside (binary cross-entropy); a private Adam runs `steps` steps on the field's
    parameters, so the training optimiser's state is untouched.
    """
    vertices = vertices.detach()
    normals = vertex_normals(vertices, faces)
    generator = torch.Generator(device=vertices.device).manual_seed(seed)
    optimizer = torch.optim.Adam(field.parameters(), lr=lr, eps=1e-15)
    loss = torch.zeros(())
    for _ in range(steps):
        points, inside = body_training_points(vertices, normals, num_points, spread, generator)
        opacity = densities_to_opacities(field.density(points), step)
        loss = F.binary_cross_entropy(opacity.clamp(1e-4, 1 - 1e-4), inside.to(opacity.dtype))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def canonical_body_cells(cell_centres: torch.Tensor, vertices: torch.Tensor, faces: torch.Tensor,
                         cell_size: float, max_depth: float = 0.25) -> torch.Tensor:
    """Cells (M, 3 centres) inside the body or within one cell diagonal of its surface -> (M,) bool.
    The inside test is trusted only within `max_depth` metres of a vertex (deeper than any torso)."""
    normals = vertex_normals(vertices, faces)
    index = nearest_vertex_index(cell_centres, vertices)
    offset = cell_centres - vertices[index]
    distance = offset.norm(dim=-1)
    near = distance <= cell_size * 3 ** 0.5
    inside = ((offset * normals[index]).sum(dim=-1) < 0) & (distance < max_depth)
    return near | inside
