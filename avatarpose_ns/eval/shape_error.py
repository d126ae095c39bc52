"""How much joint error an estimated body shape causes on its own.

SMPL joints depend on the shape (betas: bone lengths, hip width) as well as on the
pose.  Pose refinement changes joint angles, so an error in the shape is a floor it
can only work around.  `shape_only_error` poses each person's body with the ground
truth's angles and root, but the estimate's betas, and measures the joints against
the ground truth with the pelvis aligned (a shape also moves the rest-pose pelvis,
which the estimate's translation already absorbs): the error that remains is the
shape's alone.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch


def _joints(body_model, betas: np.ndarray, seq) -> np.ndarray:
    """(F, 24, 3) joints of SmplSequence-like ``seq``'s pose with ``betas``."""
    num_frames = len(seq.transl)
    as_tensor = lambda a, *shape: torch.as_tensor(np.asarray(a), dtype=torch.float64).reshape(*shape)  # noqa: E731
    with torch.no_grad():
        joints = body_model.joints_only(betas=as_tensor(betas, 1, -1).expand(num_frames, -1),
                                        body_pose=as_tensor(seq.body_pose, num_frames, -1),
                                        global_orient=as_tensor(seq.global_orient, num_frames, 3),
                                        transl=as_tensor(seq.transl, num_frames, 3))
    return joints.numpy()


def shape_only_error(body_model, estimate: Mapping[int, object], ground_truth: Mapping[int, object]) -> dict:
    """Per person and mean: pelvis-aligned joint error (metres) of the ground-truth pose with the
    estimate's betas, i.e. the error an exact pose would keep with the estimated shape.

    estimate / ground_truth: person id -> SmplSequence-like (betas, body_pose, global_orient,
    transl), as `read_smpl_npz` returns; people are matched by id (ids missing from the
    estimate are skipped).  Returns {"per_person": {id: metres}, "mean": metres}.
    """
    per_person = {}
    for person, truth in ground_truth.items():
        if person not in estimate:
            continue
        reference = _joints(body_model, truth.betas, truth)
        reshaped = _joints(body_model, estimate[person].betas, truth)
        error = np.linalg.norm((reshaped - reshaped[:, :1]) - (reference - reference[:, :1]), axis=-1)
        per_person[int(person)] = float(error.mean())
    if not per_person:
        raise ValueError("shape_only_error: no person id of the ground truth is in the estimate")
    return {"per_person": per_person, "mean": float(np.mean(list(per_person.values())))}
