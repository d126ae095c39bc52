"""All people's avatars in one frame: pose the bodies, sample rays, deform, query, composite.

Pure torch (plus the project's body model): the nerfstudio Model is a thin layer
around `AvatarScene.render`. Everything here is in the input world's frame and
metres; the Model converts rays from nerfstudio's scene frame.

Shapes: L people, F frames, R rays, S samples per ray and person, V vertices.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dataclass_field
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from avatarpose_ns.body.body_model import BodyModel, canonical_body_pose
from avatarpose_ns.models.body_prior import canonical_body_cells, fit_field_to_body
from avatarpose_ns.models.body_shell import BodyShellGrid, body_shell_grid
from avatarpose_ns.models.canonical_field import CanonicalFieldConfig, MultiPersonFields
from avatarpose_ns.models.compositor import LayeredRender, composite_layers
from avatarpose_ns.models.deformer import SkinningDeformer
from avatarpose_ns.models.losses import densities_to_opacities
from avatarpose_ns.models.occupancy import (
    DEFAULT_DECAY,
    DEFAULT_RESOLUTION,
    DEFAULT_THRESHOLD,
    DEFAULT_UPDATE_EVERY,
    OccupancyGrid,
    canonical_bounding_cube,
)
from avatarpose_ns.models.pose_correction import SmplState
from avatarpose_ns.models.ray_sampler import PersonRaySampler


@dataclass
class PosedPeople:
    """Everyone's body in one frame."""

    vertices: torch.Tensor  # (L, V, 3) posed, world
    transforms: torch.Tensor  # (L, 24, 4, 4) rest -> posed
    canonical_vertices: torch.Tensor  # (L, V, 3)
    canonical_transforms: torch.Tensor  # (L, 24, 4, 4) rest -> canonical
    shell: BodyShellGrid | None = None  # where the posed bodies can hold density


@dataclass
class SceneRender:
    render: LayeredRender
    empty_density: torch.Tensor  # (M,) densities at samples the occupancy grid calls empty (training only)
    collision_opacities: torch.Tensor | None = None
    """(K, 2) opacities of two people's fields at the K samples inside both (see `collision_opacities`)"""


@dataclass
class AvatarSceneConfig:
    """How the avatars are sampled, pruned and started; defaults are the released configuration.
    The nerfstudio model nests this as its `scene` (``--pipeline.model.scene.<field>``)."""

    field: CanonicalFieldConfig = dataclass_field(default_factory=CanonicalFieldConfig)
    """per-person canonical field sizes"""
    num_samples: int = 256
    """samples per ray and person (at least min_step apart)"""
    min_step: float = 0.005
    """smallest sample spacing, metres"""
    box_margin: float = 0.1
    """padding of each person's posed bounding box, metres"""
    max_skin_distance: float = 0.05
    """samples farther than this from the posed body get zero density, metres"""
    shell_sampling: bool = True
    """march rays in min_step steps and keep samples near the posed bodies (else: stratified over the box)"""
    shell_cell_size: float = 0.02
    """cell size of the posed-body shell grid that shell sampling keeps samples in, metres"""
    occupancy_resolution: int = DEFAULT_RESOLUTION
    """cells per axis of each person's canonical occupancy grid"""
    occupancy_update_every: int = DEFAULT_UPDATE_EVERY
    """steps between occupancy grid updates (only while the fields train)"""
    occupancy_decay: float = DEFAULT_DECAY
    """EMA decay of the occupancy grid's stored densities at each update"""
    occupancy_threshold: float = DEFAULT_THRESHOLD
    """a cell is occupied above min(this, the grid's mean) (opacity over min_step)"""
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """pixels outside the foreground mask take this colour in the targets and renders"""
    body_prior_steps: int = 150
    """steps fitting each field's density to its canonical SMPL body before training (0: start from fog)"""


class AvatarScene(nn.Module):
    def __init__(self, body_model: BodyModel, smpl_init: Mapping[int, Mapping[str, np.ndarray]],
                 config: AvatarSceneConfig, pose_mlp_hidden: int = 128) -> None:
        super().__init__()
        self.config = config
        self.body_model = body_model
        self.smpl = SmplState(smpl_init, hidden=pose_mlp_hidden)
        self.deformer = SkinningDeformer.from_body_model(body_model, max_dist=config.max_skin_distance)
        self.sampler = PersonRaySampler(config.num_samples, config.min_step, config.box_margin)
        with torch.no_grad():
            canonical = self.canonical_bodies()
        centres, half_sizes = canonical_bounding_cube(canonical[0])
        self.fields = MultiPersonFields(list(zip(centres, half_sizes)), config.field)
        self.occupancy = OccupancyGrid(centres, half_sizes, resolution=config.occupancy_resolution,
                                       decay=config.occupancy_decay, threshold=config.occupancy_threshold,
                                       update_every=config.occupancy_update_every)
        self.register_buffer("background", torch.tensor(config.background, dtype=torch.float32), persistent=False)
        self._pose_cache: tuple | None = None
        self._body_cells: tuple | None = None
        self.register_buffer("body_prior_fitted", torch.tensor(False))

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
        key = (frame_position, self.smpl.betas_init.device) + tuple(p._version for p in self.smpl.parameters())
        if not torch.is_grad_enabled() and self._pose_cache is not None and self._pose_cache[0] == key:
            return self._pose_cache[1]
        params = self.smpl.frame(frame_position)
        posed = self.body_model(**params)
        canonical_vertices, canonical_transforms = self.canonical_bodies()
        shell = None
        if self.config.shell_sampling:
            shell = body_shell_grid(posed.vertices.detach(), self.config.max_skin_distance, self.config.shell_cell_size)
        people = PosedPeople(posed.vertices, posed.joint_transforms, canonical_vertices, canonical_transforms, shell)
        self._pose_cache = None if torch.is_grad_enabled() else (key, people)
        return people

    def render(self, origins: torch.Tensor, directions: torch.Tensor, frame_position: int,
               far: float = 1e3, with_collision: bool = False) -> SceneRender:
        """Render rays (R, 3) (unit directions, world metres) of one frame.
        with_collision: also return the opacities for the collision loss."""
        people = self.pose(frame_position)
        box_min, box_max = self.sampler.boxes(people.vertices.detach())
        samples = self.sampler(origins, directions, box_min, box_max, training=self.training, shell=people.shell)
        points, valid = samples.per_person()  # (L, R*S, 3), (L, R*S)
        skinned = self.deformer.inverse_multi(points, people.vertices, people.transforms,
                                              people.canonical_transforms, mask=valid)
        near_body = skinned.valid
        occupied = self.occupancy.query(skinned.points.detach()) & near_body
        canonical_directions = None
        if self.config.field.direction_sh_degree > 0:  # view-dependent colour: directions in canonical space
            ray_directions = directions[:, None, None, :].expand(samples.positions.shape)
            ray_directions = ray_directions.permute(1, 0, 2, 3).reshape(points.shape)
            canonical_directions = self.deformer.inverse_directions_multi(
                ray_directions.detach(), skinned.vertex_index, people.transforms.detach(),
                people.canonical_transforms.detach())
        density, rgb = self.fields.forward_all(skinned.points, occupied, directions=canonical_directions)
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
        collision = self.collision_opacities(people, points, occupied, density) if with_collision else None
        return SceneRender(render, empty_density, collision)

    def collision_opacities(self, people: PosedPeople, points: torch.Tensor, occupied: torch.Tensor,
                            density: torch.Tensor) -> torch.Tensor:
        """Opacities for the collision loss (eq. 12) at samples inside two avatars.

        points (L, N, 3) posed samples of each person, occupied (L, N) their usable ones,
        density (L, N) each person's own density there. Every usable sample of person p
        that lies in person q's body shell is mapped into q's canonical space and q's
        density is evaluated there too. -> (K, 2): opacity of p's and of q's field over
        min_step, for all ordered pairs p != q; K may be 0. Gradients reach both poses.
        """
        rows = []
        step = self.config.min_step
        for p in range(self.num_people):
            own = occupied[p].nonzero().squeeze(1)
            for q in range(self.num_people):
                if q == p or len(own) == 0:
                    continue
                shared = own[people.shell.query_person(points[p, own].detach(), q)] if people.shell is not None else own
                if len(shared) == 0:
                    continue
                other = self.deformer.inverse(points[p, shared], people.vertices[q], people.transforms[q],
                                              people.canonical_transforms[q])
                usable = other.valid & self.occupancy.query_person(other.points.detach(), q)
                if not usable.any():
                    continue
                density_q = self.fields[q].density(other.points[usable])
                rows.append(torch.stack([densities_to_opacities(density[p, shared[usable]], step),
                                         densities_to_opacities(density_q, step)], dim=-1))
        return torch.cat(rows) if rows else points.new_zeros(0, 2)

    def fit_fields_to_bodies(self) -> None:
        """Start every field as its person's canonical SMPL body (see `body_prior`); once per model."""
        if bool(self.body_prior_fitted) or self.config.body_prior_steps <= 0:
            return
        with torch.no_grad():
            canonical = self.canonical_bodies()[0]
        faces = self.body_model.faces.to(canonical.device)
        frozen = [p for p in self.fields.parameters() if not p.requires_grad]
        self.fields.requires_grad_(True)
        with torch.enable_grad():
            for person in range(self.num_people):
                fit_field_to_body(self.fields[person], canonical[person], faces, steps=self.config.body_prior_steps)
        for parameter in frozen:
            parameter.requires_grad_(False)
        self.body_prior_fitted.fill_(True)

    @torch.no_grad()
    def body_cells(self) -> torch.Tensor:
        """(L, R^3) bool: occupancy cells inside or on each canonical body (cached per betas)."""
        key = self.smpl.delta_betas._version
        if self._body_cells is None or self._body_cells[0] != key:
            canonical = self.canonical_bodies()[0]
            faces = self.body_model.faces.to(canonical.device)
            centres, sizes = self.occupancy.cell_centres(), self.occupancy.cell_size
            cells = torch.stack([canonical_body_cells(centres[p], canonical[p], faces, float(sizes[p]))
                                 for p in range(self.num_people)])
            self._body_cells = (key, cells)
        return self._body_cells[1]

    @torch.no_grad()
    def update_occupancy(self, step: int) -> bool:
        """Every `occupancy_update_every` steps (the only gate), re-estimate which canonical cells hold
        the avatars (a density of sigma * min_step); returns whether it ran.

        Cells inside and on the canonical body always stay occupied: a person whose field
        is faint when pruning starts would otherwise lose every cell and never learn again
        (pruned samples get no gradient).
        """
        updated = self.occupancy.update(lambda points: self.fields.density_all(points) * self.config.min_step, step)
        if updated:
            self.occupancy.keep_cells(self.body_cells())
        return updated
