"""All people's avatars in one frame: pose the bodies, sample rays, deform, query, composite.

Pure torch (plus the project's body model): the nerfstudio Model is a thin layer
around `AvatarScene.render`. Everything here is in the input world's frame and
metres; the Model converts rays from nerfstudio's scene frame.

Shapes: L people, F frames, R rays, S samples per ray and person, V vertices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch
from torch import nn

from avatarpose_ns.body.body_model import BodyModel, canonical_body_pose
from avatarpose_ns.models.canonical_field import CanonicalFieldConfig, MultiPersonFields
from avatarpose_ns.models.compositor import LayeredRender, composite_layers
from avatarpose_ns.models.deformer import SkinningDeformer
from avatarpose_ns.models.occupancy import OccupancyGrid, canonical_bounding_cube
from avatarpose_ns.models.ray_sampler import PersonRaySampler


@dataclass
class PosedPeople:
    """Everyone's body in one frame."""

    vertices: torch.Tensor  # (L, V, 3) posed, world
    transforms: torch.Tensor  # (L, 24, 4, 4) rest -> posed
    canonical_vertices: torch.Tensor  # (L, V, 3)
    canonical_transforms: torch.Tensor  # (L, 24, 4, 4) rest -> canonical


@dataclass
class SceneRender:
    render: LayeredRender
    empty_density: torch.Tensor  # (M,) densities at samples the occupancy grid calls empty (training only)


class SmplState(nn.Module):
    """Per-person, per-frame SMPL parameters, initialised from the dataparser's SMPL init.

    Pose optimisation (Theta = Theta0 + MLP(Theta0)) builds on these; the avatar phase keeps them fixed.
    """

    def __init__(self, people: Mapping[int, Mapping[str, np.ndarray]]) -> None:
        super().__init__()
        self.person_ids = [int(p) for p in people]
        stack = lambda key: torch.tensor(np.stack([np.asarray(people[p][key], dtype=np.float32) for p in people]))
        self.betas = nn.Parameter(stack("betas").reshape(len(people), -1))
        self.body_pose = nn.Parameter(stack("body_pose"))  # (L, F, 69)
        self.global_orient = nn.Parameter(stack("global_orient"))  # (L, F, 3)
        self.transl = nn.Parameter(stack("transl"))  # (L, F, 3)
        for name, value in (("body_pose", self.body_pose), ("global_orient", self.global_orient), ("transl", self.transl)):
            if not torch.isfinite(value).all():
                raise ValueError(f"SMPL initialisation: '{name}' contains NaN or infinite values")

    @property
    def num_people(self) -> int:
        return self.betas.shape[0]

    def set_pose_trainable(self, trainable: bool) -> None:
        """Switch gradients of pose, orientation and translation on or off. Off in avatar phases:
        computing them costs most of a CPU training step even when no optimiser uses them."""
        for parameter in (self.body_pose, self.global_orient, self.transl):
            parameter.requires_grad_(trainable)

    @property
    def num_frames(self) -> int:
        return self.body_pose.shape[1]

    def frame(self, position: int) -> dict[str, torch.Tensor]:
        """Parameters of every person at one frame position. -> betas (L, 10), body_pose (L, 69), ..."""
        return {"betas": self.betas, "body_pose": self.body_pose[:, position],
                "global_orient": self.global_orient[:, position], "transl": self.transl[:, position]}


@dataclass
class AvatarSceneConfig:
    field: CanonicalFieldConfig
    num_samples: int = 64
    min_step: float = 0.005
    box_margin: float = 0.1
    max_skin_distance: float = 0.05
    occupancy_resolution: int = 64
    occupancy_decay: float = 0.8
    occupancy_threshold: float = 0.01
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)


class AvatarScene(nn.Module):
    def __init__(self, body_model: BodyModel, smpl_init: Mapping[int, Mapping[str, np.ndarray]],
                 config: AvatarSceneConfig) -> None:
        super().__init__()
        self.config = config
        self.body_model = body_model
        self.smpl = SmplState(smpl_init)
        self.deformer = SkinningDeformer.from_body_model(body_model, max_dist=config.max_skin_distance)
        self.sampler = PersonRaySampler(config.num_samples, config.min_step, config.box_margin)
        with torch.no_grad():
            canonical = self.canonical_bodies()
        centres, half_sizes = canonical_bounding_cube(canonical[0])
        self.fields = MultiPersonFields(list(zip(centres, half_sizes)), config.field)
        self.occupancy = OccupancyGrid(centres, half_sizes, resolution=config.occupancy_resolution,
                                       decay=config.occupancy_decay, threshold=config.occupancy_threshold)
        self.register_buffer("background", torch.tensor(config.background, dtype=torch.float32), persistent=False)
        self._pose_cache: tuple | None = None

    @property
    def num_people(self) -> int:
        return self.smpl.num_people

    def canonical_bodies(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Canonical (legs spread) vertices (L, V, 3) and transforms (L, 24, 4, 4) for the current betas."""
        pose = canonical_body_pose(self.num_people).to(self.smpl.betas.device)
        out = self.body_model(betas=self.smpl.betas, body_pose=pose)
        return out.vertices, out.joint_transforms

    def pose(self, frame_position: int) -> PosedPeople:
        """Everyone's posed and canonical bodies at a frame. Without gradients (rendering an image in
        chunks, the viewer) the result is reused until an optimiser step changes the parameters."""
        key = (frame_position,) + tuple(p._version for p in self.smpl.parameters())
        if not torch.is_grad_enabled() and self._pose_cache is not None and self._pose_cache[0] == key:
            return self._pose_cache[1]
        params = self.smpl.frame(frame_position)
        posed = self.body_model(**params)
        canonical_vertices, canonical_transforms = self.canonical_bodies()
        people = PosedPeople(posed.vertices, posed.joint_transforms, canonical_vertices, canonical_transforms)
        self._pose_cache = None if torch.is_grad_enabled() else (key, people)
        return people

    def render(self, origins: torch.Tensor, directions: torch.Tensor, frame_position: int,
               far: float = 1e3) -> SceneRender:
        """Render rays (R, 3) (unit directions, world metres) of one frame."""
        people = self.pose(frame_position)
        box_min, box_max = self.sampler.boxes(people.vertices.detach())
        samples = self.sampler(origins, directions, box_min, box_max, training=self.training)
        points, valid = samples.per_person()  # (L, R*S, 3), (L, R*S)
        skinned = self.deformer.inverse_multi(points, people.vertices, people.transforms,
                                              people.canonical_transforms, mask=valid)
        near_body = skinned.valid
        occupied = self.occupancy.query(skinned.points.detach()) & near_body
        density, rgb = self.fields.forward_all(skinned.points, occupied)
        empty_density = density.new_zeros(0)
        if self.training:  # a few samples in cells called empty keep the field empty there
            empty = near_body & ~occupied
            if empty.any():
                picks = empty.nonzero()[:4096]
                empty_points = skinned.points[picks[:, 0], picks[:, 1]].detach()
                empty_density = torch.cat([self.fields[int(p)].density(empty_points[picks[:, 0] == p])
                                           for p in picks[:, 0].unique()])
        render = composite_layers(
            samples.t, samples.deltas,
            samples.from_per_person(density), samples.from_per_person(rgb),
            valid=samples.from_per_person(occupied), background=self.background, far=far,
        )
        return SceneRender(render, empty_density)

    @torch.no_grad()
    def update_occupancy(self, step: int) -> bool:
        """Re-estimate which canonical cells hold the avatars (a density of sigma * min_step).

        Cells on the canonical body surface always stay occupied: a person whose field
        is still faint when pruning starts would otherwise lose every cell and never
        learn again (pruned samples get no gradient).
        """
        updated = self.occupancy.update(lambda points: self.fields.density_all(points) * self.config.min_step, step)
        if updated:
            self.occupancy.keep(self.canonical_bodies()[0])
        return updated
