"""Animated exports for animation tools: a skinned GLB per person, one GLB with everyone, a BVH per person.

Input is SMPL sequences in the input's world frame and metres, from a trained run
(`AvatarPoseModel.smpl_sequences`, what `avatarpose-export poses` writes) or from an
``smpl.npz``; the same writers serve both. Files under ``<output_dir>/animation/``:

* ``person<pid>.glb``: that person's mesh skinned to the 24-joint SMPL skeleton, one clip;
* ``everyone.glb``: every person in one file and one clip;
* ``person<pid>.bvh``: the skeleton and motion.

Frame numbers become times at ``fps`` (the inputs hold no frame rate), counted from the
earliest exported frame, so the people of one sequence stay in step across files. Axes: see
`rig` (y-up output, ``p_out = C @ p_world``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from avatarpose_ns.body.body_model import BodyModel
from avatarpose_ns.export.bvh import write_bvh
from avatarpose_ns.export.gltf import write_glb
from avatarpose_ns.export.rig import SkinnedMesh, build_rig, world_to_output
from avatarpose_ns.export.smoothing import smooth_sequence
from avatarpose_ns.io.easymocap import SmplSequence
from avatarpose_ns.models.palette import person_colours

MeshKind = Literal["smpl", "avatar"]
DEFAULT_FPS = 30.0


@dataclass
class AnimationExport:
    """What `export_animation` wrote: person id -> path, and the file with everyone."""

    glb: dict[int, Path] = field(default_factory=dict)
    bvh: dict[int, Path] = field(default_factory=dict)
    everyone: Path | None = None

    @property
    def files(self) -> list[Path]:
        return [*self.glb.values(), *([self.everyone] if self.everyone else []), *self.bvh.values()]


def export_animation(people: dict[int, SmplSequence], body: BodyModel, output_dir: Path,
                     fps: float = DEFAULT_FPS, world_up: str = "+z", smooth_sigma: float = 0.0,
                     meshes: dict[int, SkinnedMesh] | None = None, bvh: bool = True) -> AnimationExport:
    """Write the GLBs and BVHs of ``people`` (person id -> SMPL sequence, input world frame) under
    ``output_dir/animation``. ``meshes``: person id -> bind-pose mesh replacing the SMPL body (the avatar
    surface); ``smooth_sigma``: Gaussian smoothing over time in frames (`smoothing`; 0 = none)."""
    if not people:
        raise ValueError("no people to export")
    folder = Path(output_dir) / "animation"
    first_frame = min(int(np.min(seq.frames)) for seq in people.values())
    rigs = [build_rig(smooth_sequence(seq, smooth_sigma), body, pid, fps, world_up,
                      mesh=(meshes or {}).get(pid), first_frame=first_frame)
            for pid, seq in sorted(people.items())]
    colours = person_colours(len(rigs)).tolist()
    extras = {"fps": float(fps), "world_up": world_up, "world_to_gltf": world_to_output(world_up).tolist(),
              "units": "metres", "smoothing_sigma_frames": float(smooth_sigma), "first_frame": first_frame}
    result = AnimationExport()
    for rig, colour in zip(rigs, colours):
        result.glb[rig.person_id] = write_glb(folder / f"{rig.name}.glb", [rig], [colour],
                                              {**extras, "person_id": rig.person_id})
        if bvh:
            result.bvh[rig.person_id] = write_bvh(folder / f"{rig.name}.bvh", rig)
    if len(rigs) > 1:
        result.everyone = write_glb(folder / "everyone.glb", rigs, colours, extras)
    return result


def avatar_meshes(model, resolution: int = 192) -> dict[int, SkinnedMesh]:
    """Every person's avatar surface (`meshes.canonical_surface`, coloured) brought to the T-pose with skinning
    weights (`rig.rest_pose_mesh`); a person whose surface is empty is left out (they keep the SMPL body)."""
    import torch

    from avatarpose_ns.export.meshes import canonical_surface
    from avatarpose_ns.export.rig import rest_pose_mesh

    scene = model.avatars
    out: dict[int, SkinnedMesh] = {}
    with torch.no_grad():
        canonical_vertices, canonical_transforms = scene.canonical_bodies()
        for person, pid in enumerate(model.person_ids):
            surface = canonical_surface(scene, person, resolution)
            if surface.is_empty:
                continue
            out[pid] = rest_pose_mesh(surface.vertices, surface.faces, surface.colors, canonical_vertices[person],
                                      canonical_transforms[person], scene.deformer.skinning_weights)
    return out
