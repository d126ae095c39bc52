"""The `avatarpose` (released sizes, for a GPU) and `avatarpose-lite` (2-core CPU) methods."""

from __future__ import annotations

import avatarpose_ns.commands  # noqa: F401  (first: the warning filters, one-line errors)

from dataclasses import dataclass

from nerfstudio.configs.base_config import MachineConfig, ViewerConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.plugins.types import MethodSpecification

from avatarpose_ns.dataparsers.easymocap_dataparser import EasyMocapDataParserConfig
from avatarpose_ns.datamanagers.avatar_datamanager import AvatarDataManagerConfig
from avatarpose_ns.datamanagers.frame_pixel_sampler import FramePixelSamplerConfig
from avatarpose_ns.engine.trainer import AvatarPoseTrainerConfig
from avatarpose_ns.models.avatar_scene import AvatarSceneConfig
from avatarpose_ns.models.avatarpose_model import AvatarPoseModelConfig
from avatarpose_ns.models.canonical_field import CanonicalFieldConfig
from avatarpose_ns.pipelines.alternating_pipeline import RELEASED_SCHEDULE, AlternatingPipelineConfig

# The CPU schedule: the released shape, about 25x shorter. Shape gets a larger learning rate
# than released (1e-3 instead of 1e-5) so that its few hundred Adam steps can still change the
# body by centimetres; the pose MLP a smaller one (3e-4 instead of 1e-3), since with 2048 rays
# per step its updates are noisier. The per-frame translation and orientation keep the released
# 1e-5: each frame's deltas get a gradient only on that frame's steps, and at 1e-3 they drifted
# (benchmarks/RESULTS.md: dance-3people 63.2 -> 72.1 mm at 1e-3, 62.7 at 1e-5).
#
# The lite edge band is 3 px, not the 16 px that 48 px at 640 would scale to: with 10-30 % of 2048
# rays per step spread over a 16 px band, the ring right outside the silhouette was hardly ever
# sampled and the avatars stayed about a pixel too wide (held-out view, ground-truth poses:
# 24.3 dB with 16 px, 25.0 dB with 3 px, 24.8 with another seed; benchmarks/RESULTS.md).
LITE_SCHEDULE = ("avatar:300", "pose:250", "avatar:100", "pose:250", "avatar:100", "pose_body:200")


@dataclass
class AdamBetasOptimizerConfig(AdamOptimizerConfig):
    """Adam with configurable betas (AvatarPose: 0.9, 0.99)."""

    betas: tuple[float, float] = (0.9, 0.99)
    fused: bool | None = None
    """torch's fused Adam: one kernel for all parameters (much faster for large hash tables on a CPU)"""


def _optimizers(field_lr: float, shape_lr: float, pose_mlp_lr: float, transl_orient_lr: float,
                fused: bool | None) -> dict:
    """Adam, betas (0.9, 0.99), eps 1e-15, one group per kind of parameter. No nerfstudio
    schedulers: the alternating pipeline decays every rate within each phase and restarts it."""
    def adam(lr: float) -> dict:
        return {"optimizer": AdamBetasOptimizerConfig(lr=lr, eps=1e-15, fused=fused), "scheduler": None}

    return {"fields": adam(field_lr), "body_shape": adam(shape_lr), "pose_mlp": adam(pose_mlp_lr),
            "transl_orient": adam(transl_orient_lr)}


def avatarpose_trainer(lite: bool) -> AvatarPoseTrainerConfig:
    """The method's trainer; `lite` sizes it for a 2-core CPU (smaller fields, fewer rays and samples)."""
    schedule = LITE_SCHEDULE if lite else RELEASED_SCHEDULE
    steps = sum(int(entry.split(":")[1]) for entry in schedule)
    return AvatarPoseTrainerConfig(
        method_name="avatarpose-lite" if lite else "avatarpose",
        steps_per_eval_batch=100 if lite else 500,
        steps_per_eval_image=500 if lite else 2000,
        steps_per_eval_all_images=100000,
        steps_per_save=250 if lite else 2000,
        max_num_iterations=steps,
        mixed_precision=False,  # frozen groups have no gradients, which torch's GradScaler refuses
        machine=MachineConfig(device_type="cpu") if lite else MachineConfig(),
        pipeline=AlternatingPipelineConfig(
            schedule=schedule,
            datamanager=AvatarDataManagerConfig(
                dataparser=EasyMocapDataParserConfig(),
                train_num_rays_per_batch=2048 if lite else 16384,
                eval_num_rays_per_batch=2048 if lite else 8192,
                # training batches take each phase's ray mix from the pipeline (PHASES' ray_mix); this mix
                # is the eval batches' (nerfstudio builds its eval sampler from the same config)
                pixel_sampler=FramePixelSamplerConfig(inside_fraction=0.7, edge_fraction=0.2,
                                                      edge_band_px=3 if lite else 48),
            ),
            model=AvatarPoseModelConfig(
                scene=AvatarSceneConfig(
                    field=CanonicalFieldConfig.small() if lite else CanonicalFieldConfig(),
                    num_samples=32 if lite else 256,
                    min_step=0.01 if lite else 0.005,
                ),
                eval_num_rays_per_chunk=4096 if lite else 16384,
            ),
        ),
        optimizers=_optimizers(field_lr=1e-2, shape_lr=1e-3 if lite else 1e-5, pose_mlp_lr=3e-4 if lite else 1e-3,
                               transl_orient_lr=1e-5, fused=True if lite else None),
        # overlays are drawn over the render: the skeletons sit inside the bodies, which would hide them
        viewer=ViewerConfig(num_rays_per_chunk=4096 if lite else 16384, default_composite_depth=False),
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
