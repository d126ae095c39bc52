"""An avatar's surface as a triangle mesh: marching cubes of its canonical density, reposed by skinning.

Which level is "the surface": the renderer composites opacities ``1 - exp(-sigma * step)``,
and the body prior (`body_prior.fit_field_to_body`) fits the opacity over the lite march
step (0.01 m) to inside / outside the SMPL body, so its decision boundary, opacity 0.5 over
0.01 m (sigma = ln 2 / 0.01 = 69.3 per metre), is where a fitted field puts the body's
surface. Marching cubes runs on that opacity rather than on the density itself: the same
level set, but bounded values interpolate far better than an exponential.

The density grid keeps only what the renderer can see: points in cells the occupancy grid
calls occupied, and (in canonical space, an approximation of the posed-space rule) inside
the canonical body or within ``max_skin_distance`` of it. Fog or floaters elsewhere never
render, so they are no part of the avatar. What is left may still hold small separate
blobs; the largest connected component is the avatar.

Numpy, scipy, scikit-image and torch; no nerfstudio. Shapes: N mesh vertices, M faces,
V body vertices, R grid resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from collections.abc import Callable

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from avatarpose_ns.models.deformer import forward_skinning, vertex_normals
from avatarpose_ns.models.nearest_vertex import nearest_vertex_index

LITE_MARCH_STEP = 0.01  # metres: avatarpose-lite's min_step and the body prior's opacity step
SURFACE_OPACITY = 0.5


def surface_density(opacity: float = SURFACE_OPACITY, step: float = LITE_MARCH_STEP) -> float:
    """The density (per metre) whose opacity over ``step`` metres is ``opacity``: ln 2 / 0.01 = 69.3 by default."""
    return -math.log1p(-opacity) / step


@dataclass
class Surface:
    """A triangle mesh with optional per-vertex colours in [0, 1]."""

    vertices: np.ndarray  # (N, 3) float
    faces: np.ndarray  # (M, 3) int
    colors: np.ndarray | None = None  # (N, 3) float

    @property
    def is_empty(self) -> bool:
        return len(self.faces) == 0


def grid_points(centre: np.ndarray, half_size: float, resolution: int) -> tuple[np.ndarray, float]:
    """Corner-aligned grid over the cube ``centre +- half_size``: origin (3,) (the low corner) and spacing."""
    spacing = 2.0 * float(half_size) / (resolution - 1)
    return np.asarray(centre, dtype=np.float64) - float(half_size), spacing


@torch.no_grad()
def sample_grid(fn: Callable[[torch.Tensor], torch.Tensor], origin: np.ndarray, spacing: float, resolution: int,
                device: torch.device | str = "cpu", chunk_size: int = 1 << 18) -> np.ndarray:
    """``fn`` (K, 3) points -> (K,) values, evaluated on the R^3 grid in chunks of x-slabs -> (R, R, R) [i, j, k]
    with point (i, j, k) at ``origin + spacing * (i, j, k)``."""
    ticks = torch.arange(resolution, dtype=torch.float32, device=device) * spacing
    origin_t = torch.as_tensor(origin, dtype=torch.float32, device=device)
    jk = torch.stack(torch.meshgrid(ticks, ticks, indexing="ij"), dim=-1).reshape(-1, 2)  # (R^2, 2)
    slabs = max(1, chunk_size // len(jk))
    out = np.empty((resolution,) * 3, dtype=np.float32)
    for start in range(0, resolution, slabs):
        xs = ticks[start:start + slabs]
        points = torch.cat([xs.repeat_interleave(len(jk))[:, None], jk.repeat(len(xs), 1)], dim=1) + origin_t
        out[start:start + len(xs)] = fn(points).float().reshape(len(xs), resolution, resolution).cpu().numpy()
    return out


@torch.no_grad()
def near_or_inside_body(points: torch.Tensor, vertices: torch.Tensor, faces: torch.Tensor, max_distance: float,
                        max_depth: float = 0.25) -> torch.Tensor:
    """points (K, 3) -> (K,) bool: within ``max_distance`` of a body vertex, or behind the nearest vertex's
    tangent plane and less than ``max_depth`` from it (the inside test of `body_prior.canonical_body_cells`)."""
    index = nearest_vertex_index(points, vertices, max_dist=max(max_distance, max_depth))
    found = index >= 0
    offset = points - vertices[index.clamp_min(0)]
    distance = offset.norm(dim=-1)
    normals = vertex_normals(vertices, faces)
    inside = (offset * normals[index.clamp_min(0)]).sum(dim=-1) < 0
    return found & ((distance <= max_distance) | inside)


def isosurface(values: np.ndarray, level: float, origin: np.ndarray, spacing: float) -> Surface:
    """Marching cubes of the region ``values > level`` (R, R, R). The grid is padded with a layer below
    the level first, so a region touching the grid's border is closed there too (on the border). Faces
    wind so that their normals point out of the region. Empty when nothing exceeds the level."""
    from skimage.measure import marching_cubes

    if not np.any(values > level):
        return Surface(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64))
    floor = min(float(values.min()), level) - 1.0
    padded = np.pad(values.astype(np.float32), 1, constant_values=floor)
    vertices, faces, _, _ = marching_cubes(padded, level=level, spacing=(spacing,) * 3, allow_degenerate=False)
    origin = np.asarray(origin, dtype=np.float64)
    # the closing caps lie in the padding: move them onto the grid's faces
    top = origin + spacing * (np.asarray(values.shape) - 1)
    vertices = np.clip(vertices.astype(np.float64) - spacing + origin, origin, top)
    # skimage winds the faces of a region of high values so that their normals point inwards
    return Surface(vertices, faces[:, ::-1].astype(np.int64))


def largest_component(surface: Surface) -> Surface:
    """The connected component (through shared vertices) with the most faces; unused vertices dropped."""
    if surface.is_empty:
        return surface
    faces = surface.faces
    num_vertices = len(surface.vertices)
    rows = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]])
    cols = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0]])
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(num_vertices, num_vertices))
    _, labels = connected_components(graph, directed=False)
    face_labels = labels[faces[:, 0]]
    keep = face_labels == np.bincount(face_labels).argmax()
    used = np.unique(faces[keep])
    remap = np.full(num_vertices, -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    colors = surface.colors[used] if surface.colors is not None else None
    return Surface(surface.vertices[used], remap[faces[keep]], colors)


def repose(points_canonical: torch.Tensor, canonical_vertices: torch.Tensor, transforms_posed: torch.Tensor,
           transforms_canonical: torch.Tensor, skinning_weights: torch.Tensor) -> torch.Tensor:
    """Canonical surface points (N, 3) -> posed (N, 3) by forward skinning with the nearest canonical SMPL
    vertex's weights (`deformer.forward_skinning`), the inverse of the map the renderer uses."""
    return forward_skinning(points_canonical, canonical_vertices, transforms_posed, transforms_canonical,
                            skinning_weights, max_dist=None).points
