"""avatarpose-export: results of an avatarpose run in formats other tools read (ns-export's conventions)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import tyro


@dataclass
class ExportPoses:
    """SMPL parameters of every person and frame as <output-dir>/smpl.npz (AvatarPose layout, input world frame)."""

    load_config: Path
    """config.yml of the run (outputs/.../config.yml)"""
    output_dir: Path
    """folder to write into"""

    def main(self) -> None:
        from nerfstudio.utils.eval_utils import eval_setup
        from nerfstudio.utils.rich_utils import CONSOLE

        from avatarpose_ns.export.poses import export_poses

        if not self.load_config.is_file():
            raise SystemExit(f"{self.load_config}: no such config file")
        _, pipeline, _, step = eval_setup(self.load_config, test_mode="inference")
        path = export_poses(pipeline.model, self.output_dir)
        CONSOLE.print(f"[bold green]wrote {path} (step {step})")


COMMANDS = {"poses": ExportPoses}


def entrypoint() -> None:
    tyro.extras.set_accent_color("bright_yellow")
    tyro.extras.subcommand_cli_from_dict(COMMANDS).main()


if __name__ == "__main__":
    entrypoint()
