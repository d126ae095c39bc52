"""avatarpose-export: results of an avatarpose run in formats other tools read (ns-export's conventions)."""

from __future__ import annotations

import avatarpose_ns.commands  # noqa: F401  (first: the warning filters, one-line errors)

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro


def _load_model(load_config: Path):
    """The trained AvatarPoseModel of a run and its step (nerfstudio's eval_setup, inference mode)."""
    from nerfstudio.utils.eval_utils import eval_setup

    if not load_config.is_file():
        raise SystemExit(f"{load_config}: no such config file")
    _, pipeline, _, step = eval_setup(load_config, test_mode="inference")
    return pipeline.model, step


@dataclass
class ExportPoses:
    """Every person's SMPL parameters and joints, in the input's world frame: <output-dir>/smpl.npz (AvatarPose),
    smpl/<frame>.json (EasyMocap Rh/Th/poses/shapes) and keypoints3d/<frame>.json (24 SMPL joints)."""

    load_config: Path
    """config.yml of the run (outputs/.../config.yml)"""
    output_dir: Path | None = None
    """folder to write into; default <run>/export (the folder holding config.yml)"""

    def main(self) -> None:
        from nerfstudio.utils.rich_utils import CONSOLE

        from avatarpose_ns.export.poses import export_poses

        model, step = _load_model(self.load_config)
        written = export_poses(model, self.output_dir if self.output_dir is not None
                               else Path(self.load_config).parent / "export")
        CONSOLE.print(f"[bold green]wrote {written.smpl_npz}, {written.smpl_json}/ and {written.keypoints3d}/ "
                      f"(step {step})")


@dataclass
class ExportMeshes:
    """Per frame and person, in the input's world frame: the posed SMPL mesh
    (smpl_meshes/<frame>_person<pid>.ply) and the learned avatar's surface, coloured by its colour field
    (avatar_meshes/<frame>_person<pid>.ply; the opacity-0.5 level over 1 cm, reposed by skinning)."""

    load_config: Path
    """config.yml of the run (outputs/.../config.yml)"""
    output_dir: Path
    """folder to write into"""
    format: Literal["ply", "obj"] = "ply"
    """mesh file format"""
    avatar_surface: bool = True
    """also extract and write the avatars' surfaces (else only the SMPL meshes)"""
    resolution: int = 192
    """marching-cubes grid points per axis over each avatar's canonical cube (192: about 1.1 cm)"""
    frames: list[int] | None = None
    """frame numbers to write (default: every frame of the run)"""

    def main(self) -> None:
        from nerfstudio.utils.rich_utils import CONSOLE
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from avatarpose_ns.export.meshes import export_meshes

        if self.resolution < 8:
            raise SystemExit(f"--resolution {self.resolution}: need at least 8 grid points per axis")
        model, step = _load_model(self.load_config)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=CONSOLE) as bar:
            tasks = {}

            def progress(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    label = "avatar surfaces" if stage == "surfaces" else "frames"
                    tasks[stage] = bar.add_task(label, total=total)
                bar.update(tasks[stage], completed=done)

            try:
                written = export_meshes(model, self.output_dir, frames=self.frames, fmt=self.format,
                                        avatar_surface=self.avatar_surface, resolution=self.resolution,
                                        progress=progress)
            except ValueError as err:  # frames the run does not have
                raise SystemExit(str(err)) from None
        for pid, surface in written.surfaces.items():
            if surface.is_empty:
                CONSOLE.print(f"[bold yellow]person {pid}: the avatar's density never reaches the surface level; "
                              "no avatar mesh written")
        CONSOLE.print(f"[bold green]wrote {len(written.smpl)} SMPL meshes to {self.output_dir / 'smpl_meshes'}"
                      + (f" and {len(written.avatar)} avatar meshes to {self.output_dir / 'avatar_meshes'}"
                         if self.avatar_surface else "") + f" (step {step})")


@dataclass
class ExportAnimation:
    """Skinned, animated files for animation tools, in the input's world frame and metres turned y-up:
    animation/person<pid>.glb (the body skinned to the 24-joint SMPL skeleton, one clip), animation/everyone.glb
    (all people) and animation/person<pid>.bvh. From a run (--load-config) or from SMPL poses (--smpl)."""

    output_dir: Path
    """folder to write into (the files go to <output-dir>/animation/)"""
    load_config: Path | None = None
    """config.yml of a run: export its current SMPL sequences (what `poses` writes)"""
    smpl: Path | None = None
    """instead of a run: an smpl.npz (AvatarPose layout) to export"""
    fps: float = 30.0
    """frames per second of the frame numbers (the inputs hold no frame rate)"""
    mesh: Literal["smpl", "avatar"] = "smpl"
    """skinned mesh: the SMPL body, or the run's avatar surface with its colours (needs --load-config)"""
    smooth_sigma: float = 0.0
    """Gaussian smoothing of the motion over time, in frames (0: none)"""
    world_up: Literal["+z", "-z", "+y", "-y", "+x", "-x"] | None = None
    """up axis of the input world (turned into glTF's and BVH's +y); default: the run's, or +z for --smpl"""
    body_model_path: Path | None = None
    """SMPL .pkl or folder for --smpl (default: the built-in body); a run uses its own"""
    resolution: int = 192
    """--mesh avatar: marching-cubes grid points per axis (as `meshes --resolution`)"""

    def main(self) -> None:
        from nerfstudio.utils.rich_utils import CONSOLE

        from avatarpose_ns.export.animation import avatar_meshes, export_animation

        if (self.load_config is None) == (self.smpl is None):
            raise SystemExit("give one of --load-config (a run) or --smpl (an smpl.npz)")
        if self.fps <= 0 or self.smooth_sigma < 0:
            raise SystemExit(f"--fps must be > 0 and --smooth-sigma >= 0 (got {self.fps}, {self.smooth_sigma})")
        meshes = None
        if self.smpl is not None:
            from avatarpose_ns.body.body_model import BodyModel
            from avatarpose_ns.io.easymocap import FormatError, read_smpl_npz

            if self.mesh == "avatar":
                raise SystemExit("--mesh avatar needs a run (--load-config): an smpl.npz has no avatar")
            try:
                people = read_smpl_npz(self.smpl)
            except (FileNotFoundError, FormatError) as err:
                raise SystemExit(str(err)) from None
            body = BodyModel(self.body_model_path)
            world_up, step = self.world_up or "+z", None
        else:
            model, step = _load_model(self.load_config)
            people, body, world_up = model.smpl_sequences(), model.body_model, self.world_up or model.world_up
            if self.mesh == "avatar":
                if self.resolution < 8:
                    raise SystemExit(f"--resolution {self.resolution}: need at least 8 grid points per axis")
                meshes = avatar_meshes(model, self.resolution)
                for pid in sorted(set(people) - set(meshes)):
                    CONSOLE.print(f"[bold yellow]person {pid}: the avatar's density never reaches the surface "
                                  "level; the SMPL body is skinned instead")
        try:
            written = export_animation(people, body, self.output_dir, fps=self.fps, world_up=world_up,
                                       smooth_sigma=self.smooth_sigma, meshes=meshes)
        except ValueError as err:  # e.g. unevenly spaced frames for BVH
            raise SystemExit(str(err)) from None
        CONSOLE.print(f"[bold green]wrote {', '.join(p.name for p in written.files)} to "
                      f"{self.output_dir / 'animation'}" + (f" (step {step})" if step is not None else ""))


COMMANDS = {"poses": ExportPoses, "meshes": ExportMeshes, "animation": ExportAnimation}


def entrypoint() -> None:
    tyro.extras.set_accent_color("bright_yellow")
    tyro.extras.subcommand_cli_from_dict(COMMANDS).main()


if __name__ == "__main__":
    entrypoint()
