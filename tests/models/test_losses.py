"""Avatar and pose losses against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from avatarpose_ns.body.priors import angle_prior, correction_prior, temporal_smoothness
from avatarpose_ns.models.compositor import composite_layers
from avatarpose_ns.models.losses import (
    AvatarLossWeights,
    PoseLossWeights,
    alpha_mask_loss,
    avatar_losses,
    collision_loss,
    densities_to_opacities,
    density_regulariser,
    hard_surface_loss,
    hard_surface_penalty,
    layer_entropy_loss,
    mask_bce_loss,
    pose_losses,
    pose_prior_losses,
    rgb_huber_loss,
    smoothness_loss,
)


def test_huber_inside_and_outside_delta():
    target = torch.zeros(1, 3)
    inside = torch.tensor([[0.05, -0.05, 0.0]])  # 0.5 x^2
    assert rgb_huber_loss(inside, target).item() == pytest.approx((0.5 * 0.0025 * 2) / 3)
    outside = torch.tensor([[0.5, -0.3, 0.0]])  # delta (|x| - delta / 2)
    expected = (0.1 * (0.5 - 0.05) + 0.1 * (0.3 - 0.05)) / 3
    assert rgb_huber_loss(outside, target).item() == pytest.approx(expected)
    assert rgb_huber_loss(outside, target, delta=1.0).item() == pytest.approx((0.125 + 0.045) / 3)


def test_alpha_mask_mse():
    assert alpha_mask_loss(torch.tensor([0.2, 1.0]), torch.tensor([0.0, 1.0])).item() == pytest.approx(0.02)


def test_layer_entropy():
    assert layer_entropy_loss(torch.tensor([[0.5, 0.5]])).item() == pytest.approx(math.log(2))
    assert layer_entropy_loss(torch.tensor([[1.0, 0.0], [0.0, 0.0]])).item() == pytest.approx(0.0, abs=1e-6)
    a = torch.tensor([[0.0, 0.3]], requires_grad=True)
    layer_entropy_loss(a).backward()
    assert torch.isfinite(a.grad).all()


def test_hard_surface():
    x = torch.tensor([0.0, 1.0, 0.5])
    values = hard_surface_penalty(x)
    assert values[0].item() == pytest.approx(0.0, abs=1e-7)
    assert values[1].item() == pytest.approx(0.0, abs=1e-7)
    assert values[2].item() == pytest.approx(0.5 - math.log(2) + math.log1p(math.exp(-1)))
    assert hard_surface_loss(x).item() == pytest.approx(values[2].item() / 3)
    valid = torch.tensor([True, False, True])
    assert hard_surface_loss(x, valid).item() == pytest.approx(values[2].item() / 2)
    grid = torch.linspace(0, 1, 101)
    assert hard_surface_penalty(grid).argmax().item() == 50


def test_density_regulariser():
    assert density_regulariser(torch.tensor([1.0, 3.0])).item() == pytest.approx(2.0)
    assert density_regulariser(torch.zeros(0)).item() == 0.0


def test_mask_bce_known_values():
    a = torch.tensor([0.8, 0.3])
    m = torch.tensor([1.0, 0.0])
    assert mask_bce_loss(a, m).item() == pytest.approx(-(math.log(0.8) + math.log(0.7)) / 2, rel=1e-6)
    # saturated opacities: finite values (clamped) and a gradient that still points the right way
    a = torch.tensor([0.0, 1.0], requires_grad=True)
    loss = mask_bce_loss(a, torch.tensor([1.0, 0.0]), eps=1e-4)
    assert loss.item() == pytest.approx(-math.log(1e-4), rel=1e-4)
    loss.backward()
    assert a.grad[0] < 0 and a.grad[1] > 0


def test_collision_zero_when_separated():
    # two people, never both present at a point
    opacities = torch.tensor([[0.9, 0.0], [0.0, 0.7], [0.0, 0.0]], requires_grad=True)
    loss = collision_loss(opacities)
    assert loss.item() == 0.0
    loss.backward()
    assert (opacities.grad == 0).all()


def test_collision_positive_on_overlap_and_gradient_reduces_it():
    opacities = torch.tensor([[0.5, 0.4], [0.9, 0.0], [0.2, 0.2]], requires_grad=True)
    loss = collision_loss(opacities)
    assert loss.item() == pytest.approx((0.2 + 0.04) / 2)  # two colliding points
    assert collision_loss(opacities.detach(), normalize="all").item() == pytest.approx(0.24 / 3)
    loss.backward()
    assert (opacities.grad[[0, 2]] > 0).all() and (opacities.grad[1] == 0).all()
    stepped = (opacities - 0.1 * opacities.grad).detach()
    assert collision_loss(stepped) < loss
    # three people: sum over unordered pairs, valid mask, leading batch dims
    three = torch.tensor([[[0.5, 0.4, 0.2], [0.3, 0.3, 0.3]]])
    valid = torch.tensor([[True, False]])
    assert collision_loss(three, valid).item() == pytest.approx(0.2 + 0.1 + 0.08)


def test_collision_gradient_pushes_avatars_apart():
    # two 1D blobs of density along a ray: the loss falls as their centres move apart
    points = torch.linspace(-1, 1, 201)
    centre = torch.tensor(0.15, requires_grad=True)

    def blob(c):
        return 50.0 * torch.clamp(1 - ((points - c) / 0.3).pow(2), min=0)

    density = torch.stack([blob(-centre), blob(centre)], dim=-1)  # (N, 2)
    loss = collision_loss(densities_to_opacities(density, 0.01), normalize="all")
    loss.backward()
    assert loss.item() > 0 and centre.grad < 0


def test_collision_with_compositor_layout():
    # (R, L, S) samples of two people; every field evaluated at every person's samples
    num_rays, num_people, num_samples = 2, 2, 4
    t = torch.linspace(1, 2, num_samples).expand(num_rays, num_people, num_samples)
    own = torch.rand(num_rays, num_people, num_samples) * 10
    cross = torch.zeros(num_rays, num_people, num_samples, num_people)
    for person in range(num_people):
        cross[:, person, :, person] = own[:, person]
    render = composite_layers(t, torch.full_like(t, 0.1), own, torch.rand(*t.shape, 3))
    assert collision_loss(densities_to_opacities(cross), valid=torch.ones_like(t, dtype=torch.bool)).item() == 0
    cross[:, 0, :, 1] = 5.0
    value = collision_loss(densities_to_opacities(cross))
    assert value.item() > 0 and torch.isfinite(value)
    assert render.weights.shape == (num_rays, num_people * num_samples)


def test_avatar_losses_bundle():
    rgb = torch.tensor([[0.5, 0.5, 0.5], [1.0, 1.0, 1.0]])
    target = torch.tensor([[0.5, 0.5, 0.7], [1.0, 1.0, 1.0]])
    acc = torch.tensor([0.5, 0.0])
    mask = torch.tensor([1.0, 0.0])
    person_acc = torch.tensor([[0.25, 0.25], [0.0, 0.0]])
    weights = torch.tensor([[0.5, 0.0], [0.0, 0.0]])
    out = avatar_losses(rgb, target, acc, mask, person_acc, weights, density_outside=torch.tensor([0.1, 0.3]))
    w = AvatarLossWeights()
    h = hard_surface_penalty(torch.tensor(0.5)).item()
    assert out["rgb_loss"].item() == pytest.approx(w.rgb * 0.1 * (0.2 - 0.05) / 6)
    assert out["alpha_loss"].item() == pytest.approx(w.alpha * 0.125)
    assert out["layer_entropy_loss"].item() == pytest.approx(w.layer_entropy * 0.5 * math.log(4) / 2)
    assert out["hard_surface_alpha_loss"].item() == pytest.approx(w.hard_surface_alpha * h / 2, rel=1e-5)
    assert out["hard_surface_weights_loss"].item() == pytest.approx(w.hard_surface_weights * h / 4, rel=1e-5)
    assert out["density_outside_loss"].item() == pytest.approx(w.density_outside * 0.2)
    none = avatar_losses(rgb, target, acc, mask, weights=AvatarLossWeights(alpha=0.0))
    assert set(none) == {"rgb_loss", "hard_surface_alpha_loss"}


def test_pose_losses_bundle_reuses_priors():
    torch.manual_seed(0)
    frames = 4
    body_pose = 0.1 * torch.randn(2, frames, 69)
    transl = torch.randn(2, frames, 3)
    rgb = torch.rand(3, 3)
    acc = torch.tensor([0.2, 0.5, 0.9])
    mask = torch.tensor([0.0, 1.0, 1.0])
    opac = torch.tensor([[0.5, 0.5], [0.1, 0.0]])
    w = PoseLossWeights(smoothness=1.0, smoothness_pose=0.5)
    out = pose_losses(rgb, rgb, acc, mask, body_pose, transl, collision_opacities=opac, weights=w)
    assert out["rgb_loss"].item() == 0.0
    assert out["mask_loss"].item() == pytest.approx(w.mask * mask_bce_loss(acc, mask).item())
    flat = body_pose.reshape(-1, 69)
    assert out["angle_prior_loss"].item() == pytest.approx(w.angle_prior * angle_prior(flat).mean().item(), rel=1e-6)
    assert out["l2_pose_loss"].item() == pytest.approx(w.l2_pose * flat.pow(2).sum(-1).mean().item(), rel=1e-6)
    assert out["collision_loss"].item() == pytest.approx(w.collision * 0.25)
    per_person = [w.smoothness * temporal_smoothness(transl[p]) + w.smoothness_pose * temporal_smoothness(body_pose[p])
                  for p in range(2)]
    assert out["smoothness_loss"].item() == pytest.approx(sum(per_person).item() / 2, rel=1e-6)
    priors = pose_prior_losses(body_pose[0])
    assert set(priors) == {"l2_pose", "angle_prior"}
    assert smoothness_loss(transl[0]).item() == pytest.approx(temporal_smoothness(transl[0]).item())


def test_correction_prior_holds_only_the_named_joints_near_the_init():
    """Hand-computed: the prior is the squared correction of the named joints, off by default."""
    init = torch.zeros(2, 3, 69)
    pose = init.clone()
    pose[..., 3 * 19:3 * 19 + 3] = torch.tensor([0.3, 0.0, 0.4])  # left wrist (joint 20): |d|^2 = 0.25
    pose[..., 3 * 17] = 1.0  # left elbow (joint 18): not named, not penalised
    rgb, acc, mask = torch.rand(2, 3), torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0])
    assert "correction_loss" not in pose_losses(rgb, rgb, acc, mask, pose, body_pose_init=init)
    w = PoseLossWeights(correction=2.0)
    out = pose_losses(rgb, rgb, acc, mask, pose, body_pose_init=init, weights=w)
    assert out["correction_loss"].item() == pytest.approx(2.0 * 0.25, rel=1e-6)
    pose.requires_grad_(True)
    pose_losses(rgb, rgb, acc, mask, pose, body_pose_init=init, weights=w)["correction_loss"].backward()
    wrist_grad = pose.grad[..., 3 * 19:3 * 19 + 3]
    assert torch.all(wrist_grad[..., 0] > 0) and torch.all(wrist_grad[..., 2] > 0)  # pulls back toward the init
    assert pose.grad[..., 3 * 17].abs().max() == 0
    with pytest.raises(ValueError, match="1..23"):
        correction_prior(pose.detach()[0], init[0], (0,))
