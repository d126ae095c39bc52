"""avatarpose-render: a camera path that plays the sequence (one time per view), written as nerfstudio's
camera_path.json and rendered, with a strip of some of its views.

`ns-render interpolate` drops the cameras' times and `ns-render spiral` turns the image about the
view axis by the start camera's orientation; these paths move through time and keep the scene's
up (+z) up in every image.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
import numpy as np
import tyro


@dataclass
class _PathOptions:
    load_config: Path
    """config.yml of the run (outputs/.../config.yml)"""
    output_dir: Path | None = None
    """folder to write into (default: <run>/render/<path name>)"""
    fps: float = 24.0
    """frame rate stored in camera_path.json (for ns-render camera-path's video)"""
    downscale: float = 1.0
    """render at the training cameras' resolution divided by this"""
    strip_views: int = 6
    """views in the frame strip (strip.png)"""
    render: bool = True
    """render the views (--no-render: only write camera_path.json)"""

    name = "path"

    def poses(self, train_c2w: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def main(self) -> None:
        from nerfstudio.utils.eval_utils import eval_setup
        from nerfstudio.utils.rich_utils import CONSOLE

        from avatarpose_ns.render.paths import camera_path_json, sweep_times, vertical_fov_degrees
        from avatarpose_ns.render.render import render_path, write_strip

        if not self.load_config.is_file():
            raise SystemExit(f"{self.load_config}: no such config file")
        _, pipeline, _, step = eval_setup(self.load_config, test_mode="inference")
        model = pipeline.model
        cameras = pipeline.datamanager.train_dataset.cameras
        train_c2w = cameras.camera_to_worlds.cpu().double().numpy()
        poses = self.poses(train_c2w)
        width, height, fy = int(cameras.width[0]), int(cameras.height[0]), float(cameras.fy[0])
        path = camera_path_json(poses, sweep_times(len(poses)), vertical_fov_degrees(fy, height), width, height,
                                self.fps)
        output_dir = self.output_dir or self.load_config.parent / "render" / self.name
        output_dir.mkdir(parents=True, exist_ok=True)
        path_file = output_dir / "camera_path.json"
        path_file.write_text(json.dumps(path, indent=1))
        CONSOLE.print(f"wrote {path_file}: {len(poses)} views over frames {model.frame_numbers[0]}.."
                      f"{model.frame_numbers[-1]}")
        if not self.render:
            return
        rendered = render_path(model, path, output_dir / "images", self.downscale)
        strip = write_strip(rendered, self.strip_views, output_dir / "strip.png")
        CONSOLE.print(f"[bold green]rendered {len(rendered.images)} views into {output_dir / 'images'} "
                      f"(step {step}); strip: {strip}")


@dataclass
class Orbit(_PathOptions):
    """A circle about the people at the training cameras' mean distance and height, starting at the
    first training camera, looking at the people's centre; the sequence plays once along it."""

    num_views: int = 48
    """views on the orbit"""
    turns: float = 1.0
    """times round the people"""
    radius_scale: float = 1.0
    """orbit radius as a share of the training cameras' mean distance from the up axis"""
    height: float | None = None
    """camera height in nerfstudio's scene frame (default: the training cameras' mean)"""

    name = "orbit"

    def poses(self, train_c2w: np.ndarray) -> np.ndarray:
        from avatarpose_ns.render.paths import azimuth, orbit_poses

        positions = train_c2w[:, :, 3]
        radius = float(np.linalg.norm(positions[:, :2], axis=1).mean()) * self.radius_scale
        height = float(positions[:, 2].mean()) if self.height is None else self.height
        return orbit_poses(self.num_views, radius, height, float(azimuth(positions[0])), self.turns)


@dataclass
class ThroughCameras(_PathOptions):
    """A closed loop through the training cameras in order round the people (positions round the up
    axis, orientations slerped); the sequence plays once along it."""

    steps_per_camera: int = 8
    """views from each training camera to the next"""

    name = "cameras"

    def poses(self, train_c2w: np.ndarray) -> np.ndarray:
        from avatarpose_ns.render.paths import through_cameras_poses

        # the training set holds one image per camera and frame: keep each camera once
        _, first = np.unique(np.round(train_c2w.reshape(len(train_c2w), -1), 6), axis=0, return_index=True)
        return through_cameras_poses(train_c2w[np.sort(first)], self.steps_per_camera)


COMMANDS = {"orbit": Orbit, "cameras": ThroughCameras}


def entrypoint() -> None:
    tyro.extras.set_accent_color("bright_yellow")
    tyro.extras.subcommand_cli_from_dict(COMMANDS).main()


if __name__ == "__main__":
    entrypoint()
