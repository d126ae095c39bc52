"""benchmarks/eval_real_capture.py: the silhouette IoU and the joint reprojection error it reports."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from avatarpose_ns.io.cameras import project_points, ring_rig

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "eval_real_capture.py"
spec = importlib.util.spec_from_file_location("eval_real_capture", SCRIPT)
evr = importlib.util.module_from_spec(spec)
spec.loader.exec_module(evr)


def test_mask_iou_by_hand():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2, :2] = True  # 4 pixels
    b[1:3, 1:3] = True  # 4 pixels, 1 shared
    assert evr.mask_iou(a, b) == 1 / 7
    assert evr.mask_iou(a, a) == 1.0 and evr.mask_iou(np.zeros_like(a), np.zeros_like(a)) == 1.0


def test_reprojection_error_counts_confident_limb_joints_only():
    cams = ring_rig(2, radius=3.0, width=200, height=100, fov_deg=60, rng=np.random.default_rng(1))
    joints = np.random.default_rng(2).normal(0, 0.3, (24, 3)) + [0, 0, 1]
    annots = np.zeros((2, 1, 24, 3))
    for c, cam in enumerate(cams):
        annots[c, 0, :, :2] = project_points(joints, cam)
        annots[c, 0, :, 2] = 0.9
    annots[0, 0, evr.LIMB_JOINTS[0], 0] += 3.0  # one joint 3 px off in camera 0
    annots[0, 0, evr.LIMB_JOINTS[1], :2] += 50.0  # and one far off, but not confident
    annots[0, 0, evr.LIMB_JOINTS[1], 2] = 0.1
    annots[1, 0, 0, :2] += 40.0  # the pelvis is not a limb joint
    errors = evr.reprojection_errors({0: {7: joints}}, {0: annots}, cams, [7])
    np.testing.assert_allclose(errors[cams[0].name], 3.0 / (len(evr.LIMB_JOINTS) - 1), atol=1e-6)
    np.testing.assert_allclose(errors[cams[1].name], 0.0, atol=1e-6)
