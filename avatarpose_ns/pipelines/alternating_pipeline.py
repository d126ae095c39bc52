"""The alternating avatar / pose optimisation of AvatarPose (section 3.2) as a nerfstudio pipeline.

Each training step looks up its phase in the schedule (`phases.PhaseSchedule`),
switches the model to it (which parameter groups get gradients, which losses
apply), sets the pixel sampler's share of rays inside the mask, in the edge band
and anywhere for that kind of phase, and sets every optimizer's learning rate from a
linear decay that restarts with each phase. The model still runs through
`self._model(...)` (VanillaPipeline.get_train_loss_dict), so DDP works.

Evaluation (``ns-eval``, and the trainer's all-image evaluations) adds the pose
metrics of the current SMPL state (MPJPE, PCP, PCK50, AP@K, Recall@500) to the
image metrics when the sequence has ground truth. In the viewer, ``overlays`` draws
every person's skeleton at the time slider's frame (``avatarpose_ns.viewer.overlays``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.engine.optimizers import Optimizers
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from nerfstudio.utils.rich_utils import CONSOLE

from avatarpose_ns.eval import model_metrics
from avatarpose_ns.models.phases import PhaseSchedule
from avatarpose_ns.viewer.overlays import OverlaySource, PoseOverlays

# the released schedule's shape: avatar, then pose / avatar-refine alternations, body-only pose last
RELEASED_SCHEDULE = ("avatar:10000", "pose:5000", "avatar:2500", "pose:5000", "avatar:2500", "pose_body:5000")


@dataclass
class AlternatingPipelineConfig(VanillaPipelineConfig):
    _target: type = field(default_factory=lambda: AlternatingPipeline)
    schedule: tuple[str, ...] = RELEASED_SCHEDULE
    """phases in order as '<phase>:<steps>' (avatar, pose, pose_body, joint); the last one continues"""
    joint_optimisation: bool = False
    """optimise avatars and poses together for the whole run instead of alternating (for comparison)"""
    avatar_fractions: tuple[float, float] = (0.8, 0.1)
    """avatar phases: share of rays inside the foreground mask and in the edge band (the rest anywhere)"""
    pose_fractions: tuple[float, float] = (0.6, 0.3)
    """pose phases: share of rays inside the mask and in the edge band around it (the rest anywhere)"""
    lr_final_factor: float = 0.1
    """each phase decays every learning rate linearly from its configured value to this fraction of it"""
    viewer_overlays: bool = True
    """draw every person's SMPL skeleton (and optionally mesh) in the viewer at the time slider's frame"""
    overlay_update_every: int = 20
    """redraw the viewer overlays with the current poses every this many steps (0: only on GUI changes)"""
    viewer_start_camera: int | None = 0
    """training image whose camera new viewer clients start at (None: viser's default view)"""


class AlternatingPipeline(VanillaPipeline):
    config: AlternatingPipelineConfig

    def __init__(self, config: AlternatingPipelineConfig, *args, **kwargs) -> None:
        super().__init__(config, *args, **kwargs)
        schedule = PhaseSchedule.parse(config.schedule)
        if config.joint_optimisation:
            schedule = PhaseSchedule((("joint", schedule.total_steps),))
        self.schedule = schedule
        self._optimizers: Optimizers | None = None
        self._phase_index = -1
        self._gt_joints: tuple | None = None
        if config.viewer_overlays:  # picked up by nerfstudio's viewer; inert without one
            self.overlays = PoseOverlays(self.overlay_source(), start_camera=config.viewer_start_camera)

    def get_training_callbacks(self, training_callback_attributes: TrainingCallbackAttributes
                               ) -> list[TrainingCallback]:
        self._optimizers = training_callback_attributes.optimizers
        callbacks = super().get_training_callbacks(training_callback_attributes)
        overlays = getattr(self, "overlays", None)
        if overlays is not None:
            if self.config.overlay_update_every > 0:
                callbacks.append(TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION],
                                                  lambda step: overlays.refresh(),
                                                  update_every_num_iters=self.config.overlay_update_every))
            callbacks.append(TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN], lambda step: overlays.refresh()))
        return callbacks

    # ------------------------------------------------------------------ poses and their metrics
    @property
    def has_ground_truth(self) -> bool:
        return self.model.ground_truth_sequences() is not None

    def ground_truth_joints(self):
        """frame number -> GT person id -> (24, 3) joints (metres, input world), posed once; None without GT."""
        if self._gt_joints is None:
            self._gt_joints = (model_metrics.ground_truth_joints(self.model),)
        return self._gt_joints[0]

    def overlay_source(self) -> OverlaySource:
        """What the viewer overlays draw: the model's people, frames, scene frame and body triangles, its
        current poses and the ground truth (posed once, shared with the pose metrics)."""
        model = self.model
        train_dataset = getattr(self.datamanager, "train_dataset", None)
        return OverlaySource(
            person_ids=list(model.person_ids), frame_numbers=list(model.frame_numbers),
            scene_transform=model.scene_transform, faces=model.body_model.faces_np,
            frame_joints=partial(model_metrics.frame_joints, model),
            ground_truth_joints=self.ground_truth_joints if self.has_ground_truth else None,
            train_cameras=getattr(train_dataset, "cameras", None))

    def get_pose_metrics(self) -> dict[str, float]:
        """Pose metrics of the current SMPL state against the ground truth ({} without ground truth):
        mpjpe, pck50 (mm, %), pcp, ap25 ... ap150, recall500 (%), 24 SMPL joints, no alignment."""
        gt = self.ground_truth_joints()
        if gt is None:
            return {}
        metrics = model_metrics.pose_metrics(model_metrics.predicted_joints(self.model), gt)
        return model_metrics.metrics_summary(metrics)

    def get_average_eval_image_metrics(self, step: int | None = None, output_path: Path | None = None,
                                       get_std: bool = False):
        """nerfstudio's image metrics over the eval images, plus the pose metrics (`get_pose_metrics`)."""
        metrics = super().get_average_eval_image_metrics(step=step, output_path=output_path, get_std=get_std)
        metrics.update(self.get_pose_metrics())
        return metrics

    def enter_step(self, step: int) -> str:
        """Put the model, sampler and learning rates in the state of `step`'s phase; returns the phase."""
        index, phase, into, length = self.schedule.locate(step)
        if index != self._phase_index:
            self._phase_index = index
            self.model.set_phase(phase)
            mix = self.model.phase_spec.ray_mix
            inside, edge = self.config.avatar_fractions if mix == "avatar" else self.config.pose_fractions
            sampler = getattr(self.datamanager, "train_pixel_sampler", None)
            if hasattr(sampler, "set_fractions"):
                sampler.set_fractions(inside, edge)
            CONSOLE.log(f"step {step}: {phase} phase ({length} steps)")
        if self._optimizers is not None:
            progress = into / max(length - 1, 1)
            factor = 1.0 - (1.0 - self.config.lr_final_factor) * min(progress, 1.0)
            for optimizer in self._optimizers.optimizers.values():
                for group in optimizer.param_groups:
                    group.setdefault("initial_lr", group["lr"])
                    group["lr"] = group["initial_lr"] * factor
        return phase

    def get_train_loss_dict(self, step: int):
        self.enter_step(step)
        return super().get_train_loss_dict(step)
