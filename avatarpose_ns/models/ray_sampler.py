"""Per-person ray samples: ray / posed-bounding-box intersection and stratified sampling.

Every ray is intersected with each person's posed bounding box (the posed SMPL
vertices padded by a margin, 0.1 m by default); samples are taken only inside that
interval, separately per person, and returned as padded tensors with a person axis.
The layered compositor later merges the people's samples on a ray by depth.

Sample count and spacing (the choice made here): each (ray, person) interval of
length D = t_far - t_near gets

    n = clamp(floor(D / min_step), 1, num_samples)

equal bins of width D / n >= min_step (5 mm), one sample per bin (jittered
uniformly inside its bin in training, the bin midpoint at eval). A short interval
therefore uses fewer than `num_samples` slots and the rest are padding: they are
flagged invalid, sit at t_far with delta 0 (so each person's t stays sorted and an
invalid sample has zero opacity whatever density it is given). A long interval
uses all `num_samples` slots with spacing D / num_samples (> min_step).
Non-hit rays: all slots invalid, t = t_near = near_plane, delta 0.

With a `BodyShellGrid` (the space near each posed body, see `body_shell`),
`shell_samples` marches each (ray, person) interval in steps of min_step and keeps
only the candidates inside that person's shell: the samples go where a body can be.
When more than num_samples candidates are inside, every k-th is kept
(k = ceil(inside / num_samples)) and each stands for k steps.

Torch only. Shapes: R rays, L people, S = num_samples slots per (ray, person).
"""

from __future__ import annotations

from dataclasses import dataclass

import math

import torch

from avatarpose_ns.models.body_shell import BodyShellGrid

DEFAULT_MARGIN = 0.1  # metres around the posed vertices
DEFAULT_MIN_STEP = 0.005  # metres between samples at least
DEFAULT_NUM_SAMPLES = 256  # released configuration's cap per ray and person


def ray_aabb(origins: torch.Tensor, directions: torch.Tensor, box_min: torch.Tensor, box_max: torch.Tensor,
             near_plane: float = 0.0, far_plane: float | None = None) -> tuple[torch.Tensor, torch.Tensor,
                                                                                torch.Tensor]:
    """Slab-method intersection of rays with axis-aligned boxes.

    origins, directions (R, 3) (directions need not be unit: t is in units of
    |direction|); box_min, box_max (3,) or (B..., 3), e.g. (L, 3) for L people.
    Returns t_near, t_far (R, B...) and hit (R, B...) bool. Rays starting inside a
    box get t_near = near_plane; t_near is never below near_plane, t_far never above
    far_plane (if given). A ray misses when the clipped interval is empty
    (t_far <= t_near) or the box is behind it; missed entries get
    t_near = t_far = near_plane. Zero direction components are handled per axis
    (the ray is inside that slab for all t or for none): no NaN, no inf in the output.
    """
    if origins.shape[-1] != 3 or directions.shape != origins.shape or origins.ndim != 2:
        raise ValueError(f"origins and directions must be (R, 3), got {tuple(origins.shape)}, "
                         f"{tuple(directions.shape)}")
    box_min = torch.as_tensor(box_min, dtype=origins.dtype, device=origins.device)
    box_max = torch.as_tensor(box_max, dtype=origins.dtype, device=origins.device)
    box_shape = torch.broadcast_shapes(box_min.shape, box_max.shape)[:-1]
    extra = (1,) * len(box_shape)
    o = origins.reshape(origins.shape[0], *extra, 3)  # (R, 1.., 3)
    d = directions.reshape(directions.shape[0], *extra, 3)
    lo, hi = box_min[None], box_max[None]  # (1, B.., 3)
    parallel = d == 0
    safe_d = torch.where(parallel, torch.ones_like(d), d)
    t0 = (lo - o) / safe_d
    t1 = (hi - o) / safe_d
    inf = torch.full_like(t0, float("inf"))
    in_slab = (o >= lo) & (o <= hi)
    t_enter = torch.where(parallel, torch.where(in_slab, -inf, inf), torch.minimum(t0, t1))
    t_exit = torch.where(parallel, torch.where(in_slab, inf, -inf), torch.maximum(t0, t1))
    t_near = t_enter.amax(dim=-1).clamp_min(near_plane)
    t_far = t_exit.amin(dim=-1)
    if far_plane is not None:
        t_far = t_far.clamp_max(far_plane)
    hit = (t_far > t_near) & torch.isfinite(t_far)
    fill = torch.full_like(t_near, float(near_plane))
    return torch.where(hit, t_near, fill), torch.where(hit, t_far, fill), hit


@torch.no_grad()
def posed_bounding_boxes(posed_vertices: torch.Tensor, margin: float = DEFAULT_MARGIN) -> tuple[torch.Tensor,
                                                                                              torch.Tensor]:
    """Axis-aligned boxes around posed bodies. posed_vertices (L, V, 3) or (V, 3) ->
    box_min, box_max (L, 3) or (3,), padded by `margin` metres (no gradient)."""
    return posed_vertices.amin(dim=-2) - margin, posed_vertices.amax(dim=-2) + margin


@dataclass
class PersonRaySamples:
    """Padded per-person samples. R rays, L people, S slots."""

    t: torch.Tensor  # (R, L, S) distance along the ray (units of |direction|), sorted per (ray, person)
    deltas: torch.Tensor  # (R, L, S) bin width in t units (x |direction| for metres); 0 for invalid slots
    positions: torch.Tensor  # (R, L, S, 3) world points origin + t * direction
    valid: torch.Tensor  # (R, L, S) bool
    t_near: torch.Tensor  # (R, L)
    t_far: torch.Tensor  # (R, L)
    hit: torch.Tensor  # (R, L) bool
    num_valid: torch.Tensor  # (R, L) long: the first num_valid slots are samples

    @property
    def num_people(self) -> int:
        return int(self.t.shape[1])

    def per_person(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions (L, R*S, 3) and valid (L, R*S), person-major, for the deformer's
        `inverse_multi`. `from_per_person` puts per-sample results back."""
        num_rays, num_people, num_slots = self.valid.shape
        positions = self.positions.permute(1, 0, 2, 3).reshape(num_people, num_rays * num_slots, 3)
        return positions, self.valid.permute(1, 0, 2).reshape(num_people, num_rays * num_slots)

    def from_per_person(self, values: torch.Tensor) -> torch.Tensor:
        """(L, R*S, ...) -> (R, L, S, ...), the inverse of `per_person`'s layout."""
        num_rays, num_people, num_slots = self.valid.shape
        values = values.reshape(num_people, num_rays, num_slots, *values.shape[2:])
        return values.transpose(0, 1)

    def with_valid(self, valid: torch.Tensor) -> PersonRaySamples:
        """A copy with a narrower valid mask (e.g. after deformer cutoff or occupancy
        pruning); deltas of newly invalid samples are zeroed too."""
        valid = valid & self.valid
        return PersonRaySamples(self.t, torch.where(valid, self.deltas, torch.zeros_like(self.deltas)),
                                self.positions, valid, self.t_near, self.t_far, self.hit, self.num_valid)


def _bin_offsets(shape: tuple[int, ...], training: bool, generator: torch.Generator | None,
                 like: torch.Tensor) -> torch.Tensor:
    """Where in its bin each sample sits, in [0, 1): uniform in training (drawn on the generator's
    device), 0.5 (the bin's middle) at eval. On ``like``'s device, in its dtype."""
    if not training:
        return torch.full(shape, 0.5, device=like.device, dtype=like.dtype)
    device = generator.device if generator is not None else like.device
    return torch.rand(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


def stratified_samples(origins: torch.Tensor, directions: torch.Tensor, t_near: torch.Tensor, t_far: torch.Tensor,
                       hit: torch.Tensor, num_samples: int = DEFAULT_NUM_SAMPLES,
                       min_step: float = DEFAULT_MIN_STEP, training: bool = True,
                       generator: torch.Generator | None = None) -> PersonRaySamples:
    """Stratified samples in [t_near, t_far] per (ray, person); see the module docstring.

    origins, directions (R, 3); t_near, t_far, hit (R, L) from `ray_aabb`.
    training: jitter inside each bin (torch.rand with `generator`); else midpoints.
    min_step is in the units of t (metres for unit directions).
    """
    if num_samples < 1:
        raise ValueError("num_samples must be >= 1")
    num_rays, num_people = t_near.shape
    length = torch.where(hit, t_far - t_near, torch.zeros_like(t_near))
    if min_step > 0:
        count = torch.floor(length / min_step).clamp(1, num_samples).long()
    else:
        count = torch.full_like(length, num_samples, dtype=torch.long)
    count = torch.where(hit, count, torch.zeros_like(count))
    step = length / count.clamp_min(1)  # (R, L)
    slot = torch.arange(num_samples, device=t_near.device)
    valid = slot[None, None, :] < count[..., None]  # (R, L, S)
    offset = _bin_offsets((num_rays, num_people, num_samples), training, generator, t_near)
    t_in = t_near[..., None] + (slot.to(t_near.dtype) + offset) * step[..., None]
    t = torch.where(valid, t_in, t_far[..., None].expand_as(t_in))
    t = torch.minimum(t, t_far[..., None])  # guard float round-up at the last bin
    deltas = torch.where(valid, step[..., None].expand_as(t), torch.zeros_like(t))
    positions = origins[:, None, None, :] + t[..., None] * directions[:, None, None, :]
    return PersonRaySamples(t, deltas, positions, valid, t_near, t_far, hit, count)


def shell_samples(origins: torch.Tensor, directions: torch.Tensor, t_near: torch.Tensor, t_far: torch.Tensor,
                  hit: torch.Tensor, shell: BodyShellGrid, num_samples: int = DEFAULT_NUM_SAMPLES,
                  min_step: float = DEFAULT_MIN_STEP, training: bool = True,
                  generator: torch.Generator | None = None) -> PersonRaySamples:
    """Samples of each (ray, person) interval that fall inside that person's body shell.

    Candidates at t_near + (c + u) * min_step, c = 0, 1, ... (u uniform in training, 0.5
    at eval); the ones inside the shell are kept in depth order, every k-th when more than
    num_samples are, with delta k * min_step. Same output layout as `stratified_samples`
    (valid slots first, padding at t_far with delta 0). min_step in the units of t.
    """
    if num_samples < 1 or min_step <= 0:
        raise ValueError("num_samples must be >= 1 and min_step > 0")
    num_rays, num_people = t_near.shape
    device, dtype = t_near.device, t_near.dtype
    length = torch.where(hit, t_far - t_near, torch.zeros_like(t_near))
    num_candidates = max(1, math.ceil(float(length.max()) / min_step)) if length.numel() else 1
    candidate = torch.arange(num_candidates, device=device, dtype=dtype)
    offset = _bin_offsets((num_rays, num_people, num_candidates), training, generator, t_near)
    t_candidate = t_near[..., None] + (candidate + offset) * min_step  # (R, L, C)
    in_interval = hit[..., None] & (t_candidate < t_far[..., None])
    points = origins[:, None, None, :] + t_candidate[..., None] * directions[:, None, None, :]
    inside = shell.query(points) & in_interval  # (R, L, C)
    num_inside = inside.sum(dim=-1)  # (R, L)
    stride = torch.div(num_inside + num_samples - 1, num_samples, rounding_mode="floor").clamp_min(1)
    rank = inside.cumsum(dim=-1) - 1
    keep = inside & (rank % stride[..., None] == 0)
    count = torch.div(num_inside + stride - 1, stride, rounding_mode="floor")  # kept per (ray, person)
    ray_person = keep.nonzero()  # (K, 3): ray, person, candidate, in depth order per (ray, person)
    slot = torch.div(rank[keep], stride[ray_person[:, 0], ray_person[:, 1]], rounding_mode="floor")
    flat = (ray_person[:, 0] * num_people + ray_person[:, 1]) * num_samples + slot
    t = t_far[..., None].expand(num_rays, num_people, num_samples).clone()
    t.view(-1)[flat] = t_candidate[keep]
    slots = torch.arange(num_samples, device=device)
    valid = slots[None, None, :] < count[..., None]
    deltas = torch.where(valid, (stride.to(dtype) * min_step)[..., None].expand_as(t), torch.zeros_like(t))
    positions = origins[:, None, None, :] + t[..., None] * directions[:, None, None, :]
    return PersonRaySamples(t, deltas, positions, valid, t_near, t_far, hit & (count > 0), count)


class PersonRaySampler:
    """Box intersection + stratified sampling for L people with one configuration.

    num_samples: slots per (ray, person) (released: up to 256); min_step: minimum
    spacing (5 mm); margin: padding of the posed boxes; near_plane / far_plane clip t.
    """

    def __init__(self, num_samples: int = DEFAULT_NUM_SAMPLES, min_step: float = DEFAULT_MIN_STEP,
                 margin: float = DEFAULT_MARGIN, near_plane: float = 0.0, far_plane: float | None = None) -> None:
        self.num_samples = int(num_samples)
        self.min_step = float(min_step)
        self.margin = float(margin)
        self.near_plane = float(near_plane)
        self.far_plane = far_plane

    def boxes(self, posed_vertices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """posed_vertices (L, V, 3) -> box_min, box_max (L, 3)."""
        return posed_bounding_boxes(posed_vertices, self.margin)

    def __call__(self, origins: torch.Tensor, directions: torch.Tensor, box_min: torch.Tensor,
                 box_max: torch.Tensor, training: bool = True,
                 generator: torch.Generator | None = None, shell: BodyShellGrid | None = None) -> PersonRaySamples:
        """origins, directions (R, 3); box_min, box_max (L, 3) -> PersonRaySamples (R, L, S).
        With a shell, samples only inside it (`shell_samples`); else stratified over the box."""
        t_near, t_far, hit = ray_aabb(origins, directions, box_min, box_max, self.near_plane, self.far_plane)
        if shell is not None:
            return shell_samples(origins, directions, t_near, t_far, hit, shell, self.num_samples, self.min_step,
                                 training, generator)
        return stratified_samples(origins, directions, t_near, t_far, hit, self.num_samples, self.min_step,
                                  training, generator)
