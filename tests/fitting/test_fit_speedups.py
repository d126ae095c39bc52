"""The silhouette fit's speed-ups leave its results bit-identical to the straightforward computation."""

import torch

from avatarpose_ns.fitting import silhouette_fit
from avatarpose_ns.fitting.silhouette_fit import LEG_JOINTS, exchange_limb_positions, nearest_indices


def test_sliced_nearest_search_equals_one_cdist_call():
    generator = torch.Generator().manual_seed(0)
    outline = torch.rand(3, 4, 2, 50, 2, generator=generator) * 256
    covering = torch.rand(3, 4, 2, 70, 2, generator=generator) * 256
    reference = torch.cdist(outline, covering).argmin(dim=-1)
    for slice_elements in (1, 50 * 70, 3 * 50 * 70 + 1, 1 << 30):  # one batch element per slice .. all at once
        assert torch.equal(nearest_indices(outline, covering, slice_elements), reference)
    # a covering shared by every outline group broadcasts as in cdist
    shared = covering[:, :, :1]
    assert torch.equal(nearest_indices(outline, shared, 3500), torch.cdist(outline, shared).argmin(dim=-1))


class _FullPoseOnly:
    """The body model as the leg exchange used it before: joints taken from a full (vertices too) pose."""

    def __init__(self, body_model):
        self.body_model = body_model

    def joints_only(self, **kwargs):
        return self.body_model(**kwargs).joints


def test_leg_exchange_with_joints_only_is_bit_identical(body_model):
    generator = torch.Generator().manual_seed(1)
    people, frames = 2, 3
    params = {"betas": 0.5 * torch.randn(people, 1, 10, generator=generator),
              "body_pose": 0.3 * torch.randn(people, frames, 69, generator=generator),
              "global_orient": 0.3 * torch.randn(people, frames, 3, generator=generator),
              "transl": torch.randn(people, frames, 3, generator=generator)}
    fast = exchange_limb_positions(body_model, params, LEG_JOINTS, steps=5)
    slow = exchange_limb_positions(_FullPoseOnly(body_model), params, LEG_JOINTS, steps=5)
    assert torch.equal(fast, slow)
    assert not torch.equal(fast, params["body_pose"])  # the exchange did move the legs
    assert silhouette_fit.NEAREST_SLICE_ELEMENTS > 0


def test_whole_fit_is_bit_identical_with_one_unsliced_search(tiny_sequence, body_model, monkeypatch):
    import dataclasses

    import numpy as np

    from avatarpose_ns.dataparsers.masks import read_mask, union_mask_file
    from avatarpose_ns.fitting.silhouette_fit import SilhouetteFitConfig, fit_shape_to_silhouettes
    from avatarpose_ns.io.cameras import read_cameras
    from avatarpose_ns.io.easymocap import read_smpl_npz

    cams = read_cameras(tiny_sequence)
    names = sorted(cams)
    init = read_smpl_npz(tiny_sequence / "smpl_init" / "smpl.npz")
    frames = list(next(iter(init.values())).frames)
    masks = np.stack([[read_mask(union_mask_file(tiny_sequence / "mask", n, int(f))) for f in frames] for n in names])
    config = dataclasses.replace(SilhouetteFitConfig(), iterations=8, swap_iterations=3, vertex_stride=16)
    sliced = fit_shape_to_silhouettes(body_model, [cams[n] for n in names], masks, init, config)
    monkeypatch.setattr(silhouette_fit, "NEAREST_SLICE_ELEMENTS", 1 << 62)  # one cdist call, as before
    whole = fit_shape_to_silhouettes(body_model, [cams[n] for n in names], masks, init, config)
    for person in init:
        for name in ("betas", "body_pose", "global_orient", "transl"):
            np.testing.assert_array_equal(getattr(sliced[person], name), getattr(whole[person], name))
