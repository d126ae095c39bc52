"""A short real ns-train run of avatarpose-lite on a tiny sequence, shared by the method, export
and evaluation tests."""

from __future__ import annotations

from pathlib import Path
from collections.abc import Sequence


def short_run_trainer(data: Path, output_dir: Path, schedule: Sequence[str], rays: int = 256,
                      num_samples: int = 16, pipeline_options: dict | None = None,
                      trainer_options: dict | None = None, dataparser_options: dict | None = None,
                      **scene_options):
    """A set-up (not yet trained) nerfstudio Trainer for `schedule`, with its config saved.
    Evaluation and image logging are pushed past the run; `trainer_options`, `pipeline_options`,
    `dataparser_options` and `scene_options` override trainer, pipeline, dataparser and model scene
    (`AvatarSceneConfig`) fields."""
    from avatarpose_ns.method_configs import avatarpose_trainer
    from avatarpose_ns.models.phases import PhaseSchedule

    config = avatarpose_trainer(lite=True)
    config.pipeline.datamanager.data = data
    config.pipeline.datamanager.dataparser.silhouette.iterations = 20  # the fit runs, briefly
    config.pipeline.datamanager.train_num_rays_per_batch = rays
    config.pipeline.schedule = tuple(schedule)
    config.pipeline.model.scene.num_samples = num_samples
    for name, value in (pipeline_options or {}).items():
        setattr(config.pipeline, name, value)
    for name, value in (dataparser_options or {}).items():
        setattr(config.pipeline.datamanager.dataparser, name, value)
    for name, value in scene_options.items():
        setattr(config.pipeline.model.scene, name, value)
    config.output_dir = output_dir
    config.max_num_iterations = PhaseSchedule.parse(schedule).total_steps
    config.steps_per_eval_batch = 1000
    config.steps_per_eval_image = 1000
    config.vis = "tensorboard"
    for name, value in (trainer_options or {}).items():
        setattr(config, name, value)
    config.set_timestamp()
    config.save_config()
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    return trainer


# a field small enough for a few steps in seconds on a CPU
TINY_FIELD = dict(num_levels=4, features_per_level=2, log2_hashmap_size=14, base_resolution=16, per_level_scale=2.0,
                  hidden_dim=16, hidden_dim_color=16)


def tiny_run_trainer(data: Path, output_dir: Path, schedule: Sequence[str] = ("avatar:1", "pose:2"),
                     **trainer_options):
    """`short_run_trainer` at its cheapest: no silhouette fit, no body prior, a tiny field, 64 rays of 8
    samples. For tests of the training machinery (checkpoints, interrupts, determinism), not of accuracy."""
    from avatarpose_ns.models.canonical_field import CanonicalFieldConfig

    return short_run_trainer(data, output_dir, schedule, rays=64, num_samples=8,
                             field=CanonicalFieldConfig(**TINY_FIELD), occupancy_resolution=16, body_prior_steps=0,
                             trainer_options=trainer_options, dataparser_options={"silhouette_fit": False})
