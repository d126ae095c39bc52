"""An AvatarPoseModel built straight from a sequence's ground-truth SMPL (no dataparser, no trainer)."""

from __future__ import annotations

from pathlib import Path

import torch
from nerfstudio.data.scene_box import SceneBox

from avatarpose_ns.scene.transform import SceneTransform
from avatarpose_ns.io.easymocap import read_smpl_npz
from avatarpose_ns.models.avatar_scene import AvatarSceneConfig
from avatarpose_ns.models.avatarpose_model import AvatarPoseModel, AvatarPoseModelConfig
from avatarpose_ns.models.canonical_field import CanonicalFieldConfig


def tiny_model(sequence: Path, **scene_options) -> AvatarPoseModel:
    """Small fields, identity scene transform; `scene_options` override `AvatarSceneConfig` fields."""
    people = read_smpl_npz(sequence / "smpl_gt" / "smpl.npz")
    frames = next(iter(people.values())).frames
    smpl_init = {pid: {"betas": s.betas, "body_pose": s.body_pose, "global_orient": s.global_orient,
                       "transl": s.transl} for pid, s in people.items()}
    scene = AvatarSceneConfig(**{"field": CanonicalFieldConfig.small(), "num_samples": 16, "body_prior_steps": 0,
                                 "occupancy_resolution": 16, **scene_options})
    metadata = {"smpl_init": smpl_init, "person_ids": sorted(people), "frames": [int(f) for f in frames],
                "world_to_scene": SceneTransform.identity().as_dict()}
    box = SceneBox(aabb=torch.tensor([[-3.0, -3.0, -3.0], [3.0, 3.0, 3.0]]))
    return AvatarPoseModelConfig(scene=scene).setup(scene_box=box, num_train_data=1, metadata=metadata)
