"""SMPL skinning between posed (world) space and each avatar's canonical space.

The canonical space of an avatar is its SMPL body in the canonical pose (rest pose
with the legs spread +-30 degrees, `canonical_body_pose`), shaped with the person's
betas. A posed query point x takes the skinning weights w (24,) of its nearest
posed SMPL vertex (K=1, no gradient through the search) and is mapped by

    x_c = (sum_j w_j A_canon[j]) (sum_j w_j A_posed[j])^-1 x        (homogeneous)

where A_posed / A_canon (24, 4, 4) are the joint transforms of the posed and the
canonical body (shaped rest pose -> that pose, translation included), as returned
by `BodyModel.forward(...).joint_transforms`. Gradients reach the pose (and the
translation and global orientation) through A_posed and the shape through both
transforms and the posed vertices; the neighbour index carries none. Points
farther than `max_dist` (0.05 m) from the nearest posed vertex are flagged invalid:
the caller gives them zero density. The search itself stops at max_dist, so for
those points there is no neighbour: they are mapped rigidly with the root joint
(finite, roughly where the body frame puts them), their distance is +inf and their
vertex index -1.

Known limitation of nearest-vertex skinning (not of this code): where body parts
come close in the posed space but not in the canonical one (thighs of straight
legs, an arm against the trunk), a point near one part can pick a vertex of the
other and is mapped far away; and where the nearest vertex changes between the
two spaces (strongly curved or blended regions) inverse(forward(x)) differs from
x by up to the blend difference (~1 cm at 2 cm off the surface). Where the same
vertex is chosen in both directions the round trip is exact to float precision.

Because the weights belong to a vertex, the whole map is a per-vertex rigid-ish
transform: it is computed once per vertex (V) and gathered for the N points, which
keeps the per-point work to one gather and one 3x4 multiply.

Forward skinning (canonical -> posed, for meshes and the round trip) is the same
with the roles swapped and the nearest CANONICAL vertex's weights.

The neighbour search (`avatarpose_ns.models.nearest_vertex`) is the expensive part.

Torch only. Shapes: N query points, V vertices, 24 joints, L people.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from avatarpose_ns.models.nearest_vertex import SEARCH_METHODS, nearest_vertex_index

MAX_DIST = 0.05  # metres: farther from the body than this -> zero density


class SkinningResult(NamedTuple):
    """Output of the deformers. Leading shape (N,) or (L, N) for the multi-person helper."""

    points: torch.Tensor  # (..., 3) deformed points (canonical for inverse, posed for forward)
    valid: torch.Tensor  # (...,) bool: searched and within max_dist of the body
    distance: torch.Tensor  # (...,) to the nearest vertex (differentiable); +inf: none within max_dist / not searched
    vertex_index: torch.Tensor  # (...,) long index of the nearest vertex; -1: none within max_dist / not searched


def _safe_norm(x: torch.Tensor) -> torch.Tensor:
    """|x| over the last axis with a finite gradient at 0."""
    return torch.sqrt((x * x).sum(dim=-1).clamp_min(1e-20))


# --------------------------------------------------------------------------- transform algebra
def blend_transforms(weights: torch.Tensor, transforms: torch.Tensor) -> torch.Tensor:
    """Linear blend of joint transforms. weights (..., J), transforms (J, 4, 4) -> (..., 4, 4)."""
    blended = weights @ transforms.reshape(transforms.shape[0], 16)
    return blended.reshape(*weights.shape[:-1], 4, 4)


def invert_affine(transforms: torch.Tensor, min_det: float = 1e-8) -> torch.Tensor:
    """Inverse of affine 4x4 matrices [M t; 0 1] in closed form (adjugate of the 3x3 part).

    (..., 4, 4) -> (..., 4, 4). Blended rotations are not orthogonal, so this is a
    general 3x3 inverse; |det| is clamped at min_det (sign kept) so a degenerate
    blend gives a far-away point instead of inf/NaN.
    """
    m = transforms[..., :3, :3]
    t = transforms[..., :3, 3]
    c0, c1, c2 = m[..., :, 0], m[..., :, 1], m[..., :, 2]
    r0 = torch.linalg.cross(c1, c2, dim=-1)  # rows of adj(M)
    r1 = torch.linalg.cross(c2, c0, dim=-1)
    r2 = torch.linalg.cross(c0, c1, dim=-1)
    det = (c0 * r0).sum(dim=-1)
    sign = torch.where(det < 0, -torch.ones_like(det), torch.ones_like(det))
    det = sign * det.abs().clamp_min(min_det)
    m_inv = torch.stack([r0, r1, r2], dim=-2) / det[..., None, None]
    t_inv = -(m_inv @ t[..., None])[..., 0]
    bottom = torch.zeros_like(transforms[..., 3:, :])
    bottom[..., 3] = 1.0
    return torch.cat([torch.cat([m_inv, t_inv[..., None]], dim=-1), bottom], dim=-2)


def vertex_relative_transforms(weights: torch.Tensor, transforms_from: torch.Tensor,
                               transforms_to: torch.Tensor) -> torch.Tensor:
    """Per-vertex map from one pose to another: (sum w A_to)(sum w A_from)^-1.

    weights (V, 24), transforms_from / transforms_to (24, 4, 4) -> (V, 4, 4).
    """
    return blend_transforms(weights, transforms_to) @ invert_affine(blend_transforms(weights, transforms_from))


def _check_body(vertices: torch.Tensor, transforms_a: torch.Tensor, transforms_b: torch.Tensor,
                weights: torch.Tensor) -> None:
    if vertices.ndim != 2 or vertices.shape[-1] != 3:
        raise ValueError(f"vertices must be (V, 3), got {tuple(vertices.shape)}")
    for name, tr in (("A_posed", transforms_a), ("A_canon", transforms_b)):
        if tr.ndim != 3 or tr.shape[-2:] != (4, 4):
            raise ValueError(f"{name} must be (24, 4, 4), got {tuple(tr.shape)}")
    if weights.shape != (vertices.shape[0], transforms_a.shape[0]):
        raise ValueError(f"skinning weights {tuple(weights.shape)} do not match vertices {tuple(vertices.shape)} "
                         f"and {transforms_a.shape[0]} joints")


def _skin_by_nearest(points, search_vertices, transforms_from, transforms_to, weights, max_dist, method,
                     chunk_size, workers, cell_size=None) -> SkinningResult:
    _check_body(search_vertices, transforms_from, transforms_to, weights)
    if points.shape[-1] != 3:
        raise ValueError(f"points must be (N, 3), got {tuple(points.shape)}")
    lead = points.shape[:-1]
    flat = points.reshape(-1, 3)
    num_vertices = search_vertices.shape[0]
    index = nearest_vertex_index(flat, search_vertices, max_dist=max_dist, method=method, chunk_size=chunk_size,
                                 workers=workers, cell_size=cell_size)
    found = index >= 0
    gather = torch.where(found, index, torch.full_like(index, num_vertices))
    # per-vertex maps, plus one last row: the root joint's rigid map for points with no vertex in range
    per_vertex = vertex_relative_transforms(weights.to(transforms_from.dtype), transforms_from, transforms_to)
    root = transforms_to[:1] @ invert_affine(transforms_from[:1])
    table = torch.cat([per_vertex, root], dim=0)[:, :3, :].reshape(num_vertices + 1, 12).to(flat.dtype)
    # index_select rather than table[gather]: its backward is an index_add, whereas advanced
    # indexing's backward sorts the N indices (on a GPU that sort was 40 % of a training step).
    rel = table.index_select(0, gather).reshape(-1, 3, 4)  # (N, 3, 4)
    out = (rel[..., :3] @ flat[..., None])[..., 0] + rel[..., 3]
    nearest = search_vertices.to(flat.dtype).index_select(0, gather.clamp_max(num_vertices - 1))
    distance = torch.where(found, _safe_norm(flat - nearest), torch.full_like(flat[:, 0], float("inf")))
    valid = found if max_dist is None else found & (distance <= max_dist)
    return SkinningResult(out.reshape(*lead, 3), valid.reshape(lead), distance.reshape(lead), index.reshape(lead))


# --------------------------------------------------------------------------- public functions
def inverse_skinning(points: torch.Tensor, posed_vertices: torch.Tensor, A_posed: torch.Tensor,
                     A_canon: torch.Tensor, skinning_weights: torch.Tensor, max_dist: float | None = MAX_DIST,
                     method: str = "auto", chunk_size: int = 8192, workers: int = -1,
                     cell_size: float | None = None) -> SkinningResult:
    """Posed (world) points -> canonical points of one person.

    points (N, 3) or (..., 3); posed_vertices (V, 3); A_posed, A_canon (24, 4, 4);
    skinning_weights (V, 24). Returns SkinningResult(points (N, 3) canonical,
    valid (N,) = distance <= max_dist, distance (N,) to the nearest posed vertex
    (+inf beyond max_dist), vertex_index (N,) (-1 beyond max_dist)). Canonical
    points are finite for invalid points too (root-joint rigid map).
    max_dist None: exact search, every point valid. method, chunk_size, workers, cell_size:
    the neighbour search's (`nearest_vertex_index`).
    """
    return _skin_by_nearest(points, posed_vertices, A_posed, A_canon, skinning_weights, max_dist, method,
                            chunk_size, workers, cell_size)


def forward_skinning(points_canonical: torch.Tensor, canonical_vertices: torch.Tensor, A_posed: torch.Tensor,
                     A_canon: torch.Tensor, skinning_weights: torch.Tensor, max_dist: float | None = None,
                     method: str = "auto", chunk_size: int = 8192, workers: int = -1,
                     cell_size: float | None = None) -> SkinningResult:
    """Canonical points -> posed (world) points with the nearest CANONICAL vertex's weights.

    points_canonical (N, 3); canonical_vertices (V, 3) (the body in the canonical
    pose with the same betas); A_posed, A_canon (24, 4, 4); skinning_weights (V, 24).
    x_p = (sum w A_posed)(sum w A_canon)^-1 x_c. max_dist None (default): exact
    search, every point valid; otherwise as in `inverse_skinning`.
    For the canonical SMPL vertices themselves this is exactly SMPL's LBS.
    """
    return _skin_by_nearest(points_canonical, canonical_vertices, A_canon, A_posed, skinning_weights, max_dist,
                            method, chunk_size, workers, cell_size)


def skin_directions(directions: torch.Tensor, vertex_index: torch.Tensor, transforms_from: torch.Tensor,
                    transforms_to: torch.Tensor, skinning_weights: torch.Tensor) -> torch.Tensor:
    """Carry unit directions (N, 3) through the linear part of each point's skinning map.

    vertex_index (N,): the nearest vertex found by a deformer (-1: none, the root joint's
    map is used); transforms_from / transforms_to (24, 4, 4) as in `inverse_skinning`.
    Blended maps are not exact rotations, so the result is renormalised.  Used to give a
    view-dependent colour head the viewing direction in canonical space.
    """
    num_vertices = skinning_weights.shape[0]
    linear = vertex_relative_transforms(skinning_weights.to(transforms_from.dtype), transforms_from,
                                        transforms_to)[:, :3, :3]
    root = (transforms_to[:1] @ invert_affine(transforms_from[:1]))[:, :3, :3]
    table = torch.cat([linear, root], dim=0).reshape(num_vertices + 1, 9).to(directions.dtype)
    gather = torch.where(vertex_index >= 0, vertex_index, torch.full_like(vertex_index, num_vertices))
    rotated = (table.index_select(0, gather).reshape(-1, 3, 3) @ directions[..., None])[..., 0]
    return rotated / _safe_norm(rotated)[..., None]


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals. vertices (..., V, 3), faces (F, 3) long -> (..., V, 3)."""
    faces = faces.long()
    v0, v1, v2 = (vertices[..., faces[:, k], :] for k in range(3))
    face_normals = torch.linalg.cross(v1 - v0, v2 - v0, dim=-1)  # length = 2 * area
    normals = torch.zeros_like(vertices)
    for k in range(3):
        normals = normals.index_add(-2, faces[:, k], face_normals)
    return normals / _safe_norm(normals)[..., None]


# --------------------------------------------------------------------------- module
class SkinningDeformer(torch.nn.Module):
    """Inverse / forward LBS for the people of a scene, sharing one body model's weights.

    skinning_weights (V, 24) and faces (F, 3) are non-persistent buffers (they come
    from the body model, not from training), so checkpoints do not carry them.
    method, chunk_size, workers, cell_size: the neighbour search's (`nearest_vertex_index`).
    """

    def __init__(self, skinning_weights: torch.Tensor, faces: torch.Tensor | None = None,
                 max_dist: float = MAX_DIST, method: str = "auto", chunk_size: int = 8192,
                 workers: int = -1, cell_size: float | None = None) -> None:
        super().__init__()
        if method not in SEARCH_METHODS:
            raise ValueError(f"unknown neighbour search method {method!r}; choose one of {SEARCH_METHODS}")
        self.register_buffer("skinning_weights", skinning_weights.detach().clone().float(), persistent=False)
        if faces is not None:
            self.register_buffer("faces", faces.detach().clone().long(), persistent=False)
        else:
            self.faces = None
        self.max_dist = float(max_dist)
        self.method = method
        self.chunk_size = int(chunk_size)
        self.workers = int(workers)
        self.cell_size = cell_size

    @classmethod
    def from_body_model(cls, body_model, **kwargs) -> SkinningDeformer:
        """Weights and faces of an `avatarpose_ns.body.body_model.BodyModel`."""
        return cls(body_model.skinning_weights, body_model.faces, **kwargs)

    def _kw(self) -> dict:
        return dict(method=self.method, chunk_size=self.chunk_size, workers=self.workers, cell_size=self.cell_size)

    def inverse(self, points: torch.Tensor, posed_vertices: torch.Tensor, A_posed: torch.Tensor,
                A_canon: torch.Tensor) -> SkinningResult:
        """One person: points (N, 3) posed -> SkinningResult with canonical points (N, 3),
        valid (N,), distance (N,), vertex_index (N,). posed_vertices (V, 3),
        A_posed / A_canon (24, 4, 4)."""
        return inverse_skinning(points, posed_vertices, A_posed, A_canon, self.skinning_weights,
                                max_dist=self.max_dist, **self._kw())

    def inverse_directions_multi(self, directions: torch.Tensor, vertex_index: torch.Tensor,
                                 A_posed: torch.Tensor, A_canon: torch.Tensor) -> torch.Tensor:
        """Posed unit directions (L, N, 3) -> canonical (L, N, 3), each through the map of its
        sample's nearest vertex (``vertex_index`` (L, N) from `inverse_multi`)."""
        return torch.stack([skin_directions(directions[p], vertex_index[p], A_posed[p], A_canon[p],
                                            self.skinning_weights) for p in range(directions.shape[0])])

    def forward_skin(self, points_canonical: torch.Tensor, canonical_vertices: torch.Tensor,
                     A_posed: torch.Tensor, A_canon: torch.Tensor, max_dist: float | None = None) -> SkinningResult:
        """One person: canonical points (N, 3) -> posed points (N, 3) (nearest canonical vertex weights)."""
        return forward_skinning(points_canonical, canonical_vertices, A_posed, A_canon, self.skinning_weights,
                                max_dist=max_dist, **self._kw())

    def inverse_multi(self, points: torch.Tensor, posed_vertices: torch.Tensor, A_posed: torch.Tensor,
                      A_canon: torch.Tensor, mask: torch.Tensor | None = None) -> SkinningResult:
        """All people at once on padded points.

        points (L, N, 3) posed; posed_vertices (L, V, 3); A_posed, A_canon (L, 24, 4, 4);
        mask (L, N) bool or None: only masked points are searched and deformed (skip
        padding and samples outside a person's box). Returns SkinningResult with
        points (L, N, 3) canonical (0 where not searched), valid (L, N) (False where
        not searched), distance (L, N) (+inf where not searched), vertex_index (L, N)
        (-1 where not searched).
        """
        num_people, num_points = points.shape[:2]
        if posed_vertices.shape[0] != num_people or A_posed.shape[0] != num_people or A_canon.shape[0] != num_people:
            raise ValueError("points, posed_vertices, A_posed and A_canon need the same leading person axis L")
        if mask is None:
            results = [self.inverse(points[p], posed_vertices[p], A_posed[p], A_canon[p]) for p in range(num_people)]
            return SkinningResult(*(torch.stack(parts) for parts in zip(*results)))
        if mask.shape != (num_people, num_points):
            raise ValueError(f"mask must be (L, N) = {(num_people, num_points)}, got {tuple(mask.shape)}")
        out_points = points.new_zeros(num_people, num_points, 3)
        valid = torch.zeros(num_people, num_points, dtype=torch.bool, device=points.device)
        distance = points.new_full((num_people, num_points), float("inf"))
        index = torch.full((num_people, num_points), -1, dtype=torch.long, device=points.device)
        rows = []
        for p in range(num_people):
            selected = mask[p].nonzero(as_tuple=True)[0]
            result = self.inverse(points[p].index_select(0, selected), posed_vertices[p], A_posed[p], A_canon[p])
            rows.append((p, selected, result))
        # out-of-place scatter keeps autograd through the deformed points and distances
        flat_ids = torch.cat([p * num_points + sel for p, sel, _ in rows])
        out_points = out_points.reshape(-1, 3).index_put((flat_ids,), torch.cat([r.points for *_, r in rows]))
        distance = distance.reshape(-1).index_put((flat_ids,), torch.cat([r.distance for *_, r in rows]))
        valid = valid.reshape(-1).index_put((flat_ids,), torch.cat([r.valid for *_, r in rows]))
        index = index.reshape(-1).index_put((flat_ids,), torch.cat([r.vertex_index for *_, r in rows]))
        shape = (num_people, num_points)
        return SkinningResult(out_points.reshape(*shape, 3), valid.reshape(shape), distance.reshape(shape),
                              index.reshape(shape))
