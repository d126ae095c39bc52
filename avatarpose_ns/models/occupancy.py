"""Per-person occupancy grids in canonical space, for pruning ray samples.

Each person has a `resolution`^3 grid (64^3 in the released configuration) over
their canonical bounding cube (centre + half-size; see `canonical_bounding_cube`).
Every `update_every` steps (20) the caller runs `update(density_fn, step)`: the
density is evaluated at one jittered point per cell and the stored value becomes
max(decay * old, new) (EMA decay 0.8); a cell is occupied when its value exceeds
min(threshold, mean of that person's grid) (threshold 0.01).

The stored values start at `init_value` (1.0), so every cell starts occupied and an
empty cell is only pruned once its value has decayed below the threshold
(0.8^k < 0.01 after 21 updates, ~420 steps): the field has time to learn before
anything is pruned.

Everything lives in buffers (saved in checkpoints): centre (L, 3), half_size (L,),
values (L, R, R, R), occupied (L, R, R, R) bool, num_updates () long.
Cell (i, j, k) of person l covers x in [c - h + i s, c - h + (i + 1) s] (s = 2h / R),
i along x, j along y, k along z. Points outside the cube are unoccupied.

Torch only. Shapes: L people, R resolution, M points.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from avatarpose_ns.models.person_query import query_one_person

DEFAULT_RESOLUTION = 64
DEFAULT_DECAY = 0.8
DEFAULT_THRESHOLD = 0.01
DEFAULT_UPDATE_EVERY = 20
DEFAULT_CUBE_SCALE = 1.2


@torch.no_grad()
def canonical_bounding_cube(canonical_vertices: torch.Tensor | np.ndarray, scale: float = DEFAULT_CUBE_SCALE
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Cube around canonical bodies: centre of the vertices' box and `scale` x the
    largest half-extent. canonical_vertices (L, V, 3) or (V, 3) (integer arrays become
    float32) -> centre (L, 3) or (3,), half_size (L,) or ()."""
    canonical_vertices = torch.as_tensor(canonical_vertices)
    if not canonical_vertices.is_floating_point():
        canonical_vertices = canonical_vertices.to(torch.float32)
    lo, hi = canonical_vertices.amin(dim=-2), canonical_vertices.amax(dim=-2)
    return (lo + hi) / 2, scale * ((hi - lo) / 2).amax(dim=-1)


class OccupancyGrid(torch.nn.Module):
    """L canonical-space occupancy grids (one per person).

    centres (L, 3), half_sizes (L,) (or a float for all); resolution R; decay (EMA);
    threshold; update_every (steps between updates when `update` gets a step);
    init_value (start value of every cell: > threshold means all occupied at first).
    """

    def __init__(self, centres: torch.Tensor, half_sizes: torch.Tensor | float,
                 resolution: int = DEFAULT_RESOLUTION, decay: float = DEFAULT_DECAY,
                 threshold: float = DEFAULT_THRESHOLD, update_every: int = DEFAULT_UPDATE_EVERY,
                 init_value: float = 1.0) -> None:
        super().__init__()
        centres = torch.as_tensor(centres, dtype=torch.float32).reshape(-1, 3)
        num_people = centres.shape[0]
        half_sizes = torch.as_tensor(half_sizes, dtype=torch.float32).reshape(-1).expand(num_people).clone()
        if (half_sizes <= 0).any():
            raise ValueError("half sizes must be positive")
        self.resolution = int(resolution)
        self.decay = float(decay)
        self.threshold = float(threshold)
        self.update_every = int(update_every)
        self.init_value = float(init_value)
        shape = (num_people,) + (self.resolution,) * 3
        self.register_buffer("centre", centres.clone())
        self.register_buffer("half_size", half_sizes)
        self.register_buffer("values", torch.full(shape, self.init_value))
        self.register_buffer("occupied", torch.full(shape, self.init_value > self.threshold, dtype=torch.bool))
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    @property
    def num_people(self) -> int:
        return int(self.centre.shape[0])

    @property
    def cell_size(self) -> torch.Tensor:
        """(L,) edge length of a cell."""
        return 2 * self.half_size / self.resolution

    def cell_centres(self) -> torch.Tensor:
        """(L, R^3, 3) centres of all cells, flattened in (i, j, k) order."""
        res = self.resolution
        ticks = (torch.arange(res, device=self.centre.device, dtype=self.centre.dtype) + 0.5) / res * 2 - 1
        grid = torch.stack(torch.meshgrid(ticks, ticks, ticks, indexing="ij"), dim=-1).reshape(-1, 3)  # [-1, 1]
        return self.centre[:, None, :] + grid[None] * self.half_size[:, None, None]

    def _cell_index(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """points (L, M, 3) -> flat cell index (L, M) (0 where outside) and inside mask (L, M)."""
        res = self.resolution
        unit = (points - (self.centre - self.half_size[:, None])[:, None, :]) / (2 * self.half_size)[:, None, None]
        ijk = torch.floor(unit * res)
        inside = ((ijk >= 0) & (ijk < res)).all(dim=-1)
        ijk = ijk.clamp(0, res - 1).long()
        flat = (ijk[..., 0] * res + ijk[..., 1]) * res + ijk[..., 2]
        return torch.where(inside, flat, torch.zeros_like(flat)), inside

    @torch.no_grad()
    def query(self, points_canonical: torch.Tensor) -> torch.Tensor:
        """points_canonical (L, ..., 3), person l's points in person l's canonical space
        -> occupied (L, ...) bool; False outside the cube."""
        if points_canonical.shape[0] != self.num_people or points_canonical.shape[-1] != 3:
            raise ValueError(f"points must be (L={self.num_people}, ..., 3), got {tuple(points_canonical.shape)}")
        lead = points_canonical.shape[:-1]
        points = points_canonical.reshape(self.num_people, -1, 3).to(self.centre.dtype)
        flat, inside = self._cell_index(points)
        occupied = torch.gather(self.occupied.reshape(self.num_people, -1), 1, flat) & inside
        return occupied.reshape(lead)

    def query_person(self, points_canonical: torch.Tensor, person: int) -> torch.Tensor:
        """points (K, 3) in person `person`'s canonical space -> (K,) bool occupied."""
        return query_one_person(self.query, self.num_people, points_canonical, person)

    def prune(self, points_canonical: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """valid (L, ...) narrowed to samples whose canonical point (L, ..., 3) is in an occupied cell."""
        return valid & self.query(points_canonical)

    @torch.no_grad()
    def update(self, density_fn: Callable[[torch.Tensor], torch.Tensor], step: int | None = None,
               jitter: bool = True, chunk_size: int = 65536, generator: torch.Generator | None = None) -> bool:
        """Refresh the grid from the current fields.

        density_fn(points (L, M, 3) canonical, person l's points for person l) ->
        (L, M) non-negative density (or opacity; the threshold applies to whatever it
        returns). With a step, runs only when step % update_every == 0; returns
        whether it ran. One point per cell, uniformly jittered inside the cell (cell
        centres when jitter is False), evaluated in chunks of chunk_size per person.
        """
        if step is not None and step % self.update_every != 0:
            return False
        centres = self.cell_centres()  # (L, R^3, 3)
        if jitter:
            device = generator.device if generator is not None else centres.device
            noise = torch.rand(centres.shape, generator=generator, device=device, dtype=centres.dtype)
            centres = centres + (noise.to(centres.device) - 0.5) * self.cell_size[:, None, None]
        new = torch.cat([density_fn(centres[:, start:start + chunk_size]).reshape(self.num_people, -1)
                         for start in range(0, centres.shape[1], chunk_size)], dim=1)
        new = torch.nan_to_num(new.to(self.values.dtype), nan=0.0, posinf=1e10).clamp_min(0)
        values = torch.maximum(self.values.reshape(self.num_people, -1) * self.decay, new)
        threshold = values.mean(dim=1, keepdim=True).clamp_max(self.threshold)  # (L, 1)
        self.values.copy_(values.reshape(self.values.shape))
        self.occupied.copy_((values > threshold).reshape(self.occupied.shape))
        self.num_updates += 1
        return True

    @torch.no_grad()
    def keep_cells(self, cells: torch.Tensor) -> None:
        """Mark cells (L, R^3) bool (flat, in `cell_centres` order) occupied, whatever the fields say."""
        occupied = self.occupied.reshape(self.num_people, -1)
        occupied |= cells.to(occupied.device).reshape(occupied.shape)

    def occupied_fraction(self) -> torch.Tensor:
        """(L,) share of occupied cells per person."""
        return self.occupied.reshape(self.num_people, -1).float().mean(dim=1)
