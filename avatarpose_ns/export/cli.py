"""avatarpose-export: results of an avatarpose run in formats other tools read (ns-export's conventions)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
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


COMMANDS = {"poses": ExportPoses}


def entrypoint() -> None:
    tyro.extras.set_accent_color("bright_yellow")
    tyro.extras.subcommand_cli_from_dict(COMMANDS).main()


if __name__ == "__main__":
    entrypoint()
