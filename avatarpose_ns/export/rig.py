"""One person as a skinned, animated rig: the data the glTF and BVH writers share.

The rig is SMPL's own: 24 joints named as SMPL names them, bound in the person's shaped
T-pose (betas applied, every rotation zero), rest offsets from the shaped rest joints,
one local rotation per joint and frame from the SMPL pose, and the root joint's position.

Axes. glTF and BVH are y-up, and SMPL's rest frame is too (y up, the body's left +x, the
face along +z, glTF's "front faces +z"), so the rest pose, the bind mesh and every local
rotation but the root's stay as SMPL has them. The input's world is whatever up axis its
cameras use (``world_up``, +z for EasyMocap). The rotation ``C = world_to_output(world_up)``
turns that world into the y-up output frame and is folded into the root joint alone:

    root rotation    = C @ R(global_orient)
    root translation = C @ (transl + J_0)      (J_0 the shaped rest pelvis)

so every posed point of the output is ``C @ p`` for the posed SMPL point ``p`` in the input's
world frame, in the input's metres. For ``world_up="+z"``, C is -90 degrees about x:
``(x, y, z) -> (x, z, -y)``; for ``"+y"`` it is the identity.

Skinning is SMPL's linear blend skinning without pose-corrective blend shapes (glTF and BVH
have none; the built-in body has none either, a real SMPL file's are dropped).

Shapes: F frames, V mesh vertices, M faces, 24 joints.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from avatarpose_ns.body.body_model import BodyModel
from avatarpose_ns.body.skeleton import NUM_JOINTS, SMPL_JOINT_NAMES
from avatarpose_ns.io.easymocap import SmplSequence
from avatarpose_ns.scene.transform import up_rotation

# +z up -> +y up: -90 degrees about x, (x, y, z) -> (x, z, -y)
Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def world_to_output(world_up: str) -> np.ndarray:
    """The rotation (3, 3) from the input world (up axis ``world_up``) to the y-up output frame."""
    return Z_UP_TO_Y_UP @ up_rotation(world_up)


@dataclass
class SkinnedMesh:
    """A mesh in the bind pose (the shaped T-pose) with SMPL skinning weights per vertex."""

    vertices: np.ndarray  # (V, 3) metres, SMPL's rest frame
    faces: np.ndarray  # (M, 3) int, counter-clockwise seen from outside
    weights: np.ndarray  # (V, 24), rows sum to 1
    colors: np.ndarray | None = None  # (V, 3) in [0, 1]; None: one colour for the whole mesh


@dataclass
class Rig:
    """One person's skeleton, bind mesh and motion (see the module docstring for the axes)."""

    name: str  # "person<pid>"
    person_id: int
    parents: np.ndarray  # (24,) int, -1 for the root
    rest_joints: np.ndarray  # (24, 3) shaped T-pose joints, SMPL's rest frame
    mesh: SkinnedMesh
    frames: np.ndarray  # (F,) int, the sequence's frame numbers
    times: np.ndarray  # (F,) seconds from the first frame of the export
    rotations: np.ndarray  # (F, 24, 4) local unit quaternions (x, y, z, w); the root's includes C
    root_translation: np.ndarray  # (F, 3) root joint position in the output frame
    fps: float  # frames per second of the frame numbers
    joint_names: tuple[str, ...] = SMPL_JOINT_NAMES

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def offsets(self) -> np.ndarray:
        """(24, 3) rest offset of each joint from its parent (the root's: its rest position)."""
        parent_positions = np.where(self.parents[:, None] >= 0, self.rest_joints[np.maximum(self.parents, 0)], 0.0)
        return self.rest_joints - parent_positions


def continuous_quaternions(quaternions: np.ndarray) -> np.ndarray:
    """(F, ..., 4) -> the same rotations with each frame's sign chosen nearest the previous frame's, so
    interpolation between keys takes the short way."""
    out = np.array(quaternions, dtype=np.float64)
    for i in range(1, len(out)):
        flip = np.sum(out[i] * out[i - 1], axis=-1) < 0
        out[i][flip] *= -1.0
    return out


def frame_times(frames: np.ndarray, fps: float, first_frame: int | None = None) -> np.ndarray:
    """Seconds of each frame number at ``fps`` frames per second, from ``first_frame`` (default: the
    earliest of ``frames``): gaps in the frame numbers stay gaps in time."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    frames = np.asarray(frames, dtype=np.int64)
    origin = int(frames.min()) if first_frame is None else int(first_frame)
    return (frames - origin) / float(fps)


@torch.no_grad()
def smpl_mesh(body: BodyModel, betas: np.ndarray) -> SkinnedMesh:
    """The SMPL body in the shaped T-pose with the body model's skinning weights."""
    shaped = body.shaped_vertices(torch.as_tensor(np.asarray(betas).reshape(1, -1), dtype=body.dtype))[0]
    return SkinnedMesh(shaped.double().cpu().numpy(), body.faces_np,
                       body.skinning_weights.double().cpu().numpy())


@torch.no_grad()
def rest_pose_mesh(vertices_canonical: np.ndarray, faces: np.ndarray, colors: np.ndarray | None,
                   canonical_vertices: torch.Tensor, canonical_transforms: torch.Tensor,
                   skinning_weights: torch.Tensor) -> SkinnedMesh:
    """A surface in the avatars' canonical pose (legs spread) -> the same surface in the T-pose, each vertex
    with its nearest canonical body vertex's weights: the rule `surface.repose` poses it by, so skinning the
    result reproduces the per-frame avatar meshes of `export_meshes` (before the 4-influence truncation).

    vertices_canonical (N, 3); canonical_vertices (V, 3) and canonical_transforms (24, 4, 4): the person's
    canonical body (zero translation); skinning_weights (V, 24).
    """
    from avatarpose_ns.models.deformer import forward_skinning

    device = canonical_vertices.device
    points = torch.as_tensor(vertices_canonical, dtype=canonical_transforms.dtype, device=device)
    rest = torch.eye(4, dtype=canonical_transforms.dtype, device=device).expand(NUM_JOINTS, 4, 4)
    result = forward_skinning(points, canonical_vertices, rest, canonical_transforms, skinning_weights)
    weights = skinning_weights.index_select(0, result.vertex_index)
    return SkinnedMesh(result.points.double().cpu().numpy(), np.asarray(faces, dtype=np.int64),
                       weights.double().cpu().numpy(), None if colors is None else np.asarray(colors))


@torch.no_grad()
def build_rig(seq: SmplSequence, body: BodyModel, person_id: int, fps: float, world_up: str = "+z",
              mesh: SkinnedMesh | None = None, first_frame: int | None = None) -> Rig:
    """One person's rig from their SMPL sequence (input world frame, metres); ``mesh`` defaults to the
    SMPL body (`smpl_mesh`), ``first_frame`` (time zero) to the sequence's first frame."""
    c = world_to_output(world_up)
    rest_joints = body.rest_joints(torch.as_tensor(seq.betas.reshape(1, -1), dtype=body.dtype))[0].double().numpy()
    local = Rotation.from_rotvec(seq.body_pose.reshape(-1, 3)).as_quat().reshape(seq.num_frames, NUM_JOINTS - 1, 4)
    root = (Rotation.from_matrix(c) * Rotation.from_rotvec(seq.global_orient)).as_quat()  # (F, 4)
    rotations = continuous_quaternions(np.concatenate([root[:, None], local], axis=1))
    return Rig(
        name=f"person{person_id}", person_id=int(person_id),
        parents=body.parents.detach().cpu().numpy().astype(np.int64), rest_joints=rest_joints,
        mesh=mesh if mesh is not None else smpl_mesh(body, seq.betas),
        frames=seq.frames.copy(), times=frame_times(seq.frames, fps, first_frame),
        rotations=rotations, root_translation=(seq.transl + rest_joints[0]) @ c.T, fps=float(fps),
    )
