"""`avatarpose-prepare`: calibrated videos to an `easymocap-data` sequence folder."""

from __future__ import annotations

import avatarpose_ns.commands  # noqa: F401  (first: the warning filters, one-line errors)

import logging
import sys

import tyro
from rich.console import Console
from rich.logging import RichHandler

from avatarpose_ns.prepare.calibration import CalibrationError
from avatarpose_ns.prepare.detections import DetectionError
from avatarpose_ns.prepare.frames import VideoError
from avatarpose_ns.prepare.pipeline import PrepareConfig, prepare


def entrypoint() -> None:
    config = tyro.cli(PrepareConfig)
    console = Console()
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[RichHandler(console=console)])
    try:
        prepare(config, console)
    except (CalibrationError, VideoError, DetectionError, ValueError) as err:
        console.print(f"[red]error:[/red] {err}")
        sys.exit(1)


if __name__ == "__main__":
    entrypoint()
