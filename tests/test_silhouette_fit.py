"""Silhouette fit: mask geometry against brute force, and a wrong shape pulled back by the masks."""

import dataclasses

import numpy as np
import pytest
import torch

from avatarpose_ns.dataparsers.masks import read_mask, union_mask_file
from avatarpose_ns.eval.shape_error import shape_only_error
from avatarpose_ns.fitting.silhouette_fit import (
    SilhouetteFitConfig,
    fit_shape_to_silhouettes,
    mask_distance_to_foreground,
    mask_outline,
)
from avatarpose_ns.io.cameras import read_cameras
from avatarpose_ns.io.easymocap import read_smpl_npz


def test_distance_to_foreground_matches_brute_force():
    rng = np.random.default_rng(0)
    mask = np.zeros((20, 30), dtype=bool)
    mask[5:9, 4:12] = True
    mask[rng.integers(0, 20, 6), rng.integers(0, 30, 6)] = True
    fg = np.argwhere(mask)
    rows, cols = np.mgrid[:20, :30]
    brute = np.sqrt(((np.stack([rows, cols], -1)[:, :, None, :] - fg[None, None]) ** 2).sum(-1)).min(-1)
    np.testing.assert_allclose(mask_distance_to_foreground(mask), brute, atol=1e-3)
    assert np.all(mask_distance_to_foreground(np.zeros((4, 4), bool)) > 4)  # empty mask: far everywhere


def test_outline_of_a_rectangle_is_its_border():
    mask = np.zeros((10, 12), dtype=bool)
    mask[2:6, 3:9] = True  # rows 2..5, columns 3..8
    outline = {tuple(p) for p in mask_outline(mask).astype(int)}
    border = {(u, v) for v in range(2, 6) for u in range(3, 9) if v in (2, 5) or u in (3, 8)}
    assert outline == border


def _tiny_inputs(sequence):
    cams = read_cameras(sequence)
    names = sorted(cams)
    gt = read_smpl_npz(sequence / "smpl_gt" / "smpl.npz")
    frames = list(next(iter(gt.values())).frames)
    masks = np.stack([[read_mask(union_mask_file(sequence / "mask", n, int(f))) for f in frames] for n in names])
    return [cams[n] for n in names], masks, gt


def test_masks_pull_a_wrong_shape_back(tiny_sequence, body_model):
    """Exact poses, betas pushed off by one standard deviation: the fit brings the shape back."""
    cameras, masks, gt = _tiny_inputs(tiny_sequence)
    offset = np.zeros(10)
    offset[:2] = (1.0, -1.0)
    wrong = {p: dataclasses.replace(s, betas=s.betas + offset) for p, s in gt.items()}
    before = shape_only_error(body_model, wrong, gt)["mean"]
    fitted = fit_shape_to_silhouettes(body_model, cameras, masks, wrong,
                                      SilhouetteFitConfig(iterations=100, lr=0.03, pose_weight=100.0))
    after = shape_only_error(body_model, fitted, gt)["mean"]
    assert before > 0.01
    assert after < 0.5 * before, (before, after)
    for p, seq in fitted.items():
        assert seq.body_pose.shape == gt[p].body_pose.shape and np.all(np.isfinite(seq.body_pose))
        np.testing.assert_array_equal(seq.frames, gt[p].frames)


def test_bad_inputs_are_refused(tiny_sequence, body_model):
    cameras, masks, gt = _tiny_inputs(tiny_sequence)
    with pytest.raises(ValueError, match="masks must be"):
        fit_shape_to_silhouettes(body_model, cameras[:2], masks, gt)
    with pytest.raises(ValueError, match="frames"):
        fit_shape_to_silhouettes(body_model, cameras, masks[:, :2], gt)
    broken = {p: dataclasses.replace(s, transl=s.transl * np.nan) for p, s in gt.items()}
    with pytest.raises(ValueError, match="'transl' of the initialisation is not finite"):
        fit_shape_to_silhouettes(body_model, cameras, masks, broken)
