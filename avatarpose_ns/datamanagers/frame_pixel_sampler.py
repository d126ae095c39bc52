"""Pick one frame per step and draw pixels from all its views: inside the people's
mask, in a band around its edge, and anywhere.

One frame per step means every ray of a batch sees the same posed bodies, so the
model poses each person once per step. The mix of inside / edge / anywhere is
AvatarPose's: most rays land on the people, enough land on the silhouette edge
to shape it, and a few anywhere keep empty space empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from nerfstudio.data.pixel_samplers import PixelSampler, PixelSamplerConfig


@dataclass
class FramePixelSamplerConfig(PixelSamplerConfig):
    _target: type = field(default_factory=lambda: FramePixelSampler)
    inside_fraction: float = 0.6
    """share of rays drawn inside the foreground mask"""
    edge_fraction: float = 0.3
    """share of rays drawn in a band around the mask's edge"""
    edge_band_px: int = 48
    """width of that band in pixels (AvatarPose: 48 at 470x640)"""


def edge_band(mask: torch.Tensor, width: int) -> torch.Tensor:
    """Pixels within `width` of the mask but outside it. (N, H, W) bool -> (N, H, W) bool"""
    width = max(int(width), 1)
    grown = F.max_pool2d(mask[:, None].float(), kernel_size=2 * width + 1, stride=1, padding=width)[:, 0] > 0
    return grown & ~mask


def draw_pixels(candidates: torch.Tensor, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """`count` random (image, y, x) indices among the True pixels, with replacement. (N, H, W) -> (count, 3)"""
    where = torch.nonzero(candidates, as_tuple=False)
    if len(where) == 0 or count == 0:
        return torch.zeros((0, 3), dtype=torch.long)
    pick = torch.randint(len(where), (count,), generator=generator)
    return where[pick]


class FramePixelSampler(PixelSampler):
    """Samples one frame's views. `image_frames[i]` is the frame position of dataset image i."""

    config: FramePixelSamplerConfig

    def __init__(self, config: FramePixelSamplerConfig, image_frames: torch.Tensor | None = None, **kwargs) -> None:
        super().__init__(config, **kwargs)
        self.image_frames = image_frames
        self.set_fractions(config.inside_fraction, config.edge_fraction)
        self._bands: dict[tuple[int, ...], torch.Tensor] = {}  # edge bands per set of images (masks do not change)

    def set_fractions(self, inside: float, edge: float) -> None:
        """Shares of rays inside the mask and in its edge band (the rest anywhere); phases change them."""
        if inside < 0 or edge < 0 or inside + edge > 1:
            raise ValueError(f"inside ({inside}) and edge ({edge}) fractions must be >= 0 and sum to at most 1")
        self.inside_fraction, self.edge_fraction = float(inside), float(edge)

    def collate_image_dataset_batch(self, batch: dict, num_rays_per_batch: int, keep_full_image: bool = False):
        images = batch["image"]
        num_images, height, width, _ = images.shape
        image_idx = batch["image_idx"].cpu()
        local = torch.arange(num_images)
        if self.image_frames is not None:
            frames = self.image_frames[image_idx]
            frame = frames[torch.randint(num_images, (1,))]
            local = local[frames == frame]
        if "mask" in batch:
            mask = batch["mask"][local][..., 0].bool().cpu()
        else:
            mask = torch.ones((len(local), height, width), dtype=torch.bool)
        inside = int(round(num_rays_per_batch * self.inside_fraction)) if mask.any() else 0
        edge = int(round(num_rays_per_batch * self.edge_fraction)) if mask.any() else 0
        key = tuple(image_idx[local].tolist())
        band = self._bands.get(key)
        if band is None:
            band = self._bands[key] = edge_band(mask, self.config.edge_band_px)
        picks = [draw_pixels(mask, inside), draw_pixels(band if band.any() else mask, edge)]
        rest = num_rays_per_batch - sum(len(p) for p in picks)
        picks.append(draw_pixels(torch.ones_like(mask), rest))
        indices = torch.cat(picks)
        indices[:, 0] = local[indices[:, 0]]
        c, y, x = indices.unbind(-1)
        collated = {key: value[c, y, x] for key, value in batch.items() if key != "image_idx" and value is not None}
        indices[:, 0] = batch["image_idx"].cpu()[c]
        collated["indices"] = indices
        if keep_full_image:
            collated["full_image"] = images
        return collated
