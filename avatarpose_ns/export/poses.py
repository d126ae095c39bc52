"""Write a trained run's SMPL parameters in the AvatarPose and EasyMocap layouts, in the input's world frame.

The model keeps every person's parameters in the input world's frame and metres (the
dataparser's scene normalisation only applies to rays), so no conversion is needed.

Three outputs, each the format another tool reads:

* ``smpl.npz``: AvatarPose's ``human_<pid>`` dicts (avatarpose-eval, AvatarPose itself);
* ``smpl/<frame:06d>.json``: EasyMocap's ``[{id, Rh, Th, poses, shapes}]``, written as
  EasyMocap does (Rh the global orientation, ``poses[:3]`` zero) and read back by
  `smpl_init.read_easymocap_smpl` (a run can start from another run's export);
* ``keypoints3d/<frame:06d>.json``: the 24 posed SMPL joints ``[{id, keypoints3d: 24 x 4}]``
  with confidence 1, for tools that take joints rather than SMPL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from avatarpose_ns.body.body_model import BodyModel
from avatarpose_ns.body.body_model import root_joint
from avatarpose_ns.eval.loading import smpl_sequences_to_joints
from avatarpose_ns.io.easymocap import SmplSequence, write_keypoints3d_folder, write_smpl_npz


@dataclass
class PoseExport:
    """What `export_poses` wrote."""

    smpl_npz: Path
    smpl_json: Path  # folder of <frame>.json
    keypoints3d: Path  # folder of <frame>.json


def easymocap_records(people: dict[int, SmplSequence], body: BodyModel) -> dict[int, list]:
    """Standard SMPL parameters -> frame -> EasyMocap records ``[{id, Rh, Th, poses, shapes}]``.

    EasyMocap poses the body with zero translation and then applies ``x -> R(Rh) x + Th``,
    a rotation about the model origin; smplx rotates about the rest-pose root joint j0.
    With ``Rh = global_orient`` the two agree when ``Th = transl + j0 - R(Rh) j0``
    (the inverse of `smpl_init.read_easymocap_smpl`).
    """
    out: dict[int, list] = {}
    for pid, seq in sorted(people.items()):
        j0 = root_joint(body, seq.betas)
        rotations = Rotation.from_rotvec(seq.global_orient).as_matrix()  # (F, 3, 3)
        th = seq.transl + j0 - rotations @ j0
        poses = np.concatenate([np.zeros((seq.num_frames, 3)), seq.body_pose], axis=1)
        for i, frame in enumerate(seq.frames):
            out.setdefault(int(frame), []).append({
                "id": int(pid), "Rh": [seq.global_orient[i].tolist()], "Th": [th[i].tolist()],
                "poses": [poses[i].tolist()], "shapes": [seq.betas.tolist()],
            })
    return dict(sorted(out.items()))


def write_easymocap_smpl_folder(folder: Path, people: dict[int, SmplSequence], body: BodyModel) -> None:
    """One EasyMocap ``<frame:06d>.json`` per frame (see `easymocap_records`)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for frame, records in easymocap_records(people, body).items():
        (folder / f"{frame:06d}.json").write_text(json.dumps(records))


def export_poses(model, output_dir: Path) -> PoseExport:
    """Write a run's smpl.npz, smpl/<frame>.json and keypoints3d/<frame>.json under ``output_dir``."""
    return write_pose_files(model.smpl_sequences(), model.body_model, output_dir)


def write_pose_files(people: dict[int, SmplSequence], body: BodyModel, output_dir: Path) -> PoseExport:
    """Write smpl.npz, smpl/<frame>.json and keypoints3d/<frame>.json of ``people`` under ``output_dir``."""
    output_dir = Path(output_dir)
    written = PoseExport(output_dir / "smpl.npz", output_dir / "smpl", output_dir / "keypoints3d")
    write_smpl_npz(written.smpl_npz, people)
    write_easymocap_smpl_folder(written.smpl_json, people, body)
    write_keypoints3d_folder(written.keypoints3d, smpl_sequences_to_joints(people, body))
    return written
