"""nerfstudio's VanillaDataManager with the frame-aware pixel sampler and the background plates."""

from __future__ import annotations

from dataclasses import dataclass, field

from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig
from nerfstudio.data.pixel_samplers import PixelSampler

from avatarpose_ns.datamanagers.avatar_dataset import AvatarDataset
from avatarpose_ns.datamanagers.frame_pixel_sampler import FramePixelSamplerConfig


@dataclass
class AvatarDataManagerConfig(VanillaDataManagerConfig):
    _target: type = field(default_factory=lambda: AvatarDataManager)
    pixel_sampler: FramePixelSamplerConfig = field(default_factory=FramePixelSamplerConfig)


class AvatarDataManager(VanillaDataManager[AvatarDataset]):
    """Draws each training batch from the views of a single frame; each ray carries its plate colour."""

    config: AvatarDataManagerConfig

    def _get_pixel_sampler(self, dataset, num_rays_per_batch: int) -> PixelSampler:
        metadata = dataset.cameras.metadata or {}
        frames = metadata.get("frame_position")
        image_frames = None if frames is None else frames.reshape(-1).long().cpu()
        return self.config.pixel_sampler.setup(num_rays_per_batch=num_rays_per_batch, image_frames=image_frames)
