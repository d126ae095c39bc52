"""Pose metrics of a trained model's current SMPL state against the sequence's ground truth.

Used by the pipeline (``ns-eval`` adds them to PSNR/SSIM) and by the viewer's
per-frame MPJPE readout. Ground truth is what the dataparser found beside the
data (``smpl_gt/smpl.npz``), which the model hands out (``ground_truth_sequences``) in the
input's world frame and metres, like its own SMPL parameters; both are
posed with the model's body model and compared on its 24 joints
(docs/design.md#metrics). Torch and numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch

from avatarpose_ns.eval.loading import FrameJoints, smpl_sequences_to_joints
from avatarpose_ns.eval.metrics import PoseMetrics, evaluate_sequence

JOINT_SET = "smpl24"


def ground_truth_joints(model) -> FrameJoints | None:
    """frame number -> GT person id -> (24, 3) joints, metres; None without ground truth."""
    people = model.ground_truth_sequences()
    if people is None:
        return None
    return smpl_sequences_to_joints(people, model.body_model, JOINT_SET)


def predicted_joints(model) -> FrameJoints:
    """The model's current poses: frame number -> person id -> (24, 3) joints, metres."""
    return smpl_sequences_to_joints(model.smpl_sequences(), model.body_model, JOINT_SET)


@torch.no_grad()
def frame_joints(model, frame_position: int, with_vertices: bool = False):
    """Everyone's current joints (L, 24, 3) at one frame position, and vertices (L, V, 3) or None; numpy."""
    params = model.smpl_frame(frame_position)
    body = model.body_model
    if with_vertices:
        out = body(**params)
        return out.joints.cpu().double().numpy(), out.vertices.cpu().double().numpy()
    return body.joints_only(**params).cpu().double().numpy(), None


def metrics_summary(metrics: PoseMetrics) -> dict[str, float]:
    """Flat float metrics for nerfstudio's results dict: mpjpe, pck50 (mm / %), pcp, ap<K>, recall500 (%).
    Undefined values (NaN, e.g. MPJPE when nothing matched within 500 mm) are left out."""
    values = {"mpjpe": metrics.mpjpe, "pcp": metrics.pcp, "pck50": metrics.pck50,
              **{f"ap{k}": v for k, v in metrics.ap.items()}, "recall500": metrics.recall500}
    return {name: float(v) for name, v in values.items() if math.isfinite(float(v))}


def pose_metrics(pred: FrameJoints, gt: FrameJoints) -> PoseMetrics:
    """Sequence metrics over the frames that have ground truth."""
    return evaluate_sequence(pred, gt, joint_set=JOINT_SET)


def frame_mpjpe(pred: Mapping[int, np.ndarray], gt: Mapping[int, np.ndarray]) -> tuple[float, dict[int, float]]:
    """One frame's MPJPE (mm) over matched pairs and per GT person id (NaN: not matched within 500 mm).
    pred, gt: person id -> (J, 3) metres."""
    metrics = evaluate_sequence({0: dict(pred)}, {0: dict(gt)}, joint_set=JOINT_SET)
    return metrics.mpjpe, metrics.per_person_mpjpe
