"""A thin layer over `smplx.SMPL` that also returns what inverse skinning needs.

smplx gives posed vertices and joints; an inverse-LBS deformer additionally needs
the per-vertex skinning weights and the 24 rigid joint transforms that map the
shaped rest pose to the posed body. Both come from smplx's own `lbs` helpers, so
a real SMPL file and the built-in model run through the same code path.

Shapes: B is the batch (frames or people), V vertices, 24 SMPL joints.
"""

from __future__ import annotations

import contextlib
import io
import math
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import smplx
from smplx.lbs import batch_rigid_transform, batch_rodrigues, blend_shapes, lbs

from avatarpose_ns.commands import InputError
from avatarpose_ns.body.skeleton import NUM_BETAS, NUM_JOINTS

# file names a user's SMPL folder may hold, first match wins
SMPL_FILE_NAMES = (
    "SMPL_NEUTRAL.pkl",
    "smpl/SMPL_NEUTRAL.pkl",
    "basicmodel_neutral_lbs_10_207_0_v1.1.0.pkl",
    "basicModel_neutral_lbs_10_207_0_v1.0.0.pkl",
)
_REQUIRED_FIELDS = ("v_template", "f", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table")


class BodyModelError(InputError):
    """The body model file is missing or is not an SMPL model."""


@dataclass
class BodyOutput:
    """Posed bodies. `joint_transforms[b, j]` maps a shaped rest-pose point rigidly
    attached to joint j to its posed world position (translation included)."""

    vertices: torch.Tensor  # (B, V, 3)
    joints: torch.Tensor  # (B, 24, 3)
    joint_transforms: torch.Tensor  # (B, 24, 4, 4)
    shaped_vertices: torch.Tensor  # (B, V, 3) rest pose with shape applied


def resolve_body_model_path(path: str | Path | None = None) -> Path:
    """Return the SMPL pickle to load: the built-in model for None, a file, or a file inside a folder."""
    if path is None:
        from avatarpose_ns.body.builtin import builtin_model_path

        return builtin_model_path()
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        for name in SMPL_FILE_NAMES:
            if (path / name).is_file():
                return path / name
        raise BodyModelError(f"{path}: no SMPL model in this folder (looked for {', '.join(SMPL_FILE_NAMES)})")
    raise BodyModelError(f"{path}: body model file not found")


def validate_smpl_file(path: Path, num_betas: int = NUM_BETAS) -> None:
    """Raise BodyModelError naming `path` unless it holds SMPL's fields with consistent shapes."""
    try:
        with open(path, "rb") as handle:
            data = pickle.load(handle, encoding="latin1")
    except ModuleNotFoundError as err:
        raise BodyModelError(
            f"{path}: the pickle needs the module '{err.name}' (original SMPL files need chumpy); "
            "use a cleaned SMPL file without chumpy objects"
        ) from None
    except Exception as err:
        raise BodyModelError(f"{path}: not an SMPL model pickle ({type(err).__name__}: {err})") from None
    if not isinstance(data, dict):
        raise BodyModelError(f"{path}: not an SMPL model (the pickle holds a {type(data).__name__}, not a dict)")
    missing = [k for k in _REQUIRED_FIELDS if k not in data]
    if missing:
        raise BodyModelError(f"{path}: not an SMPL model (missing fields {missing})")
    num_vertices = np.shape(data["v_template"])[0]
    checks = {
        "v_template": (np.shape(data["v_template"]), (num_vertices, 3)),
        "weights": (np.shape(data["weights"]), (num_vertices, NUM_JOINTS)),
        "J_regressor": (tuple(data["J_regressor"].shape), (NUM_JOINTS, num_vertices)),
        "kintree_table": (np.shape(data["kintree_table"]), (2, NUM_JOINTS)),
    }
    for name, (got, want) in checks.items():
        if tuple(got) != want:
            raise BodyModelError(f"{path}: field '{name}' has shape {tuple(got)}, expected {want} for an SMPL model")
    shapedirs = np.shape(data["shapedirs"])
    if len(shapedirs) != 3 or shapedirs[:2] != (num_vertices, 3) or shapedirs[2] < num_betas:
        raise BodyModelError(
            f"{path}: field 'shapedirs' has shape {shapedirs}, expected ({num_vertices}, 3, >={num_betas})"
        )


def canonical_body_pose(batch_size: int = 1, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The canonical pose of the avatars: rest pose with the legs spread +-30 degrees. (B, 69)"""
    pose = torch.zeros(batch_size, 69, dtype=dtype)
    pose[:, 2] = math.pi / 6  # left hip about the forward (z) axis: foot moves to the body's left
    pose[:, 5] = -math.pi / 6
    return pose


class BodyModel(torch.nn.Module):
    """SMPL through smplx, returning vertices, joints, skinning weights and joint transforms."""

    def __init__(self, model_path: str | Path | None = None, num_betas: int = NUM_BETAS,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.model_path = resolve_body_model_path(model_path)
        validate_smpl_file(self.model_path, num_betas)
        with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a warning for every 10-beta model
            self.smpl = smplx.SMPL(
                model_path=str(self.model_path), num_betas=num_betas, dtype=dtype,
                create_betas=False, create_body_pose=False, create_global_orient=False, create_transl=False,
            )
        self.num_betas = num_betas
        self.dtype = dtype
        # The kinematic tree stays on the host whatever device the model moves to: smplx walks it
        # joint by joint (`chain[parents[i]]`), and a device tensor there costs a GPU sync per joint.
        self._parents_host = self.smpl.parents.detach().cpu()
        regressor = self.smpl.J_regressor  # (24, V)
        self.register_buffer("joint_template", regressor @ self.smpl.v_template, persistent=False)  # (24, 3)
        self.register_buffer(  # (24, 3, num_betas): joints move linearly with betas
            "joint_shapedirs", torch.einsum("jv,vcb->jcb", regressor, self.smpl.shapedirs), persistent=False
        )

    # ---------------------------------------------------------------- properties
    @property
    def faces(self) -> torch.Tensor:
        """(F, 3) long"""
        return self.smpl.faces_tensor.long()

    @property
    def faces_np(self) -> np.ndarray:
        return np.asarray(self.smpl.faces, dtype=np.int64)

    @property
    def skinning_weights(self) -> torch.Tensor:
        """(V, 24)"""
        return self.smpl.lbs_weights

    @property
    def parents(self) -> torch.Tensor:
        """(24,) long, -1 for the root"""
        return self.smpl.parents

    @property
    def num_vertices(self) -> int:
        return int(self.smpl.v_template.shape[0])

    # ---------------------------------------------------------------- helpers
    def _batch(self, betas, body_pose, global_orient, transl) -> tuple[torch.Tensor, ...]:
        """Fill missing parameters with zeros and broadcast all to one batch size."""
        given = [t for t in (betas, body_pose, global_orient, transl) if t is not None]
        device = given[0].device if given else self.smpl.v_template.device
        batch = max([t.reshape(-1, t.shape[-1]).shape[0] for t in given], default=1)

        def fill(t: torch.Tensor | None, width: int) -> torch.Tensor:
            if t is None:
                return torch.zeros(batch, width, dtype=self.dtype, device=device)
            t = t.to(self.dtype).reshape(-1, width)
            return t.expand(batch, width) if t.shape[0] == 1 else t

        return fill(betas, self.num_betas), fill(body_pose, 69), fill(global_orient, 3), fill(transl, 3)

    def rest_joints(self, betas: torch.Tensor) -> torch.Tensor:
        """Shaped rest-pose joints. betas (B, num_betas) -> (B, 24, 3)"""
        return self.joint_template + torch.einsum("jcb,nb->njc", self.joint_shapedirs, betas.to(self.dtype))

    def shaped_vertices(self, betas: torch.Tensor) -> torch.Tensor:
        """Rest-pose vertices with shape applied. (B, num_betas) -> (B, V, 3)"""
        return self.smpl.v_template + blend_shapes(betas.to(self.dtype), self.smpl.shapedirs)

    def _rigid(self, betas, body_pose, global_orient, transl) -> tuple[torch.Tensor, torch.Tensor]:
        """Posed joints (B, 24, 3) and joint transforms (B, 24, 4, 4), translation included."""
        full_pose = torch.cat([global_orient, body_pose], dim=1)  # (B, 72)
        rot_mats = batch_rodrigues(full_pose.reshape(-1, 3)).reshape(-1, NUM_JOINTS, 3, 3)
        joints, transforms = batch_rigid_transform(rot_mats, self.rest_joints(betas), self._parents_host,
                                                   dtype=self.dtype)
        offset = torch.zeros_like(transforms)
        offset[..., :3, 3] = transl[:, None, :]
        return joints + transl[:, None, :], transforms + offset

    # ---------------------------------------------------------------- forward
    def joints_only(self, betas: torch.Tensor | None = None, body_pose: torch.Tensor | None = None,
                    global_orient: torch.Tensor | None = None, transl: torch.Tensor | None = None) -> torch.Tensor:
        """The 24 posed joints without computing vertices (fast: for fitting). -> (B, 24, 3)"""
        joints, _ = self._rigid(*self._batch(betas, body_pose, global_orient, transl))
        return joints

    def forward(self, betas: torch.Tensor | None = None, body_pose: torch.Tensor | None = None,
                global_orient: torch.Tensor | None = None, transl: torch.Tensor | None = None) -> BodyOutput:
        """Pose the body. Parameters may have leading batch 1 (broadcast) or B; None means zeros."""
        betas, body_pose, global_orient, transl = self._batch(betas, body_pose, global_orient, transl)
        smpl = self.smpl  # smplx's own skinning, as SMPL.forward runs it, with the host-side tree
        vertices, _ = lbs(betas, torch.cat([global_orient, body_pose], dim=1), smpl.v_template, smpl.shapedirs,
                          smpl.posedirs, smpl.J_regressor, self._parents_host, smpl.lbs_weights)
        joints, transforms = self._rigid(betas, body_pose, global_orient, transl)
        return BodyOutput(
            vertices=vertices + transl[:, None, :],
            joints=joints,
            joint_transforms=transforms,
            shaped_vertices=self.shaped_vertices(betas),
        )


def root_joint(body: BodyModel, betas: np.ndarray) -> np.ndarray:
    """Rest-pose root joint (3,) for ``betas``: the point smplx rotates ``global_orient`` about."""
    with torch.no_grad():
        joints = body.rest_joints(torch.tensor(np.asarray(betas).reshape(1, -1), dtype=body.dtype))
    return joints[0, 0].double().numpy()
