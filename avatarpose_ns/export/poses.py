"""Write a trained run's SMPL parameters in the AvatarPose layout (smpl.npz), in the input's world frame.

The model keeps every person's parameters in the input world's frame and metres (the
dataparser's scene normalisation only applies to rays), so no conversion is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import numpy as np

from avatarpose_ns.io.easymocap import SmplSequence, write_smpl_npz


def smpl_sequences(model) -> Dict[int, SmplSequence]:
    """An AvatarPoseModel's current parameters -> {person id: SmplSequence}."""
    state = {k: v.detach().cpu().numpy() for k, v in model.avatars.smpl.export().items()}
    frames = np.asarray(model.frame_numbers, dtype=np.int64)
    return {pid: SmplSequence(betas=state["betas"][i], body_pose=state["body_pose"][i],
                              global_orient=state["global_orient"][i], transl=state["transl"][i], frames=frames)
            for i, pid in enumerate(model.person_ids)}


def export_poses(model, output_dir: Path) -> Path:
    """Write <output_dir>/smpl.npz; returns its path."""
    path = Path(output_dir) / "smpl.npz"
    write_smpl_npz(path, smpl_sequences(model))
    return path
