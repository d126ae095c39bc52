"""Where the posed bodies are: voxel grids of the space within a radius of each posed SMPL mesh.

The deformer gives zero density farther than 5 cm from the posed body, so only a thin
shell around each body can hold anything. Samples spread uniformly over a person's
bounding box would mostly land outside it (and, with a few dozen samples per ray on a
CPU, step over limbs); `BodyShellGrid` lets the sampler march finely along a ray and
keep only the candidates inside the shell, before any nearest-vertex search.

Built per frame from the posed vertices: each vertex marks its cell, then the marks
are dilated by ``ceil(radius / cell) `` cells (a Chebyshev ball, so every point within
``radius`` of a vertex is inside; the shell is a slight superset). No gradient.

Torch only. Shapes: L people, V vertices, (X, Y, Z) cells per person (shared, padded).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from avatarpose_ns.models.person_query import query_one_person


@dataclass
class BodyShellGrid:
    """Per-person boolean voxel grids in world space."""

    origin: torch.Tensor  # (L, 3) corner of cell (0, 0, 0)
    cell_size: float  # metres
    occupied: torch.Tensor  # (L, X, Y, Z) bool

    @property
    def num_people(self) -> int:
        return int(self.occupied.shape[0])

    @torch.no_grad()
    def query(self, points: torch.Tensor) -> torch.Tensor:
        """points (..., L, K, 3), person l's points in column l -> (..., L, K) bool inside that person's shell."""
        dims = torch.tensor(self.occupied.shape[1:], device=points.device)
        ijk = torch.floor((points - self.origin[:, None, :]) / self.cell_size).long()
        inside = ((ijk >= 0) & (ijk < dims)).all(dim=-1)
        ijk = torch.minimum(ijk.clamp_min(0), dims - 1)
        flat = (ijk[..., 0] * dims[1] + ijk[..., 1]) * dims[2] + ijk[..., 2]
        person = torch.arange(self.num_people, device=points.device)[:, None]
        flat = flat + person * int(dims.prod())
        return self.occupied.reshape(-1)[flat] & inside

    def query_person(self, points: torch.Tensor, person: int) -> torch.Tensor:
        """points (K, 3) -> (K,) bool inside person `person`'s shell."""
        return query_one_person(self.query, self.num_people, points, person)


@torch.no_grad()
def body_shell_grid(posed_vertices: torch.Tensor, radius: float, cell_size: float = 0.02) -> BodyShellGrid:
    """posed_vertices (L, V, 3) -> grids marking every cell within `radius` (metres) of a vertex.

    `cell_size` should not exceed the mesh's vertex spacing much, or the marks of
    neighbouring vertices leave gaps that the dilation then has to close.
    """
    if posed_vertices.ndim != 3 or posed_vertices.shape[-1] != 3:
        raise ValueError(f"posed_vertices must be (L, V, 3), got {tuple(posed_vertices.shape)}")
    reach = math.ceil(radius / cell_size)
    pad = reach + 1
    lo = posed_vertices.amin(dim=1) - pad * cell_size  # (L, 3)
    hi = posed_vertices.amax(dim=1) + pad * cell_size
    dims = torch.ceil((hi - lo) / cell_size).long().amax(dim=0) + 1  # (3,) common to all people
    num_people = posed_vertices.shape[0]
    ijk = torch.floor((posed_vertices - lo[:, None, :]) / cell_size).long()
    flat = (ijk[..., 0] * dims[1] + ijk[..., 1]) * dims[2] + ijk[..., 2]
    marks = torch.zeros(num_people, int(dims.prod()), device=posed_vertices.device)
    marks.scatter_(1, flat, 1.0)
    grid = marks.reshape(num_people, 1, *dims.tolist())
    kernel = 2 * reach + 1
    for axis in range(3):  # separable Chebyshev dilation
        size = [1, 1, 1]
        size[axis] = kernel
        padding = [0, 0, 0]
        padding[axis] = reach
        grid = F.max_pool3d(grid, kernel_size=size, stride=1, padding=padding)
    return BodyShellGrid(lo, float(cell_size), grid[:, 0] > 0)
