"""`avatarpose-synth`: generate a synthetic multi-person sequence with ground truth."""

from __future__ import annotations

import avatarpose_ns.commands  # noqa: F401  (first: the warning filters, one-line errors)

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro
from rich.console import Console

from avatarpose_ns.synth.generate import PRESETS, SynthConfig, generate_sequence


@dataclass
class SynthArgs:
    """Generate a multi-view sequence of people in close contact, in the EasyMocap/AvatarPose layout.

    The preset sets every option; any option given on the command line overrides it.
    """

    output_dir: Path
    """folder to write the sequence into (--output, the old name, still works but is deprecated)"""
    preset: Literal["demo", "bench"] = "demo"
    """demo: 2 people, 6 cameras, 8 frames, 256 px; bench: 2 people, 8 cameras, 20 frames, 512 px"""
    seed: int | None = None
    interaction: Literal["hug", "handshake", "shoulder_walk", "dance"] | None = None
    num_people: int | None = None
    num_cameras: int | None = None
    num_frames: int | None = None
    duration_s: float | None = None
    """length of the clip in seconds (frames are spread evenly over it)"""
    resolution: str | None = None
    """image size as WxH, e.g. 320x240"""
    rig: Path | None = None
    """folder with intri.yml/extri.yml (with H_/W_) to use instead of the camera ring"""
    distortion: tuple[float, float] | None = None
    """radial lens distortion k1 k2 of the ring cameras"""
    sensor_noise: float | None = None
    lighting: Literal["headlight", "all-cameras"] | None = None
    """all-cameras (default): a light at every camera, all on at once (the same shading in every view);
    headlight: each view lit from its own camera (the shading changes with the view)"""
    keypoint_noise_scale: float | None = None
    """multiplies every error of the simulated keypoint estimator"""
    mask_errors: Literal["none", "mild", "realistic", "harsh"] | None = None
    """segmenter-like errors on the written masks (docs/data.md); the exact masks then go to mask_exact/.
    Default none: exact masks"""
    clothing: Literal["none", "tight", "loose"] | None = None
    """garments as geometry (docs/data.md): loose shirts, wide trousers, skirts, hair volume, so the
    silhouettes are larger than the SMPL body; the ground truth stays the body underneath. Default none"""
    body_model_path: Path | None = None
    """an SMPL .pkl file or folder; default: the built-in SMPL-format model"""
    quiet: bool = False


def resolve_config(args: SynthArgs) -> SynthConfig:
    """The preset with the command line's options applied."""
    config = dataclasses.replace(PRESETS[args.preset])
    overrides = {
        name: getattr(args, name)
        for name in ("seed", "interaction", "num_people", "num_cameras", "num_frames", "duration_s",
                     "rig", "distortion", "sensor_noise", "lighting", "mask_errors", "clothing",
                     "body_model_path")
        if getattr(args, name) is not None
    }
    if args.resolution is not None:
        try:
            width, height = (int(v) for v in args.resolution.lower().split("x"))
        except ValueError:
            raise ValueError(f"--resolution must look like 320x240, got '{args.resolution}'") from None
        overrides["resolution"] = (width, height)
    config = dataclasses.replace(config, **overrides)
    if args.keypoint_noise_scale is not None:
        config.keypoint_noise = dataclasses.replace(config.keypoint_noise, scale=args.keypoint_noise_scale)
    if not 2 <= config.num_people <= 4:
        raise ValueError(f"--num-people must be 2 to 4, got {config.num_people}")
    if config.num_cameras < 2 or config.num_frames < 1:
        raise ValueError("need at least 2 cameras and 1 frame")
    return config


def main(args: SynthArgs) -> dict:
    console = Console()
    config = resolve_config(args)
    summary = generate_sequence(config, args.output_dir, progress=not args.quiet)
    console.print(
        f"[bold]{args.output_dir}[/bold]: {config.interaction}, {config.num_people} people, "
        f"{config.num_cameras if config.rig is None else 'rig'} cameras, {config.num_frames} frames in {summary['total_s']} s; "
        f"keypoints3d {summary['keypoints3d_mpjpe_mm']:.1f} mm, init SMPL {summary['init_mpjpe_mm']:.1f} mm MPJPE; "
        f"GT interpenetration max {summary['interpenetration_gt']['max_depth_m'] * 100:.1f} cm"
    )
    return summary


def renamed_options(argv: list[str]) -> list[str]:
    """The command line with the deprecated ``--output`` renamed to ``--output-dir`` (with a warning)."""
    out = []
    for arg in argv:
        if arg == "--output" or arg.startswith("--output="):
            Console(stderr=True).print("[yellow]avatarpose-synth: --output is deprecated; use --output-dir[/yellow]")
            arg = arg.replace("--output", "--output-dir", 1)
        out.append(arg)
    return out


def entrypoint() -> None:
    args = tyro.cli(SynthArgs, args=renamed_options(sys.argv[1:]))
    try:
        main(args)
    except (ValueError, FileNotFoundError) as err:
        Console(stderr=True).print(f"[red]avatarpose-synth: {err}[/red]")
        sys.exit(2)


if __name__ == "__main__":
    entrypoint()
