"""Write a complete synthetic sequence in the EasyMocap / AvatarPose layout.

    <out>/intri.yml, extri.yml                   cameras (OpenCV FileStorage)
    <out>/images/<cam>/<frame:06d>.jpg           renders
    <out>/mask/<cam>/<frame:06d>.png             union foreground mask, 0/255
    <out>/mask/<cam>/<pid>/<frame:06d>.png       visible part of person <pid>, 0/255
    <out>/mask_exact/...                         the exact masks, same layout (only with mask errors)
    <out>/smpl_gt/smpl.npz, keypoints3d_gt/      ground truth (24 SMPL joints, metres)
    <out>/keypoints3d/<frame:06d>.json           simulated 3D keypoint estimator
    <out>/smpl_init/smpl.npz, keypoints3d_init/  SMPL fitted to those keypoints
    <out>/annots/<cam>/<frame:06d>.json          simulated 2D detections (24 SMPL joints)
    <out>/preview.png, meta.json
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from rich.progress import Progress

from avatarpose_ns.body.body_model import BodyModel
from avatarpose_ns.body.skeleton import SMPL_PARENTS
from avatarpose_ns.eval.interpenetration import interpenetration
from avatarpose_ns.fitting.smpl_fit import FitConfig, fit_smpl_to_joints
from avatarpose_ns.io.cameras import CameraCalib, pixel_rays, project_points, read_cameras, ring_rig, write_cameras
from avatarpose_ns.io.easymocap import SmplSequence, write_annots, write_keypoints3d_folder, write_smpl_npz
from avatarpose_ns.synth.appearance import sample_style, vertex_colors, vertex_regions
from avatarpose_ns.synth.clothing import Outfit, clothing_config, fit_skirt, garment_thickness
from avatarpose_ns.synth.keypoints import (
    KeypointNoiseConfig, occlusion_by_others, simulate_keypoints2d, simulate_keypoints3d,
)
from avatarpose_ns.synth.mask_errors import MaskCorruptor, forearms_in_view, mask_error_config
from avatarpose_ns.synth.motions import INTERACTIONS, generate_motion
from avatarpose_ns.synth.render import MeshLayer, render_view

MASK_ERROR_STREAM = 0x6D61736B
"""the mask errors draw from their own generator, seeded with (seed, this), so they leave the
motion, images and keypoints of a seed as they are"""
CLOTHING_STREAM = 0x636C6F74
"""so do the clothing's choices (who wears a skirt)"""

PERSON_COLORS_BGR = ((60, 60, 230), (230, 140, 40), (60, 200, 60), (200, 60, 200))


@dataclass
class SynthConfig:
    """What to generate. The presets in `PRESETS` fill these; every field can be overridden."""

    interaction: str = "hug"
    num_people: int = 2
    num_cameras: int = 6
    num_frames: int = 8
    duration_s: float = 2.4
    resolution: tuple[int, int] = (256, 256)  # width, height
    camera_radius_m: float = 3.0
    camera_heights_m: tuple[float, ...] = (1.1, 2.1, 1.5)
    fov_deg: float | None = None  # None: just wide enough for everyone in every frame
    distortion: tuple[float, float] = (-0.05, 0.01)  # k1, k2
    rig: Path | None = None  # a folder (or intri.yml) with an existing rig; overrides the ring
    sensor_noise: float = 0.01
    background: tuple[float, float, float] = (0.5, 0.5, 0.5)
    lighting: str = "all-cameras"
    """"all-cameras": a light at every camera, all on at once (the same shading in every view, as in
    a real synchronised capture); "headlight": each view lit from its own camera (the shading
    changes with the view, which no view-independent avatar colour can reproduce)"""
    seed: int = 0
    body_model_path: Path | None = None
    keypoint_noise: KeypointNoiseConfig = field(default_factory=KeypointNoiseConfig)
    mask_errors: str = "none"
    """segmenter-like errors on the written masks (`mask_errors.MASK_ERROR_LEVELS`); "none": exact"""
    clothing: str = "none"
    """garments as geometry (`clothing.CLOTHING_LEVELS`): "none" bare SMPL, "tight", "loose" (skirts,
    wide trousers, hair volume); the ground truth stays the body underneath"""


PRESETS: dict[str, SynthConfig] = {
    "demo": SynthConfig(),
    "bench": SynthConfig(num_cameras=8, num_frames=20, duration_s=3.0, resolution=(512, 512)),
}


def _pose_all(body: BodyModel, people: dict[int, SmplSequence]) -> tuple[np.ndarray, np.ndarray]:
    """Posed vertices (K, F, V, 3) and joints (K, F, 24, 3) in the world frame."""
    vertices, joints = [], []
    with torch.no_grad():
        for seq in people.values():
            out = body(torch.tensor(seq.betas[None], dtype=torch.float32),
                       torch.tensor(seq.body_pose, dtype=torch.float32),
                       torch.tensor(seq.global_orient, dtype=torch.float32),
                       torch.tensor(seq.transl, dtype=torch.float32))
            vertices.append(out.vertices.double().numpy())
            joints.append(out.joints.double().numpy())
    return np.stack(vertices), np.stack(joints)


def _cameras(config: SynthConfig, joints: np.ndarray, rng: np.random.Generator) -> list[CameraCalib]:
    if config.rig is not None:
        folder = config.rig.parent if config.rig.is_file() else config.rig
        cameras = list(read_cameras(folder).values())
        missing = [c.name for c in cameras if c.width <= 0 or c.height <= 0]
        if missing:
            raise ValueError(f"{folder}: cameras {missing} have no H_/W_ image size in intri.yml")
        return cameras
    centre = joints[:, :, 0].reshape(-1, 3).mean(0)
    look_at = np.array([centre[0], centre[1], 0.9])
    width, height = config.resolution
    fov_deg = config.fov_deg
    if fov_deg is None:  # the bounding sphere of all joints, plus a margin for the body's surface
        extent = np.linalg.norm(joints.reshape(-1, 3) - look_at, axis=1).max() + 0.15
        fov_deg = float(np.degrees(2 * np.arctan(1.1 * extent / config.camera_radius_m)))
        fov_deg *= max(1.0, height / width)  # ring_rig's field of view is horizontal
    return ring_rig(
        config.num_cameras, radius=config.camera_radius_m, heights=config.camera_heights_m, width=width,
        height=height, fov_deg=fov_deg, dist=config.distortion, look_at=tuple(look_at), rng=rng,
    )


def draw_skeletons(image: np.ndarray, joints: np.ndarray, cam: CameraCalib) -> np.ndarray:
    """Draw each person's 24-joint skeleton (joints (K, 24, 3)) on a BGR image."""
    canvas = image.copy()
    for person, person_joints in enumerate(joints):
        uv = project_points(person_joints, cam)
        color = PERSON_COLORS_BGR[person % len(PERSON_COLORS_BGR)]
        for child, parent in enumerate(SMPL_PARENTS):
            if parent >= 0:
                p0 = tuple(int(round(x)) for x in uv[parent])
                p1 = tuple(int(round(x)) for x in uv[child])
                cv2.line(canvas, p0, p1, color, 2, cv2.LINE_AA)
        for point in uv:
            cv2.circle(canvas, tuple(int(round(x)) for x in point), 2, (255, 255, 255), -1, cv2.LINE_AA)
    return canvas


def _preview(images: list[np.ndarray], joints: np.ndarray, cameras: list[CameraCalib]) -> np.ndarray:
    """All views of one frame side by side (two rows when many), GT skeletons drawn."""
    tiles = [draw_skeletons(img, joints, cam) for img, cam in zip(images, cameras)]
    height = min(t.shape[0] for t in tiles)
    tiles = [cv2.resize(t, (int(t.shape[1] * height / t.shape[0]), height)) for t in tiles]
    columns = int(np.ceil(len(tiles) / 2)) if len(tiles) > 4 else len(tiles)
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[i:i + columns], axis=1) for i in range(0, len(tiles), columns)]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    return np.concatenate(rows, axis=0)


def _write_masks(folder: Path, name: str, labels: np.ndarray, num_people: int) -> None:
    """The union mask and each person's mask (0/255 PNGs) of a person-index map."""
    cv2.imwrite(str(folder / f"{name}.png"), ((labels >= 0) * 255).astype(np.uint8))
    for pid in range(num_people):
        cv2.imwrite(str(folder / str(pid) / f"{name}.png"), ((labels == pid) * 255).astype(np.uint8))


GENERATION_THREADS = 2
"""torch threads while generating: float32 sums depend on how torch splits them over threads, and the
motion solver carries such differences far (up to 0.4 rad in a joint between 1 and 2 threads), so a
seed gives the same sequence across thread counts only with a fixed count (2: the benchmark sequences were made
so). Other CPUs (other SIMD kernels) can still give another motion for the same seed."""


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """torch's intra-op thread count set to `count` inside the block, restored after it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def generate_sequence(config: SynthConfig, output: Path, progress: bool = True) -> dict:
    """Generate, render and write one sequence; returns the summary also written to meta.json."""
    with torch_threads(GENERATION_THREADS):
        return _generate_sequence(config, output, progress)


def _generate_sequence(config: SynthConfig, output: Path, progress: bool) -> dict:
    if config.interaction not in INTERACTIONS:
        raise ValueError(f"unknown interaction '{config.interaction}', choose from {INTERACTIONS}")
    mask_errors = mask_error_config(config.mask_errors)
    clothing = clothing_config(config.clothing)
    if config.lighting not in ("headlight", "all-cameras"):
        raise ValueError(f"lighting must be 'headlight' or 'all-cameras', got '{config.lighting}'")
    started = time.perf_counter()
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    body = BodyModel(config.body_model_path)
    faces = body.faces_np
    summary: dict = {"config": json.loads(json.dumps(asdict(config), default=str)),
                     "body_model": str(body.model_path)}

    people = generate_motion(body, config.interaction, config.num_people, config.num_frames, config.duration_s, rng)
    vertices, joints = _pose_all(body, people)
    cameras = _cameras(config, joints, rng)
    write_cameras(output, cameras)
    summary["interpenetration_gt"] = interpenetration(vertices, faces)

    colors, outfits = [], []
    skinning = body.skinning_weights.double().numpy()
    clothing_rng = np.random.default_rng([config.seed, CLOTHING_STREAM])
    for person, seq in people.items():
        betas = torch.tensor(seq.betas[None], dtype=torch.float32)
        with torch.no_grad():
            rest = body.shaped_vertices(betas)[0].double().numpy()
            rest_joints = body.rest_joints(betas)[0].double().numpy()
        style = sample_style(rng, person)
        colors.append(vertex_colors(rest, skinning, rest_joints, style))
        regions = vertex_regions(rest, skinning, rest_joints, style)
        skirt = fit_skirt(rest, rest_joints, clothing) if clothing_rng.random() < clothing.skirt_share else None
        outfits.append(Outfit(garment_thickness(regions, skinning.argmax(1), faces, clothing), skirt, style.trousers))
    if clothing.active:
        summary["clothing"] = {"level": config.clothing, "skirts": [o.skirt is not None for o in outfits],
                               "max_thickness_m": [round(float(o.thickness.max()), 4) for o in outfits]}

    num_people, num_frames = joints.shape[:2]
    person_maps = [np.zeros((num_frames, c.height, c.width), np.int16) for c in cameras]
    depth_maps = [np.zeros((num_frames, c.height, c.width), np.float32) for c in cameras]
    preview_frame = num_frames // 2
    preview_images: list[np.ndarray] = []
    lights = np.stack([cam.center for cam in cameras]) if config.lighting == "all-cameras" else None
    corrupt = MaskCorruptor(mask_errors, len(cameras), num_people, config.resolution,
                            np.random.default_rng([config.seed, MASK_ERROR_STREAM]))
    mask_folders = ("mask", "mask_exact") if mask_errors.active else ("mask",)
    with Progress(disable=not progress) as bar:
        task = bar.add_task("rendering", total=num_frames * len(cameras))
        for c, cam in enumerate(cameras):
            for folder in mask_folders:
                for pid in range(num_people):
                    (output / folder / cam.name / str(pid)).mkdir(parents=True, exist_ok=True)
            (output / "images" / cam.name).mkdir(parents=True, exist_ok=True)
            rays = pixel_rays(cam)  # the same for every frame of this camera
            for f in range(num_frames):
                layers = [MeshLayer(*outfits[p].dress(vertices[p, f], faces, colors[p], joints[p, f]))
                          for p in range(num_people)]
                result = render_view(layers, cam, background=config.background, noise_std=config.sensor_noise, rng=rng,
                                     rays=rays, light_positions=lights)
                name = f"{f:06d}"
                bgr = np.ascontiguousarray(result.rgb[..., ::-1])
                cv2.imwrite(str(output / "images" / cam.name / f"{name}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
                labels = {"mask": result.person_index}
                if mask_errors.active:
                    labels = {"mask": corrupt(result.person_index, c, forearms_in_view(joints[:, f], cam)),
                              "mask_exact": result.person_index}
                for folder, label_map in labels.items():
                    _write_masks(output / folder / cam.name, name, label_map, num_people)
                person_maps[c][f] = result.person_index
                depth_maps[c][f] = result.depth
                if f == preview_frame:
                    preview_images.append(bgr)
                bar.advance(task)
    summary["render_s"] = round(time.perf_counter() - started, 2)
    if mask_errors.active:
        summary["mask_errors"] = {"level": config.mask_errors, **corrupt.stats.summary()}

    frames = np.arange(num_frames)
    write_smpl_npz(output / "smpl_gt" / "smpl.npz", people)
    write_keypoints3d_folder(output / "keypoints3d_gt",
                             {f: {p: joints[p, f] for p in range(num_people)} for f in frames})

    hidden = occlusion_by_others(joints, cameras, person_maps, depth_maps)
    keypoints = simulate_keypoints3d(joints, cameras, hidden, rng, config.keypoint_noise)
    write_keypoints3d_folder(output / "keypoints3d", {f: {p: keypoints[p, f] for p in range(num_people)} for f in frames})
    # A multi-view estimator's 3D keypoints are triangulated 2D detections, so the detections carry
    # the same structured errors (contact confusion, swaps, errors that persist over frames) in
    # every view: project the 3D keypoints, then add each view's own pixel noise.
    for c, cam in enumerate(cameras):
        detections = simulate_keypoints2d(np.ascontiguousarray(keypoints[..., :3]), cam, hidden[c], rng,
                                          config.keypoint_noise)
        for f in frames:
            write_annots(output / "annots" / cam.name / f"{f:06d}.json",
                         [(p, detections[p, f]) for p in range(num_people)], cam.width, cam.height,
                         filename=f"images/{cam.name}/{f:06d}.jpg")

    fit_started = time.perf_counter()
    init = {p: fit_smpl_to_joints(body, keypoints[p, :, :, :3], keypoints[p, :, :, 3], frames, FitConfig())
            for p in range(num_people)}
    summary["fit_s"] = round(time.perf_counter() - fit_started, 2)
    write_smpl_npz(output / "smpl_init" / "smpl.npz", init)
    _, init_joints = _pose_all(body, init)
    write_keypoints3d_folder(output / "keypoints3d_init",
                             {f: {p: init_joints[p, f] for p in range(num_people)} for f in frames})

    cv2.imwrite(str(output / "preview.png"), _preview(preview_images, joints[:, preview_frame], cameras))
    summary["keypoints3d_mpjpe_mm"] = float(np.linalg.norm(keypoints[..., :3] - joints, axis=-1).mean() * 1000)
    summary["init_mpjpe_mm"] = float(np.linalg.norm(init_joints - joints, axis=-1).mean() * 1000)
    summary["total_s"] = round(time.perf_counter() - started, 2)
    (output / "meta.json").write_text(json.dumps(summary, indent=2))
    return summary
