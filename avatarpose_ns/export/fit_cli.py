"""avatarpose-fit: the silhouette fit of a sequence on its own, without training.

It runs the dataparser's part before training (read and check the sequence, refine its
initialisation to the training cameras' masks), so it fills the same cache that ``ns-train
avatarpose`` then finds, and writes the fitted poses in the export formats of
``avatarpose-export poses`` to ``<data>/smpl_fit``: a poses-only result, minutes instead of hours.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Union

import tyro

from avatarpose_ns.commands import run_command
from avatarpose_ns.dataparsers.easymocap_dataparser import EasyMocapDataParserConfig
from avatarpose_ns.dataparsers.hi4d_dataparser import Hi4DDataParserConfig

DataParsers = tyro.conf.OmitSubcommandPrefixes[Union[  # noqa: UP007 (a runtime type expression for tyro)
    Annotated[EasyMocapDataParserConfig, tyro.conf.subcommand("easymocap-data")],
    Annotated[Hi4DDataParserConfig, tyro.conf.subcommand("hi4d-data")],
]]


@dataclass
class FitArgs:
    """Fit every person's SMPL to the masks of a sequence (the one-off stage before training) and write
    the poses: <output-dir>/smpl.npz, smpl/<frame>.json and keypoints3d/<frame>.json."""

    data: Path
    """sequence folder"""
    output_dir: Path | None = None
    """folder to write the poses into; default <data>/smpl_fit"""
    dataparser: DataParsers = field(default_factory=EasyMocapDataParserConfig)
    """the sequence's layout and the fit's settings, as after ns-train's dataparser subcommand"""


def main(args: FitArgs) -> Path:
    from nerfstudio.utils.rich_utils import CONSOLE

    from avatarpose_ns.export.poses import write_pose_files

    config = args.dataparser
    config.data = args.data
    parser = config.setup()
    if not config.silhouette_fit:
        CONSOLE.print("[bold yellow]--silhouette-fit False: writing the initialisation as it is")
    seq = parser.fitted_sequence()
    output_dir = args.output_dir if args.output_dir is not None else Path(args.data) / "smpl_fit"
    written = write_pose_files(seq.init, parser.body_model(), output_dir)
    CONSOLE.print(f"[bold green]wrote {written.smpl_npz}, {written.smpl_json}/ and {written.keypoints3d}/ "
                  f"({seq.init_source})")
    return output_dir


def entrypoint() -> None:
    run_command(lambda: main(tyro.cli(FitArgs)))


if __name__ == "__main__":
    entrypoint()
