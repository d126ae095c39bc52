"""The nerfstudio Model: per-person avatars rendered together, trained on multi-view frames.

A thin layer over `AvatarScene` (torch-only maths): it turns nerfstudio rays (in
the dataparser's scene frame) into world rays, groups them by frame, and hands
back nerfstudio outputs, losses and metrics.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Mapping

import numpy as np
import torch
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.utils import colormaps
from torch.nn import Parameter
from torchmetrics.functional import peak_signal_noise_ratio
from torchmetrics.functional.image import structural_similarity_index_measure

from avatarpose_ns.body.body_model import BodyModel
from avatarpose_ns.io.easymocap import SmplSequence
from avatarpose_ns.scene.transform import SceneTransform
from avatarpose_ns.scene.timeline import time_to_frame_position
from avatarpose_ns.models.avatar_scene import AvatarScene, AvatarSceneConfig
from avatarpose_ns.models.compositor import instance_map, replace_background
from avatarpose_ns.models.losses import AvatarLossWeights, PoseLossWeights, avatar_losses, pose_losses
from avatarpose_ns.models.palette import colour_instances
from avatarpose_ns.models.phases import Phase, PhaseSpec, phase_spec


NO_STATIC_EXPORT = (
    "avatarpose models are moving people, one body per frame: nerfstudio's ns-export pointcloud, tsdf and "
    "poisson fuse rendered depth from every frame into one static geometry (in nerfstudio's normalised scene "
    "frame), which for moving people is meaningless, so this model does not support them (nor ns-render's 'rgba'; "
    "render 'rgb' and 'accumulation' instead). Use `avatarpose-export meshes --load-config <config.yml> "
    "--output-dir <dir>` for per-frame SMPL and avatar meshes in the input's world frame."
)

NO_TIME = (
    "avatarpose renders one frame of a moving sequence, chosen by the camera's time, but these rays carry no "
    "time. nerfstudio's `ns-render interpolate` (and `ns-render spiral` from a camera without a time) drop "
    "the cameras' times. Render a path with times instead: `avatarpose-render orbit --load-config "
    "<run>/config.yml` or `avatarpose-render cameras --load-config <run>/config.yml`, or `ns-render "
    "camera-path` with a camera_path.json whose keyframes all have a `render_time`."
)


def local_lpips() -> torch.nn.Module | None:
    """torchmetrics' LPIPS (AlexNet) when torchvision's AlexNet weights are already in the torch hub
    cache, else None: evaluation never downloads anything."""
    try:
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity
        from torchvision.models import AlexNet_Weights
    except ImportError:
        return None
    weights = Path(torch.hub.get_dir()) / "checkpoints" / Path(AlexNet_Weights.DEFAULT.url).name
    if not weights.is_file():
        return None
    return LearnedPerceptualImagePatchSimilarity(net_type="alex", normalize=True).eval()


@dataclass
class AvatarPoseModelConfig(ModelConfig):
    """AvatarPose's avatars; defaults are the released configuration (docs/design.md#sizes)."""

    _target: type = field(default_factory=lambda: AvatarPoseModel)
    scene: AvatarSceneConfig = field(default_factory=AvatarSceneConfig)
    """the avatars: field sizes, ray sampling, occupancy pruning, background, body prior"""
    loss_weights: AvatarLossWeights = field(default_factory=AvatarLossWeights)
    """avatar-phase loss weights"""
    pose_loss_weights: PoseLossWeights = field(default_factory=PoseLossWeights)
    """pose-phase loss weights"""
    pose_mlp_hidden: int = 128
    """width of the per-person pose MLP (69 -> w -> w -> w -> 69)"""
    body_model_path: str = ""
    """SMPL .pkl or folder; empty: the dataparser's choice (built-in model by default)"""
    enable_collider: bool = False
    """rays are clipped to each person's box instead"""


class AvatarPoseModel(Model):
    config: AvatarPoseModelConfig

    # ------------------------------------------------------------------ setup
    def populate_modules(self) -> None:
        super().populate_modules()
        metadata = self._metadata
        if "smpl_init" not in metadata:
            raise ValueError("the avatarpose model needs a dataparser that provides 'smpl_init' "
                             "(easymocap-data or hi4d-data)")
        self.scene_transform = SceneTransform.from_dict(metadata["world_to_scene"])
        self.person_ids: list[int] = [int(p) for p in metadata["person_ids"]]
        self.num_frames = len(metadata["frames"])
        self.frame_numbers: list[int] = [int(f) for f in metadata["frames"]]
        body_path = self.config.body_model_path or metadata.get("body_model_path")
        body_model = BodyModel(body_path or None)
        smpl_init = {int(p): v for p, v in metadata["smpl_init"].items()}
        self.avatars = AvatarScene(body_model, {p: smpl_init[p] for p in self.person_ids}, self.config.scene,
                                   pose_mlp_hidden=self.config.pose_mlp_hidden)
        self.phase: Phase = "avatar"
        self.set_phase("avatar")

    def set_phase(self, phase: Phase) -> None:
        """Switch what trains: gradients on for the phase's parameter groups, off for the rest
        (a frozen group gets no gradient, so Adam neither steps it nor touches its state)."""
        spec = phase_spec(phase)
        for name, parameters in self.get_param_groups().items():
            for parameter in parameters:
                parameter.requires_grad_(name in spec.trainable)
        self.phase = phase

    @property
    def phase_spec(self) -> PhaseSpec:
        """What the current phase switches (`phases.PHASES`)."""
        return phase_spec(self.phase)

    def get_param_groups(self) -> dict[str, list[Parameter]]:
        return {"fields": list(self.avatars.fields.parameters()), **self.avatars.smpl.parameter_groups()}

    def get_training_callbacks(self, training_callback_attributes: TrainingCallbackAttributes) -> list[TrainingCallback]:
        def update_occupancy(step: int) -> None:  # the scene's occupancy_update_every gates it
            if self.phase_spec.fields_train:
                self.avatars.update_occupancy(step)

        def fit_fields_to_bodies(step: int) -> None:  # a no-op after AvatarPoseTrainer.setup fitted them
            self.avatars.fit_fields_to_bodies()

        # the body prior runs in the trainer's setup (engine/trainer.py), before step 0; this callback only
        # covers a trainer other than the project's, once (a fitted or resumed model skips it)
        return [TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], fit_fields_to_bodies),
                TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], update_occupancy)]

    # ------------------------------------------------------------------ rendering
    def frame_positions(self, ray_bundle: RayBundle) -> torch.Tensor:
        """Frame position of every ray (R,), from the camera's time (the viewer's slider sets it too).
        Rays without a time are refused (`NO_TIME`) rather than silently drawn at frame 0, unless the
        sequence has a single frame."""
        if ray_bundle.times is None:
            if self.num_frames > 1:
                raise ValueError(NO_TIME)
            return torch.zeros(len(ray_bundle), dtype=torch.long, device=ray_bundle.origins.device)
        return time_to_frame_position(ray_bundle.times.reshape(-1), self.num_frames)

    def get_outputs(self, ray_bundle: RayBundle) -> dict[str, torch.Tensor]:
        transform = self.scene_transform
        origins = transform.to_world(ray_bundle.origins.reshape(-1, 3))
        rotation = torch.as_tensor(transform.rotation, dtype=origins.dtype, device=origins.device)
        directions = torch.nn.functional.normalize(ray_bundle.directions.reshape(-1, 3) @ rotation, dim=-1)
        frames = self.frame_positions(ray_bundle)
        num_rays, num_people = len(origins), self.avatars.num_people
        far = 1e3
        outputs = {
            "rgb": origins.new_zeros(num_rays, 3), "accumulation": origins.new_zeros(num_rays, 1),
            "depth": origins.new_zeros(num_rays, 1), "person_accumulation": origins.new_zeros(num_rays, num_people),
            "person_rgb": origins.new_zeros(num_rays, num_people, 3),
        }
        extras: dict[str, list] = {"weights": [], "empty_density": [], "collision": []}
        with_collision = self.training and self.phase_spec.collision and num_people > 1
        for frame in frames.unique().tolist():
            rays = (frames == frame).nonzero().squeeze(1)
            result = self.avatars.render(origins[rays], directions[rays], int(frame), far=far,
                                         with_collision=with_collision)
            render = result.render
            outputs["rgb"] = outputs["rgb"].index_copy(0, rays, render.rgb)
            outputs["accumulation"] = outputs["accumulation"].index_copy(0, rays, render.accumulation[:, None])
            outputs["depth"] = outputs["depth"].index_copy(0, rays, render.depth[:, None] * transform.scale)
            outputs["person_accumulation"] = outputs["person_accumulation"].index_copy(0, rays, render.person_accumulation)
            outputs["person_rgb"] = outputs["person_rgb"].index_copy(0, rays, render.person_rgb)
            extras["weights"].append(render.weights.flatten())
            extras["empty_density"].append(result.empty_density)
            if result.collision_opacities is not None:
                extras["collision"].append(result.collision_opacities)
        if self.training:
            outputs["sample_weights"] = torch.cat(extras["weights"])
            outputs["empty_density"] = torch.cat(extras["empty_density"])
            if extras["collision"]:
                outputs["collision_opacities"] = torch.cat(extras["collision"])
        else:  # per-person images for the viewer and ns-render
            for index, pid in enumerate(self.person_ids):
                outputs[f"accumulation_person{pid}"] = outputs["person_accumulation"][:, index:index + 1]
                outputs[f"rgb_person{pid}"] = (outputs["person_rgb"][:, index]
                                               + (1 - outputs[f"accumulation_person{pid}"]) * self.avatars.background)
            # each person in its palette colour (the viewer's skeleton overlays use the same ones)
            outputs["instance"] = colour_instances(instance_map(outputs["person_accumulation"]), num_people,
                                                   self.avatars.background)
            del outputs["person_rgb"], outputs["person_accumulation"]  # not images: the viewer lists 1 or 3 channels
        return outputs

    # ------------------------------------------------------------------ the public surface
    @property
    def body_model(self) -> BodyModel:
        """The body model every person is posed with."""
        return self.avatars.body_model

    def smpl_sequences(self) -> dict[int, SmplSequence]:
        """Every person's current SMPL parameters, in the input's world frame and metres:
        person id -> SmplSequence over the sequence's frame numbers (what export writes)."""
        state = {k: v.detach().cpu().numpy() for k, v in self.avatars.smpl.export().items()}
        frames = np.asarray(self.frame_numbers, dtype=np.int64)
        return {pid: SmplSequence(betas=state["betas"][i], body_pose=state["body_pose"][i],
                                  global_orient=state["global_orient"][i], transl=state["transl"][i],
                                  frames=frames)
                for i, pid in enumerate(self.person_ids)}

    def smpl_frame(self, frame_position: int) -> dict[str, torch.Tensor]:
        """Everyone's current SMPL parameters at one frame position, in the input's world frame and metres,
        ready for `body_model`: betas (L, 10), body_pose (L, 69), global_orient (L, 3), transl (L, 3)."""
        return self.avatars.smpl.frame(int(frame_position))

    def ground_truth_sequences(self) -> dict[int, SmplSequence] | None:
        """The ground-truth SMPL the dataparser found beside the data (``eval_only_smpl_gt``: evaluation
        only, training never reads it), person id -> SmplSequence in the input's world frame and metres;
        None when the sequence has none."""
        people = self._metadata.get("eval_only_smpl_gt")
        if not people:
            return None
        return {int(pid): SmplSequence(betas=p["betas"], body_pose=p["body_pose"], global_orient=p["global_orient"],
                                       transl=p["transl"], frames=p["frames"]) for pid, p in people.items()}

    @property
    def world_up(self) -> str:
        """The up axis of the input world (the dataparser's ``world_up``; +z when the run does not say)."""
        return str(self._metadata.get("world_up") or "+z")

    @property
    def _metadata(self) -> Mapping:
        """What the dataparser handed the model (nerfstudio passes it as the ``metadata`` keyword)."""
        return self.kwargs.get("metadata", {})

    def get_rgba_image(self, outputs: dict[str, torch.Tensor], output_name: str = "rgb") -> torch.Tensor:
        """nerfstudio's point-cloud and TSDF exporters (and ns-render's 'rgba') call this first; nerfstudio's own
        version fails on a missing `renderer_rgb` attribute, so say why instead."""
        raise NotImplementedError(NO_STATIC_EXPORT)

    # ------------------------------------------------------------------ losses and metrics
    def masked_target(self, batch: dict[str, torch.Tensor], like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Ground-truth colours with the background replaced, and the foreground mask as float."""
        image = batch["image"][..., :3].to(like)
        if "mask" in batch:
            mask = batch["mask"].to(like.device).reshape(image.shape[:-1] + (1,)).float()
        else:
            mask = torch.ones_like(image[..., :1])
        background = self.avatars.background.to(like)
        return image * mask + background * (1 - mask), mask[..., 0]

    def plate_composite(self, batch: dict[str, torch.Tensor], rgb: torch.Tensor, accumulation: torch.Tensor,
                        target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The render and its target where the ray's background plate is known: the render composited
        over the plate instead of the flat background, the target the untouched image, so the colour
        terms there say where the person is whatever the mask says. Elsewhere both stay as they are.

        rgb, target (R, 3), accumulation (R,) -> (rgb, target), each (R, 3)."""
        if "background" not in batch:
            return rgb, target
        plate = batch["background"].to(rgb)
        known = plate[:, 3:4] > 0.5
        over_plate = replace_background(rgb, accumulation, self.avatars.background.to(rgb), plate[:, :3])
        image = batch["image"][..., :3].to(rgb)
        return torch.where(known, over_plate, rgb), torch.where(known, image, target)

    def get_metrics_dict(self, outputs, batch) -> dict[str, torch.Tensor]:
        target, _ = self.masked_target(batch, outputs["rgb"])
        return {"psnr": peak_signal_noise_ratio(outputs["rgb"].detach(), target, data_range=1.0)}

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> dict[str, torch.Tensor]:
        """Avatar losses in avatar phases, pose losses in pose phases, both (pose priors only) when joint."""
        target, mask = self.masked_target(batch, outputs["rgb"])
        accumulation = outputs["accumulation"][:, 0]
        rgb, target = self.plate_composite(batch, outputs["rgb"], accumulation, target)
        losses: dict[str, torch.Tensor] = {}
        if self.phase_spec.avatar_losses:
            losses.update(avatar_losses(
                rgb, target, accumulation, mask,
                person_accumulation=outputs.get("person_accumulation"),
                sample_weights=outputs.get("sample_weights"), density_outside=outputs.get("empty_density"),
                weights=self.config.loss_weights,
            ))
        if self.phase_spec.pose_losses:
            weights = self.config.pose_loss_weights
            if not self.phase_spec.pose_image_terms:
                weights = dataclasses.replace(weights, rgb=0.0, mask=0.0)
            smpl = self.avatars.smpl
            body_pose = smpl.body_pose_all()
            pose = pose_losses(
                rgb, target, accumulation, mask, body_pose=body_pose, transl=smpl.transl_all(),
                smooth_pose=torch.cat([smpl.global_orient_all(), body_pose], dim=-1),
                collision_opacities=outputs.get("collision_opacities"), weights=weights,
                body_pose_init=smpl.body_pose_init,
            )
            losses.update({f"pose_{name}" if name in losses else name: value for name, value in pose.items()})
        return losses

    def get_image_metrics_and_images(self, outputs, batch) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
        target, _ = self.masked_target(batch, outputs["rgb"])
        rgb = outputs["rgb"].clamp(0, 1)
        gt_chw, rgb_chw = target.permute(2, 0, 1)[None], rgb.permute(2, 0, 1)[None]
        metrics = {
            "psnr": float(peak_signal_noise_ratio(rgb_chw, gt_chw, data_range=1.0)),
            "ssim": float(structural_similarity_index_measure(rgb_chw, gt_chw, data_range=1.0)),
        }
        if "_lpips" not in self.__dict__:  # looked up once; kept out of the module tree and checkpoints
            self.__dict__["_lpips"] = local_lpips()
        lpips = self.__dict__["_lpips"]
        if lpips is not None:
            with torch.no_grad():
                metrics["lpips"] = float(lpips.to(rgb.device)(rgb_chw, gt_chw))
        images = {
            "img": torch.cat([target, rgb], dim=1),
            "accumulation": colormaps.apply_colormap(outputs["accumulation"]),
            "depth": colormaps.apply_depth_colormap(outputs["depth"], accumulation=outputs["accumulation"]),
        }
        return metrics, images
