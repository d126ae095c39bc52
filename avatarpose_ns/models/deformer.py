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

The neighbour search is the expensive part. On CPU a scipy cKDTree (build ~3 ms,
query ~30-80 ms for 65k points, bounded by max_dist) beats brute force by ~100x.
Brute force ("cdist": one matrix product and an argmin over all V vertices per point)
runs anywhere but writes and reads N x V distances. "grid" is exact too and pure torch:
a uniform grid over the vertices lists, per cell, only the vertices that can be the
nearest one within max_dist of a point in that cell (`build_vertex_grid`), so a point
compares itself with tens to a few hundred vertices instead of V. `method="auto"`
picks cKDTree for CPU tensors when scipy imports and the grid elsewhere (brute force
when there is no max_dist to bound the grid's lists).

Torch and numpy only (scipy optional). Shapes: N query points, V vertices,
24 joints, L people.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

try:  # optional: the CPU neighbour search
    from scipy.spatial import cKDTree as _cKDTree
except Exception:  # pragma: no cover - exercised only without scipy
    _cKDTree = None

MAX_DIST = 0.05  # metres: farther from the body than this -> zero density
SEARCH_METHODS = ("auto", "kdtree", "cdist", "grid")
GRID_CELL_SIZE = 0.03  # metres: cell edge of the "grid" search (see `build_vertex_grid`)


class SkinningResult(NamedTuple):
    """Output of the deformers. Leading shape (N,) or (L, N) for the multi-person helper."""

    points: torch.Tensor  # (..., 3) deformed points (canonical for inverse, posed for forward)
    valid: torch.Tensor  # (...,) bool: searched and within max_dist of the body
    distance: torch.Tensor  # (...,) to the nearest vertex (differentiable); +inf: none within max_dist / not searched
    vertex_index: torch.Tensor  # (...,) long index of the nearest vertex; -1: none within max_dist / not searched


def has_scipy() -> bool:
    return _cKDTree is not None


# --------------------------------------------------------------------------- neighbour search
def _resolve_method(method: str, device: torch.device, max_dist: float | None) -> str:
    if method not in SEARCH_METHODS:
        raise ValueError(f"unknown neighbour search method {method!r}; choose one of {SEARCH_METHODS}")
    if method == "auto":
        if device.type == "cpu" and _cKDTree is not None:
            return "kdtree"
        method = "grid"
    if method == "kdtree" and _cKDTree is None:
        return "cdist"  # torch fallback without scipy
    if method == "grid" and max_dist is None:
        return "cdist"  # the grid's candidate lists need a bounded search
    return method


def _centred_vertices(vertices: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Vertices (V, 3) relative to their mean, and that mean (1, 3), both in dtype.

    Queries subtract the same mean: world coordinates may sit metres from the origin,
    where the matrix-product distance |a|^2 - 2ab + |b|^2 loses precision.
    """
    centre = vertices.detach().mean(dim=0, keepdim=True)
    return (vertices.detach() - centre).to(dtype), centre.to(dtype)


def _drop_far(index: torch.Tensor, pts: torch.Tensor, verts: torch.Tensor, max_dist: float) -> torch.Tensor:
    """index (N,) with -1 where the chosen vertex lies farther than max_dist (same arithmetic for every method)."""
    found = index >= 0
    far = (pts - verts[index.clamp_min(0)]).square().sum(dim=-1) > float(max_dist) ** 2
    return torch.where(found & ~far, index, torch.full_like(index, -1))


@torch.no_grad()
def nearest_vertex_index(points: torch.Tensor, vertices: torch.Tensor, max_dist: float | None = None,
                         method: str = "auto", chunk_size: int = 8192, workers: int = -1,
                         cell_size: float | None = None) -> torch.Tensor:
    """Index of the nearest vertex for every point, without gradient.

    points (N, 3), vertices (V, 3) -> (N,) long on points.device; -1 where no vertex
    lies within max_dist (None: always the exact nearest vertex).
    method: "kdtree" (scipy cKDTree on CPU; points are copied to numpy), "cdist"
    (chunked matrix-product distances + argmin, any device), "grid" (per-cell candidate
    lists, any device; needs max_dist, else it runs "cdist") or "auto". chunk_size bounds
    the cdist working set to chunk_size x V floats and the grid's to chunk_size x K x 4.
    workers: cKDTree query threads (-1 = all cores). cell_size: the grid's cell edge
    (None: GRID_CELL_SIZE). A finite max_dist makes the cKDTree search ~10x faster for
    ray samples, most of which lie in empty space.
    """
    if points.ndim != 2 or points.shape[-1] != 3 or vertices.ndim != 2 or vertices.shape[-1] != 3:
        raise ValueError(f"expected points (N, 3) and vertices (V, 3), got {tuple(points.shape)}, "
                         f"{tuple(vertices.shape)}")
    num_points, num_vertices = points.shape[0], vertices.shape[0]
    if num_points == 0:
        return torch.zeros(0, dtype=torch.long, device=points.device)
    method = _resolve_method(method, points.device, max_dist)
    if method == "kdtree":
        tree = _cKDTree(vertices.detach().to("cpu", torch.float64).numpy())
        bound = np.inf if max_dist is None else float(max_dist)
        _, index = tree.query(points.detach().to("cpu", torch.float64).numpy(), k=1, workers=workers,
                              distance_upper_bound=bound)
        index = torch.from_numpy(np.asarray(index, dtype=np.int64))
        index[index >= num_vertices] = -1  # cKDTree marks "none within the bound" with V
        return index.to(points.device)
    if method == "grid":
        return grid_nearest_vertex_index(points, vertices, float(max_dist), cell_size=cell_size,
                                         chunk_size=chunk_size)
    verts, centre = _centred_vertices(vertices, points.dtype)
    pts = points.detach() - centre
    # argmin_v |p - v|^2 = argmin_v (|v|^2 - 2 p.v): one matrix product and one reduction per
    # chunk, no square root (torch.cdist spends most of its time in clamp and sqrt).
    if points.is_cuda:  # a GPU has the memory for larger chunks (65536 x V floats: 1.8 GB for SMPL)
        chunk_size = max(chunk_size, 65536)
    verts_t = verts.t().contiguous()
    verts_sq = verts.square().sum(dim=-1)[None]
    index = torch.empty(num_points, dtype=torch.long, device=points.device)
    for start in range(0, num_points, chunk_size):
        stop = min(start + chunk_size, num_points)
        index[start:stop] = torch.addmm(verts_sq, pts[start:stop], verts_t, alpha=-2.0).argmin(dim=1)
    return index if max_dist is None else _drop_far(index, pts, verts, max_dist)


# --------------------------------------------------------------------------- grid search
class VertexGrid(NamedTuple):
    """Per-cell candidate vertices of a uniform grid; see `build_vertex_grid`.

    Coordinates are relative to `centre`. C cells, R non-empty rows plus one last empty
    row (index R) shared by every cell without candidates; K the longest list.
    """

    centre: torch.Tensor  # (1, 3) vertex mean, subtracted from vertices and queries
    origin: torch.Tensor  # (3,) lower corner of cell (0, 0, 0)
    cell_size: float
    dims: torch.Tensor  # (3,) long cells per axis
    cell_row: torch.Tensor  # (C,) long table row of each cell; R where it has no candidates
    count: torch.Tensor  # (R + 1,) long candidates per row (0 for the empty row)
    start: torch.Tensor  # (R + 1,) long first position of each row's candidates in `candidates`
    candidates: torch.Tensor  # (P,) long vertex indices, row after row, ascending within a row
    coords: torch.Tensor  # (R + 1, K, 4) candidate xyz relative to the row's cell centre, then |xyz|^2 (+inf: padding)
    vertices: torch.Tensor  # (V, 3) the centred vertices


def _cell_offsets(reach: float, cell_size: float, device: torch.device) -> torch.Tensor:
    """(A,) long offsets, along one axis, of the cells whose box can lie within `reach` of a point in cell 0.

    A point in cell b is at least (|i - b| - 1) * cell_size from cell i along an axis, so
    |i - b| <= floor(reach / cell_size) + 1 covers all of them.
    """
    n = int(reach // cell_size) + 1
    return torch.arange(-n, n + 1, device=device)


def _flat_cell(cell: torch.Tensor, dims: torch.Tensor) -> torch.Tensor:
    """(..., 3) long cell coordinates -> (...,) long row-major cell index."""
    return (cell[..., 0] * dims[1] + cell[..., 1]) * dims[2] + cell[..., 2]


def _candidate_pairs(verts: torch.Tensor, origin: torch.Tensor, dims: torch.Tensor, cell_size: float,
                     reach: float, margin: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All (vertex, cell) pairs a cell's nearest-vertex search needs.

    verts (V, 3) centred. A pair is kept when the vertex lies within `reach` of the cell's
    box (box distance), and within the cell's bound D_c + 2 margin, where D_c is the
    smallest distance from any vertex to the farthest corner of that box: every point in
    the cell has a vertex within D_c, so its nearest vertex is no farther from the box.
    Both squared distances are sums of per-axis terms, so they are computed per vertex and
    axis (V, 3, A) and summed by broadcasting over the A^3 neighbouring cells.
    -> vertex (P,), flat cell index (P,) and cell coordinates (P, 3), all long.
    """
    offsets = _cell_offsets(reach, cell_size, verts.device)
    base = torch.floor((verts - origin) / cell_size).long()
    cells = base[:, :, None] + offsets  # (V, 3, A) cell coordinate per axis
    rel_lo = verts[:, :, None] - (origin[:, None] + cells.to(verts.dtype) * cell_size)  # vertex - box lower side
    rel_hi = rel_lo - cell_size
    near = (torch.clamp_min(-rel_lo, 0) + torch.clamp_min(rel_hi, 0)).square()  # per-axis box distance^2
    near = near.masked_fill((cells < 0) | (cells >= dims[:, None]), float("inf"))  # outside the grid
    far = torch.maximum(rel_lo.abs(), rel_hi.abs()).square()  # per-axis farthest-side distance^2
    near_sum = near[:, 0, :, None, None] + near[:, 1, None, :, None] + near[:, 2, None, None, :]  # (V, A, A, A)
    near_sum = near_sum.reshape(-1)
    pair = (near_sum <= reach ** 2).nonzero().squeeze(1)  # flat (vertex, i, j, k) indices
    num = offsets.shape[0]
    vertex = pair // num ** 3
    ijk = torch.stack([pair // num ** 2 % num, pair // num % num, pair % num], dim=-1)  # (P, 3) offset slots
    cell = base.index_select(0, vertex) + (ijk + offsets[0])
    flat = _flat_cell(cell, dims)
    # flat positions in the (V, 3, A) per-axis tables
    axis = (vertex * 3)[:, None] * num + torch.arange(0, 3 * num, num, device=verts.device) + ijk
    far_sum = far.reshape(-1)[axis].sum(dim=-1)
    bound = far_sum.new_full((int(dims.prod()),), float("inf")).scatter_reduce(0, flat, far_sum, "amin")
    tight = near_sum[pair] <= (bound[flat].sqrt() + 2 * margin).square()
    return vertex[tight], flat[tight], cell[tight]


@torch.no_grad()
def build_vertex_grid(vertices: torch.Tensor, max_dist: float, cell_size: float = GRID_CELL_SIZE,
                      dtype: torch.dtype | None = None) -> VertexGrid:
    """Uniform grid over vertices (V, 3) for exact nearest-vertex queries up to max_dist.

    The grid covers the vertices' bounding box grown by max_dist (farther points have no
    vertex in range). Each cell lists the vertices whose distance to the cell's box is at
    most max_dist, pruned by the cell's upper bound on the nearest distance (see
    `_candidate_pairs`): for a point in the cell whose nearest vertex is within max_dist,
    that vertex is in the list. Bounds are widened by a margin far above the float error of
    a point's cell assignment, so the query is exact and not merely approximate.
    Vectorised: V x (2 floor(max_dist / cell_size) + 3)^3 pair tests, one sort, a few scatters.
    dtype: of the stored coordinates (default the vertices' dtype).
    """
    dtype = dtype or vertices.dtype
    verts, centre = _centred_vertices(vertices, dtype)
    lo, hi = verts.amin(dim=0), verts.amax(dim=0)
    scale = float(torch.cat([centre.abs().reshape(-1), hi - lo]).max()) + 1.0
    margin = 1e-3 * cell_size + 64 * torch.finfo(dtype).eps * scale
    reach = float(max_dist) + margin
    origin = lo - reach
    dims = torch.ceil((hi - origin + reach) / cell_size).long().clamp_min(1)
    vertex, flat, cell = _candidate_pairs(verts, origin, dims, cell_size, reach, margin)

    # one row per cell with candidates: sort the pairs by cell (then vertex), number them within the cell
    order = torch.argsort(flat * verts.shape[0] + vertex)
    vertex, flat, cell = vertex[order], flat[order], cell[order]
    cells, counts = torch.unique_consecutive(flat, return_counts=True)
    num_rows = cells.shape[0]
    rows = torch.arange(num_rows, device=verts.device)
    count = torch.cat([counts, counts.new_zeros(1)])
    start = torch.cumsum(count, 0) - count
    row = torch.repeat_interleave(rows, counts)
    slot = torch.arange(flat.shape[0], device=verts.device) - start[row]
    cell_row = torch.full((int(dims.prod()),), num_rows, dtype=torch.long, device=verts.device)
    cell_row[cells] = rows

    rel = verts[vertex] - (origin + (cell.to(dtype) + 0.5) * cell_size)  # from the cell's centre
    coords = torch.zeros(num_rows + 1, max(int(counts.max()) if num_rows else 0, 1), 4, dtype=dtype,
                         device=verts.device)
    coords[..., 3] = float("inf")
    coords[row, slot] = torch.cat([rel, rel.square().sum(dim=-1, keepdim=True)], dim=-1)
    return VertexGrid(centre, origin, float(cell_size), dims, cell_row, count, start, vertex, coords, verts)


def _locate(grid: VertexGrid, pts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centred points (N, 3) -> table row (N,) long (the empty row outside the grid, NaN included)
    and the points relative to their cell's centre (N, 3)."""
    f = (pts - grid.origin) / grid.cell_size
    inside = ((f >= 0) & (f < grid.dims)).all(dim=-1)
    cell = torch.where(inside[:, None], f, torch.zeros_like(f)).floor().long()
    empty_row = grid.count.shape[0] - 1
    row = torch.where(inside, grid.cell_row[_flat_cell(cell, grid.dims)], torch.full_like(cell[:, 0], empty_row))
    local = pts - (grid.origin + (cell.to(pts.dtype) + 0.5) * grid.cell_size)
    return row, local


@torch.no_grad()
def query_vertex_grid(grid: VertexGrid, points: torch.Tensor, max_dist: float,
                      chunk_size: int = 8192) -> torch.Tensor:
    """Nearest vertex of every point (N, 3) within max_dist -> (N,) long, -1 where none.

    max_dist must not exceed the one the grid was built with. Points are sorted by
    (candidate count, row) so a chunk of chunk_size points compares against only as
    many candidates as its longest list (K per chunk, not the grid's K), neighbouring
    points share rows, and points in empty cells cost nothing. Per chunk: one gather of
    (n, K, 4) candidates, one batched product |v|^2 - 2 p.v in cell-centred coordinates
    (|v| <= max_dist + half a cell diagonal, so little cancellation), one argmin. Like the
    brute force, this needs full float32 matrix products (TF32 off, torch's default).
    """
    # centred as in the brute force, so equal indices give equal validity flags
    pts = points.detach().to(grid.coords.dtype) - grid.centre
    row, local = _locate(grid, pts)
    count = grid.count[row]
    order = torch.argsort(count * grid.count.shape[0] + row)
    sorted_count = count[order]
    start = int((sorted_count == 0).sum())
    stops = list(range(start + chunk_size, pts.shape[0], chunk_size)) + [pts.shape[0]]
    widths = sorted_count[torch.tensor(stops, device=pts.device) - 1].tolist() if start < pts.shape[0] else []
    query = torch.cat([-2 * local, torch.ones_like(local[:, :1])], dim=-1)[..., None]  # (N, 4, 1)
    index = torch.full((pts.shape[0],), -1, dtype=torch.long, device=pts.device)
    for stop, width in zip(stops, widths):
        chosen = order[start:stop]
        rows = row[chosen]
        score = torch.bmm(grid.coords[:, :width][rows], query[chosen])[..., 0]  # (n, K)
        index[chosen] = grid.candidates[grid.start[rows] + score.argmin(dim=1)]
        start = stop
    return _drop_far(index, pts, grid.vertices, max_dist)


def grid_nearest_vertex_index(points: torch.Tensor, vertices: torch.Tensor, max_dist: float,
                              cell_size: float | None = None, chunk_size: int = 8192) -> torch.Tensor:
    """`nearest_vertex_index` through a `VertexGrid` built for this call (exact; max_dist required)."""
    if points.is_cuda:  # fewer, larger chunks; at most chunk_size x K x 16 bytes each
        chunk_size = max(chunk_size, 131072)
    grid = build_vertex_grid(vertices, max_dist, cell_size or GRID_CELL_SIZE, dtype=points.dtype)
    return query_vertex_grid(grid, points, max_dist, chunk_size)


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


def apply_affine(transforms: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """transforms (..., 4, 4) applied to points (..., 3) -> (..., 3)."""
    return (transforms[..., :3, :3] @ points[..., None])[..., 0] + transforms[..., :3, 3]


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
    def from_body_model(cls, body_model, **kwargs) -> "SkinningDeformer":
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

    forward = inverse

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
