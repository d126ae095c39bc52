"""avatarpose-export: results of an avatarpose run in formats other tools read (ns-export's conventions)."""

from __future__ import annotations

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
    output_dir: Path
    """folder to write into"""

    def main(self) -> None:
        from nerfstudio.utils.rich_utils import CONSOLE

        from avatarpose_ns.export.poses import export_poses

        model, step = _load_model(self.load_config)
        written = export_poses(model, self.output_dir)
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


COMMANDS = {"poses": ExportPoses, "meshes": ExportMeshes}


def entrypoint() -> None:
    tyro.extras.set_accent_color("bright_yellow")
    tyro.extras.subcommand_cli_from_dict(COMMANDS).main()


if __name__ == "__main__":
    entrypoint()
