"""Layered volume rendering of several people (AvatarPose eq. 1-4).

Every person's field is sampled separately along a ray (inside that person's bounding
box); the samples of all people on a ray are merged, sorted by depth and alpha-composited
once. Each sample keeps the id of the person it came from, so the composite weight of a
ray splits exactly into per-person opacities alpha_l (eq. 4) and per-person layer images.

Pure functions over batched tensors; torch only. Shapes use
    R: rays, L: people, S: padded samples per person and ray, N = L * S.

Conventions
- ``t`` are sample depths (distance along the ray in the ray direction's units), ``deltas``
  the interval length each sample stands for (its own person's stratified spacing; with
  interleaved people the intervals of different people overlap, as in layered rendering).
- Invalid (padding) samples carry ``valid = False``; their density, colour, depth and delta
  are ignored (treated as zero density) whatever values they hold, NaN or inf included,
  and they sort after every valid sample.
- alpha_i = 1 - exp(-sigma_i delta_i), T_i = exp(-sum_{j<i} sigma_j delta_j) (exclusive,
  i.e. prod_{j<i} (1 - alpha_j)), w_i = T_i alpha_i.
- Depth is the expected depth normalised by the accumulation, sum_i w_i t_i / sum_i w_i;
  rays whose accumulation is below ``empty_threshold`` get the ``far`` value instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

Background = torch.Tensor | float | tuple | list | None


@dataclass
class LayeredRender:
    """Output of :func:`composite_layers`. R rays, L people, S samples per person, N = L * S."""

    rgb: torch.Tensor
    """(R, 3) composite colour, sum_i w_i c_i + (1 - accumulation) * background."""
    accumulation: torch.Tensor
    """(R,) total opacity sum_i w_i (eq. 3); equals person_accumulation.sum(-1)."""
    depth: torch.Tensor
    """(R,) expected depth normalised by the accumulation; ``far`` on empty rays."""
    person_accumulation: torch.Tensor
    """(R, L) per-person opacity alpha_l = sum_i w_i [person_i == l] (eq. 4)."""
    person_rgb: torch.Tensor
    """(R, L, 3) per-person layer image sum_i w_i [person_i == l] c_i, before background."""
    sample_weights: torch.Tensor
    """(R, L, S) w_i in the input (per-person, unsorted) layout; 0 for invalid samples."""
    weights: torch.Tensor
    """(R, N) w_i in depth order; invalid samples last with weight 0."""
    person_ids: torch.Tensor
    """(R, N) long, person of each sorted sample; -1 for invalid samples."""
    t_sorted: torch.Tensor
    """(R, N) sorted depths; 0 for invalid samples."""
    valid_sorted: torch.Tensor
    """(R, N) bool, validity of each sorted sample."""
    order: torch.Tensor
    """(R, N) long, sorted position k holds flat input sample order[:, k] (index l * S + s)."""

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def replace_background(rgb: torch.Tensor, accumulation: torch.Tensor, rendered_over: torch.Tensor,
                       new_background: torch.Tensor) -> torch.Tensor:
    """A composite re-made over another background, without rendering again.

    The composite is linear in the background, sum_i w_i c_i + (1 - accumulation) * b, so
    rgb (R, 3) rendered over `rendered_over` ((3,) or (R, 3)) becomes, over `new_background`
    ((3,) or (R, 3)), rgb + (1 - accumulation) * (new - old); accumulation (R,).
    """
    return rgb + (1.0 - accumulation[..., None]) * (new_background - rendered_over)


def _background(background: Background, like: torch.Tensor) -> torch.Tensor:
    """Background colour as a tensor broadcastable to (R, 3); white when None."""
    if background is None:
        return like.new_ones(3)
    if isinstance(background, torch.Tensor):
        return background.to(device=like.device, dtype=like.dtype)
    if isinstance(background, (int, float)):
        return like.new_full((3,), float(background))
    return torch.as_tensor(background, device=like.device, dtype=like.dtype)


def gather_sorted(values: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Bring any per-sample quantity into the composite's depth order.

    values (R, L, S, *F) in the input layout, order (R, N) from :class:`LayeredRender`
    -> (R, N, *F).
    """
    num_rays, num = order.shape
    flat = values.reshape(num_rays, num, *values.shape[3:])
    index = order.reshape(num_rays, num, *([1] * (flat.dim() - 2))).expand(num_rays, num, *flat.shape[2:])
    return flat.gather(1, index)


def composite_layers(
    t: torch.Tensor,
    deltas: torch.Tensor,
    density: torch.Tensor,
    rgb: torch.Tensor,
    valid: torch.Tensor | None = None,
    background: Background = None,
    far: float | torch.Tensor | None = None,
    empty_threshold: float = 1e-6,
) -> LayeredRender:
    """Merge all people's samples on each ray, sort by depth and composite once.

    Args:
        t: (R, L, S) sample depths.
        deltas: (R, L, S) interval lengths.
        density: (R, L, S) sigma >= 0.
        rgb: (R, L, S, 3) colours.
        valid: (R, L, S) bool, or None for all valid.
        background: (3,) or (R, 3) tensor, a scalar, or None for white.
        far: depth reported for empty rays (accumulation < empty_threshold): a float, an (R,)
            tensor, or None for the largest valid sample depth in the batch (0 if none). A
            model should pass its far plane so that chunked renders agree.
        empty_threshold: accumulation below which a ray counts as empty for the depth.

    Differentiable with respect to density, rgb, deltas and background, and t through the
    depth (the sort order itself is piecewise constant). No Python loop over rays or people.
    """
    if t.dim() != 3:
        raise ValueError(f"t must be (R, L, S), got {tuple(t.shape)}")
    num_rays, num_people, num_samples = t.shape
    num = num_people * num_samples
    if rgb.shape != (num_rays, num_people, num_samples, 3):
        raise ValueError(f"rgb must be (R, L, S, 3) = {(num_rays, num_people, num_samples, 3)}, got {tuple(rgb.shape)}")
    if valid is None:
        valid = torch.ones(t.shape, dtype=torch.bool, device=t.device)
    valid = valid.to(torch.bool)

    zero = t.new_zeros(())
    t_clean = torch.where(valid, t, zero)
    sigma_clean = torch.where(valid, density, zero)
    delta_clean = torch.where(valid, deltas, zero)
    rgb_clean = torch.where(valid[..., None], rgb, zero)

    # Sort the merged samples; invalid ones last (stable, so ties keep person-major order).
    key = torch.where(valid, t.detach(), torch.full_like(t, float("inf"))).reshape(num_rays, num)
    _, order = torch.sort(key, dim=-1, stable=True)
    valid_flat = valid.reshape(num_rays, num)
    valid_sorted = valid_flat.gather(1, order)
    tau_sorted = (sigma_clean * delta_clean).reshape(num_rays, num).gather(1, order)

    # Exclusive transmittance T_i = exp(-sum_{j<i} tau_j), alpha_i = 1 - exp(-tau_i).
    cumulative = torch.cumsum(tau_sorted, dim=-1)
    exclusive = torch.cat([cumulative.new_zeros(num_rays, 1), cumulative[:, :-1]], dim=-1)
    weights = torch.exp(-exclusive) * (-torch.expm1(-tau_sorted))

    # Weights back to the per-person layout (order is a permutation of 0..N-1).
    sample_weights = torch.zeros_like(weights).scatter(1, order, weights).reshape(num_rays, num_people, num_samples)

    person_accumulation = sample_weights.sum(dim=-1)
    person_rgb = (sample_weights[..., None] * rgb_clean).sum(dim=2)
    accumulation = person_accumulation.sum(dim=-1)

    bg = _background(background, rgb)
    composite_rgb = person_rgb.sum(dim=1) + (1.0 - accumulation)[:, None] * bg

    if far is None:
        # invalid samples hold 0 in t_clean, so a batch without valid samples gives 0
        far_value = t_clean.detach().amax() if t_clean.numel() else t.new_zeros(())
    else:
        far_value = torch.as_tensor(far, dtype=t.dtype, device=t.device)
    depth_sum = (sample_weights * t_clean).sum(dim=(1, 2))
    non_empty = accumulation > empty_threshold
    depth = torch.where(non_empty, depth_sum / torch.where(non_empty, accumulation, torch.ones_like(accumulation)), far_value)

    person_of_sample = torch.arange(num_people, device=t.device).repeat_interleave(num_samples).expand(num_rays, num)
    person_ids = torch.where(valid_sorted, person_of_sample.gather(1, order), torch.full_like(order, -1))
    t_sorted = t_clean.reshape(num_rays, num).gather(1, order)

    return LayeredRender(
        rgb=composite_rgb,
        accumulation=accumulation,
        depth=depth,
        person_accumulation=person_accumulation,
        person_rgb=person_rgb,
        sample_weights=sample_weights,
        weights=weights,
        person_ids=person_ids,
        t_sorted=t_sorted,
        valid_sorted=valid_sorted,
        order=order,
    )


def composite_single(
    t: torch.Tensor,
    deltas: torch.Tensor,
    density: torch.Tensor,
    rgb: torch.Tensor,
    valid: torch.Tensor | None = None,
    background: Background = None,
    far: float | torch.Tensor | None = None,
    empty_threshold: float = 1e-6,
) -> LayeredRender:
    """One person (L = 1): t, deltas, density (R, S), rgb (R, S, 3), valid (R, S) or None.

    Identical to :func:`composite_layers` with a singleton person axis; the per-person
    outputs keep that axis ((R, 1), (R, 1, 3), (R, 1, S)).
    """
    return composite_layers(
        t[:, None],
        deltas[:, None],
        density[:, None],
        rgb[:, None],
        None if valid is None else valid[:, None],
        background=background,
        far=far,
        empty_threshold=empty_threshold,
    )


def instance_map(person_accumulation: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Per-ray person id: argmax_l alpha_l, or -1 where max_l alpha_l < threshold.

    person_accumulation (..., L) -> (...) long.
    """
    best, index = person_accumulation.max(dim=-1)
    return torch.where(best >= threshold, index, torch.full_like(index, -1))
