"""Per-frame meshes of a trained run, in the input's world frame and metres.

For every selected frame and person:

* ``smpl_meshes/<frame:06d>_person<pid>.<ext>``: the posed SMPL body (the run's current
  parameters, the ones `export_poses` writes);
* ``avatar_meshes/<frame:06d>_person<pid>.<ext>``: the learned avatar's surface (see
  `surface`), extracted once per person in canonical space, coloured by the colour field at
  its canonical vertices, and reposed to the frame by forward skinning. All frames of a
  person share one triangulation, so vertex i is the same point of the body in every frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from collections.abc import Callable, Sequence

import numpy as np
import torch

from avatarpose_ns.export.surface import (
    LITE_MARCH_STEP,
    SURFACE_OPACITY,
    Surface,
    grid_points,
    isosurface,
    largest_component,
    near_or_inside_body,
    repose,
    sample_grid,
)
from avatarpose_ns.models.losses import densities_to_opacities
from avatarpose_ns.models.occupancy import OccupancyGrid

MeshFormat = Literal["ply", "obj"]


@dataclass
class MeshExport:
    """What `export_meshes` wrote, and the canonical avatar surfaces (person id -> Surface)."""

    smpl: list[Path] = field(default_factory=list)
    avatar: list[Path] = field(default_factory=list)
    surfaces: dict = field(default_factory=dict)


@torch.no_grad()
def renderable_cells(scene, person: int) -> OccupancyGrid:
    """Person ``person``'s occupancy cells the renderer can take density from: occupied, and near or inside
    the canonical body (`near_or_inside_body` at each cell centre, widened by half a cell diagonal), as a
    one-person grid to `query`."""
    occupancy = scene.occupancy
    centres = occupancy.cell_centres()[person]
    canonical = scene.canonical_bodies()[0][person]
    faces = scene.body_model.faces.to(canonical.device)
    half_diagonal = float(occupancy.cell_size[person]) * 3 ** 0.5 / 2
    near = near_or_inside_body(centres, canonical, faces, scene.config.max_skin_distance + half_diagonal)
    grid = OccupancyGrid(occupancy.centre[person:person + 1], occupancy.half_size[person:person + 1],
                         resolution=occupancy.resolution).to(centres.device)
    grid.occupied.copy_((occupancy.occupied[person].reshape(-1) & near).reshape(grid.occupied.shape))
    return grid


@torch.no_grad()
def canonical_surface(scene, person: int, resolution: int = 192, step: float = LITE_MARCH_STEP,
                      opacity: float = SURFACE_OPACITY) -> Surface:
    """Person ``person``'s (index) avatar surface in canonical space, with vertex colours.

    The opacity over ``step`` of the field's density is marched at level ``opacity`` on a
    resolution^3 grid over the field's canonical cube, where the renderer would use it
    (`renderable_cells`; the field is evaluated only there), and the largest component kept.
    """
    field_ = scene.fields[person]
    device = field_.bbox_centre.device
    cells = renderable_cells(scene, person)

    def values(points: torch.Tensor) -> torch.Tensor:
        usable = cells.query(points[None])[0].nonzero().squeeze(1)
        density = torch.zeros_like(points[:, 0]).index_copy(0, usable, field_.density(points[usable]))
        return densities_to_opacities(density, step)

    origin, spacing = grid_points(field_.bbox_centre.cpu().numpy(), float(field_.bbox_half_size), resolution)
    grid = sample_grid(values, origin, spacing, resolution, device=device)
    surface = largest_component(isosurface(grid, opacity, origin, spacing))
    if surface.is_empty:
        return surface
    points = torch.as_tensor(surface.vertices, dtype=torch.float32, device=device)
    rgb = torch.cat([field_.query(chunk)[1] for chunk in points.split(1 << 16)])
    surface.colors = rgb.clamp(0, 1).cpu().numpy()
    return surface


def write_mesh(path: Path, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None = None) -> Path:
    """PLY or OBJ (by the suffix) through trimesh; colours (N, 3) in [0, 1] become 8-bit vertex colours."""
    import trimesh

    mesh = trimesh.Trimesh(vertices=np.asarray(vertices, dtype=np.float64), faces=faces, process=False)
    if colors is not None:
        rgba = np.concatenate([np.round(np.asarray(colors) * 255), np.full((len(colors), 1), 255)], axis=1)
        mesh.visual.vertex_colors = rgba.astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    mesh.export(path)
    return path


def frame_positions(frame_numbers: Sequence[int], frames: Sequence[int] | None) -> list[int]:
    """Positions (into the run's frames) of the requested frame numbers; all frames for None."""
    if frames is None:
        return list(range(len(frame_numbers)))
    index = {int(f): i for i, f in enumerate(frame_numbers)}
    missing = [int(f) for f in frames if int(f) not in index]
    if missing:
        raise ValueError(f"frames {missing} are not in this run (it has frames {min(frame_numbers)}.."
                         f"{max(frame_numbers)}, {len(frame_numbers)} in all)")
    return [index[int(f)] for f in frames]


Progress = Callable[[str, int, int], None]
# progress(stage, done, total); stage "surfaces" (once per person) or "frames"


@torch.no_grad()
def export_meshes(model, output_dir: Path, frames: Sequence[int] | None = None, fmt: MeshFormat = "ply",
                  avatar_surface: bool = True, resolution: int = 192,
                  progress: Progress | None = None) -> MeshExport:
    """Write the SMPL and (optionally) avatar meshes of ``model`` (an AvatarPoseModel) for ``frames``
    (frame numbers; None: all) under ``output_dir``."""
    scene = model.avatars
    output_dir = Path(output_dir)
    positions = frame_positions(model.frame_numbers, frames)
    report = progress or (lambda stage, done, total: None)
    result = MeshExport()
    if avatar_surface:
        for person, pid in enumerate(model.person_ids):
            result.surfaces[pid] = canonical_surface(scene, person, resolution)
            report("surfaces", person + 1, len(model.person_ids))
    smpl_faces = scene.body_model.faces_np
    weights = scene.deformer.skinning_weights
    for done, position in enumerate(positions, start=1):
        people = scene.pose(position)
        name = f"{model.frame_numbers[position]:06d}_person{{pid}}.{fmt}"
        for person, pid in enumerate(model.person_ids):
            result.smpl.append(write_mesh(output_dir / "smpl_meshes" / name.format(pid=pid),
                                          people.vertices[person].cpu().numpy(), smpl_faces))
            surface = result.surfaces.get(pid)
            if surface is None or surface.is_empty:
                continue
            canonical = torch.as_tensor(surface.vertices, dtype=torch.float32, device=weights.device)
            posed = repose(canonical, people.canonical_vertices[person], people.transforms[person],
                           people.canonical_transforms[person], weights)
            result.avatar.append(write_mesh(output_dir / "avatar_meshes" / name.format(pid=pid),
                                            posed.cpu().numpy(), surface.faces, surface.colors))
        report("frames", done, len(positions))
    return result
