"""The `avatarpose` (released sizes, for a GPU) and `avatarpose-lite` (2-core CPU) methods."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from nerfstudio.configs.base_config import MachineConfig, ViewerConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from avatarpose_ns.engine.schedulers import FloatExponentialDecaySchedulerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig
from nerfstudio.plugins.types import MethodSpecification

from avatarpose_ns.dataparsers.easymocap_dataparser import EasyMocapDataParserConfig
from avatarpose_ns.datamanagers.avatar_datamanager import AvatarDataManagerConfig
from avatarpose_ns.datamanagers.frame_pixel_sampler import FramePixelSamplerConfig
from avatarpose_ns.models.avatarpose_model import AvatarPoseModelConfig
from avatarpose_ns.models.canonical_field import CanonicalFieldConfig


@dataclass
class AdamBetasOptimizerConfig(AdamOptimizerConfig):
    """Adam with configurable betas (AvatarPose: 0.9, 0.99)."""

    betas: Tuple[float, float] = (0.9, 0.99)
    fused: Optional[bool] = None
    """torch's fused Adam: one kernel for all parameters (much faster for large hash tables on a CPU)"""


def _optimizers(steps: int, field_lr: float, fused: Optional[bool]) -> dict:
    """Adam with eps 1e-15 (hash grids), exponential decay to 1/10 over the run."""
    return {
        "fields": {
            "optimizer": AdamBetasOptimizerConfig(lr=field_lr, eps=1e-15, fused=fused),
            "scheduler": FloatExponentialDecaySchedulerConfig(lr_final=field_lr * 0.1, max_steps=steps),
        },
        "body_shape": {
            "optimizer": AdamBetasOptimizerConfig(lr=1e-5, eps=1e-15),
            "scheduler": None,
        },
    }


def avatarpose_trainer(lite: bool) -> TrainerConfig:
    """The method's trainer; `lite` sizes it for a 2-core CPU (smaller fields, fewer rays and samples)."""
    steps = 1500 if lite else 30000
    return TrainerConfig(
        method_name="avatarpose-lite" if lite else "avatarpose",
        steps_per_eval_batch=100 if lite else 500,
        steps_per_eval_image=500 if lite else 2000,
        steps_per_eval_all_images=100000,
        steps_per_save=250 if lite else 2000,
        max_num_iterations=steps,
        mixed_precision=not lite,
        machine=MachineConfig(device_type="cpu") if lite else MachineConfig(),
        pipeline=VanillaPipelineConfig(
            datamanager=AvatarDataManagerConfig(
                dataparser=EasyMocapDataParserConfig(),
                train_num_rays_per_batch=2048 if lite else 16384,
                eval_num_rays_per_batch=2048 if lite else 8192,
                pixel_sampler=FramePixelSamplerConfig(inside_fraction=0.7, edge_fraction=0.2,
                                                      edge_band_px=16 if lite else 48),
            ),
            model=AvatarPoseModelConfig(
                canonical_field=CanonicalFieldConfig.small() if lite else CanonicalFieldConfig(),
                num_samples=32 if lite else 256,
                eval_num_rays_per_chunk=4096 if lite else 16384,
            ),
        ),
        optimizers=_optimizers(steps, field_lr=1e-2, fused=True if lite else None),
        viewer=ViewerConfig(num_rays_per_chunk=4096 if lite else 16384),
        vis="viewer",
    )


avatarpose = MethodSpecification(
    config=avatarpose_trainer(lite=False),
    description="AvatarPose: multi-person SMPL pose and shape from multi-view video via neural avatars (GPU sizes).",
)
avatarpose_lite = MethodSpecification(
    config=avatarpose_trainer(lite=True),
    description="AvatarPose sized for a CPU: smaller fields, fewer rays and samples, shorter schedule.",
)
