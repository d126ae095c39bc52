"""Small sequences for the dataparser tests, written in seconds.

``write_easymocap_sequence`` poses two people with hand-set SMPL parameters
(no motion solver, no keypoint fitting), renders them with the project's ray
caster through a strongly distorted lens, and writes the EasyMocap/AvatarPose
layout. ``write_hi4d_sequence`` converts such a sequence into the native Hi4D
layout in a y-up world, as Hi4D's own files are.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from scipy.spatial.transform import Rotation

from avatarpose_ns.body.body_model import BodyModel
from avatarpose_ns.dataparsers.cameras_convert import project_with_cameras
from avatarpose_ns.scene.transform import SceneTransform, transform_smpl
from avatarpose_ns.dataparsers.smpl_init import posed_joints
from avatarpose_ns.io.cameras import CameraCalib, pixel_rays, read_cameras, ring_rig, write_cameras
from avatarpose_ns.io.easymocap import SmplSequence, read_smpl_npz, write_keypoints3d_folder, write_smpl_npz
from avatarpose_ns.synth.render import MeshLayer, render_view

WIDTH, HEIGHT = 96, 80  # not square: catches swapped width/height
DISTORTION = (-0.15, 0.05)
HI4D_CAMERA_IDS = (4, 16, 28, 40, 52, 64, 76, 88)
# Hi4D's world is y-up: this rotation maps the fixture's z-up world onto it
Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
HI4D_OFFSET = np.array([0.3, -0.1, 0.5])


@dataclass
class Fixture:
    root: Path
    cameras: list[CameraCalib]
    gt: dict[int, SmplSequence]
    frames: list[int]


joints_of = posed_joints  # the package's own (F, 24, 3) posing of one person


def vertices_of(body: BodyModel, seq: SmplSequence) -> np.ndarray:
    with torch.no_grad():
        out = body(torch.tensor(seq.betas[None], dtype=torch.float32),
                   torch.tensor(seq.body_pose, dtype=torch.float32),
                   torch.tensor(seq.global_orient, dtype=torch.float32),
                   torch.tensor(seq.transl, dtype=torch.float32))
    return out.vertices.double().numpy()


def _people(body: BodyModel, frames: list[int], rng: np.random.Generator) -> dict[int, SmplSequence]:
    """Two upright people (z up) facing each other, arms lowered, drifting a little over time."""
    people = {}
    for pid, (x, yaw) in enumerate(((-0.4, 90.0), (0.4, -90.0))):
        betas = rng.normal(0.0, 0.5, 10)
        with torch.no_grad():
            j0 = body.rest_joints(torch.tensor(betas[None], dtype=torch.float32))[0, 0].double().numpy()
        n = len(frames)
        orient = (Rotation.from_euler("z", yaw, degrees=True) * Rotation.from_euler("x", 90, degrees=True)).as_rotvec()
        body_pose = np.zeros((n, 69))
        body_pose[:, 15 * 3 + 2] = -1.1  # left shoulder down
        body_pose[:, 16 * 3 + 2] = 1.1  # right shoulder down
        body_pose[:, 17 * 3 + 1] = -0.3 - 0.2 * np.arange(n)  # left elbow bends over time
        transl = np.stack([np.array([x + 0.03 * i, 0.02 * i, 0.95]) - j0 for i in range(n)])
        people[pid] = SmplSequence(betas, body_pose, np.tile(orient, (n, 1)), transl, np.asarray(frames))
    return people


def write_easymocap_sequence(root: Path, body: BodyModel, num_cameras: int = 3, num_frames: int = 3,
                             seed: int = 0) -> Fixture:
    """intri/extri, images, union and per-person masks, smpl_gt, smpl_init (GT with small noise),
    keypoints3d (GT joints with 1 cm noise) and keypoints3d_gt."""
    rng = np.random.default_rng(seed)
    frames = list(range(num_frames))
    cameras = ring_rig(num_cameras, radius=3.0, width=WIDTH, height=HEIGHT, fov_deg=62.0, dist=DISTORTION,
                       look_at=(0.0, 0.0, 0.9), rng=rng)
    write_cameras(root, cameras)
    gt = _people(body, frames, rng)
    faces = body.faces_np
    verts = {pid: vertices_of(body, seq) for pid, seq in gt.items()}
    colors = [np.tile(c, (body.num_vertices, 1)) for c in ((0.9, 0.2, 0.2), (0.2, 0.3, 0.9))]
    for cam in cameras:
        rays = pixel_rays(cam)
        for i, frame in enumerate(frames):
            layers = [MeshLayer(verts[pid][i], faces, colors[pid]) for pid in gt]
            result = render_view(layers, cam, rays=rays)
            name = f"{frame:06d}"
            (root / "images" / cam.name).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "images" / cam.name / f"{name}.jpg"), result.rgb[..., ::-1].copy(),
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            (root / "mask" / cam.name).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "mask" / cam.name / f"{name}.png"),
                        ((result.person_index >= 0) * 255).astype(np.uint8))
            for pid in gt:
                (root / "mask" / cam.name / str(pid)).mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(root / "mask" / cam.name / str(pid) / f"{name}.png"),
                            ((result.person_index == pid) * 255).astype(np.uint8))
    write_smpl_npz(root / "smpl_gt" / "smpl.npz", gt)
    init = {pid: SmplSequence(s.betas, s.body_pose + rng.normal(0, 0.02, s.body_pose.shape), s.global_orient,
                              s.transl + rng.normal(0, 0.01, s.transl.shape), s.frames) for pid, s in gt.items()}
    write_smpl_npz(root / "smpl_init" / "smpl.npz", init)
    joints = {pid: joints_of(body, seq) for pid, seq in gt.items()}
    write_keypoints3d_folder(root / "keypoints3d_gt", {f: {p: joints[p][i] for p in gt} for i, f in enumerate(frames)})
    noisy = {p: joints[p] + rng.normal(0, 0.01, joints[p].shape) for p in gt}
    write_keypoints3d_folder(root / "keypoints3d", {f: {p: noisy[p][i] for p in gt} for i, f in enumerate(frames)})
    return Fixture(root, cameras, gt, frames)


def write_hi4d_sequence(source: Path, root: Path, body: BodyModel, with_init: bool = True) -> dict[int, SmplSequence]:
    """Convert an EasyMocap-layout fixture into native Hi4D files in a y-up world
    (``x_hi4d = Z_UP_TO_Y_UP @ x + HI4D_OFFSET``). Returns the ground truth in the Hi4D world."""
    rot, off = Z_UP_TO_Y_UP, HI4D_OFFSET
    cams = list(read_cameras(source).values())
    ids = list(HI4D_CAMERA_IDS[: len(cams)])
    extr = []
    for cam in cams:  # x_cam = R X + T with X = rot^T (X' - off)
        R = cam.R @ rot.T
        extr.append(np.concatenate([R, (cam.T - R @ off)[:, None]], axis=1))
    (root / "cameras").mkdir(parents=True, exist_ok=True)
    np.savez(root / "cameras" / "rgb_cameras.npz", ids=np.array(ids), intrinsics=np.stack([c.K for c in cams]),
             extrinsics=np.stack(extr), dist_coeffs=np.stack([c.dist for c in cams]))
    for cam, cam_id in zip(cams, ids):
        shutil.copytree(source / "images" / cam.name, root / "images" / str(cam_id))
        seg = root / "seg" / "img_seg_mask" / str(cam_id)
        shutil.copytree(source / "mask" / cam.name / "0", seg / "0")
        shutil.copytree(source / "mask" / cam.name / "1", seg / "1")
        (seg / "all").mkdir(parents=True)
        for png in sorted((source / "mask" / cam.name).glob("*.png")):
            shutil.copy(png, seg / "all" / png.name)

    def to_hi4d(people: dict[int, SmplSequence]) -> dict[int, SmplSequence]:
        out = {}
        for pid, seq in people.items():
            with torch.no_grad():
                j0 = body.rest_joints(torch.tensor(seq.betas[None], dtype=torch.float32))[0, 0].double().numpy()
            out[pid] = transform_smpl(seq, rot, off, j0)
        return out

    gt = to_hi4d(read_smpl_npz(source / "smpl_gt" / "smpl.npz"))
    (root / "smpl").mkdir(parents=True)
    joints = {p: joints_of(body, s) for p, s in gt.items()}
    verts = {p: vertices_of(body, s) for p, s in gt.items()}
    for i, frame in enumerate(gt[0].frames):
        np.savez(root / "smpl" / f"{frame:06d}.npz",
                 betas=np.stack([gt[p].betas for p in gt]), body_pose=np.stack([gt[p].body_pose[i] for p in gt]),
                 global_orient=np.stack([gt[p].global_orient[i] for p in gt]),
                 transl=np.stack([gt[p].transl[i] for p in gt]), joints_3d=np.stack([joints[p][i] for p in gt]),
                 verts=np.stack([verts[p][i] for p in gt]).astype(np.float32))
    np.savez(root / "meta.npz", start=int(gt[0].frames[0]), end=int(gt[0].frames[-1]),
             genders=np.array(["neutral"] * 2))
    if with_init:
        write_smpl_npz(root / "smpl_init" / "smpl.npz", to_hi4d(read_smpl_npz(source / "smpl_init" / "smpl.npz")))
    return gt


THICK_JOINTS = [0, 1, 2, 3, 4, 5, 6, 9, 12, 15, 16, 17]  # torso, hips, knees, neck, head, shoulders


def mask_hits(outputs, people: dict[int, SmplSequence], body_model: BodyModel,
              joint_ids: list[int] | None = None) -> np.ndarray:
    """For every image, whether each GT joint (input world) projected through the dataparser's transform and
    nerfstudio cameras falls on a foreground pixel of the undistorted union mask."""
    transform = SceneTransform.from_dict(outputs.metadata["world_to_scene"])
    joints = {pid: joints_of(body_model, seq) for pid, seq in people.items()}
    hits = []
    for i, (mask_file, frame) in enumerate(zip(outputs.mask_filenames, outputs.metadata["image_frame_indices"])):
        mask = cv2.imread(str(mask_file), cv2.IMREAD_UNCHANGED)
        assert mask.ndim == 2 and set(np.unique(mask)) <= {0, 255}
        assert mask.shape == (int(outputs.cameras.height[i]), int(outputs.cameras.width[i]))
        for pid, seq in people.items():
            points = joints[pid][list(seq.frames).index(frame)]
            points = points if joint_ids is None else points[joint_ids]
            uv = project_with_cameras(outputs.cameras, i, torch.tensor(transform.to_scene(points))).numpy()
            cols, rows = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)
            inside = (cols >= 0) & (cols < mask.shape[1]) & (rows >= 0) & (rows < mask.shape[0])
            assert inside.all(), f"joints outside image {i}"
            hits.append(mask[rows, cols] > 0)
    return np.concatenate(hits)
