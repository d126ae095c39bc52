"""Layered compositor against a brute-force per-ray loop (float64), plus gradients."""

from __future__ import annotations

import math

import pytest
import torch

from avatarpose_ns.models.compositor import (
    composite_layers,
    composite_single,
    gather_sorted,
    instance_map,
)


def brute_force(t, deltas, density, rgb, valid, background, far):
    """Per ray: merge the valid samples of all people, sort, composite with prod(1 - alpha)."""
    num_rays, num_people, num_samples = t.shape
    out = {"rgb": [], "acc": [], "depth": [], "person_acc": [], "person_rgb": [], "weights": [], "ids": []}
    for r in range(num_rays):
        samples = [
            (float(t[r, l, s]), float(deltas[r, l, s]), float(density[r, l, s]), [float(c) for c in rgb[r, l, s]], l)
            for l in range(num_people)
            for s in range(num_samples)
            if bool(valid[r, l, s])
        ]
        samples.sort(key=lambda x: x[0])  # stable: ties keep person-major order
        transmittance = 1.0
        colour = [0.0, 0.0, 0.0]
        acc = 0.0
        depth_sum = 0.0
        person_acc = [0.0] * num_people
        person_rgb = [[0.0, 0.0, 0.0] for _ in range(num_people)]
        weights, ids = [], []
        for depth, delta, sigma, c, person in samples:
            alpha = 1.0 - math.exp(-sigma * delta)
            w = transmittance * alpha
            transmittance *= 1.0 - alpha
            acc += w
            depth_sum += w * depth
            person_acc[person] += w
            for k in range(3):
                colour[k] += w * c[k]
                person_rgb[person][k] += w * c[k]
            weights.append(w)
            ids.append(person)
        pad = num_people * num_samples - len(weights)
        out["rgb"].append([colour[k] + (1.0 - acc) * float(background[k]) for k in range(3)])
        out["acc"].append(acc)
        out["depth"].append(depth_sum / acc if acc > 1e-6 else far)
        out["person_acc"].append(person_acc)
        out["person_rgb"].append(person_rgb)
        out["weights"].append(weights + [0.0] * pad)
        out["ids"].append(ids + [-1] * pad)
    return {k: torch.tensor(v, dtype=torch.float64) if k != "ids" else torch.tensor(v) for k, v in out.items()}


def random_case(num_rays=7, num_people=3, num_samples=6, seed=0, interleave=True):
    """Random samples; person l's samples interleave with the others' in depth when asked."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(num_rays, num_people, num_samples, generator=g, dtype=torch.float64) * 0.05
    steps = torch.arange(num_samples, dtype=torch.float64) * 0.1
    if interleave:
        offset = torch.arange(num_people, dtype=torch.float64)[:, None] * (0.1 / num_people)
    else:
        offset = torch.arange(num_people, dtype=torch.float64)[:, None] * (0.1 * num_samples)
    t = 2.0 + steps + offset + base
    deltas = 0.02 + 0.1 * torch.rand(t.shape, generator=g, dtype=torch.float64)
    density = 10.0 * torch.rand(t.shape, generator=g, dtype=torch.float64)
    rgb = torch.rand(*t.shape, 3, generator=g, dtype=torch.float64)
    valid = torch.rand(t.shape, generator=g) > 0.25
    return t, deltas, density, rgb, valid


def assert_matches(result, reference, atol=1e-12):
    torch.testing.assert_close(result.rgb, reference["rgb"], atol=atol, rtol=0)
    torch.testing.assert_close(result.accumulation, reference["acc"], atol=atol, rtol=0)
    torch.testing.assert_close(result.depth, reference["depth"], atol=1e-10, rtol=0)
    torch.testing.assert_close(result.person_accumulation, reference["person_acc"], atol=atol, rtol=0)
    torch.testing.assert_close(result.person_rgb, reference["person_rgb"], atol=atol, rtol=0)
    torch.testing.assert_close(result.weights, reference["weights"], atol=atol, rtol=0)
    assert torch.equal(result.person_ids, reference["ids"])


@pytest.mark.parametrize("interleave", [True, False])
def test_matches_brute_force(interleave):
    t, deltas, density, rgb, valid = random_case(interleave=interleave, seed=1 + interleave)
    background = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    result = composite_layers(t, deltas, density, rgb, valid, far=9.0)
    assert_matches(result, brute_force(t, deltas, density, rgb, valid, background, 9.0))


def test_two_people_alternating_in_depth():
    # samples of person 0 and person 1 strictly alternate along every ray
    num_rays, num_samples = 5, 8
    g = torch.Generator().manual_seed(5)
    t0 = 1.0 + 0.2 * torch.arange(num_samples, dtype=torch.float64)
    t = torch.stack([t0, t0 + 0.1], dim=0).expand(num_rays, 2, num_samples).clone()
    deltas = torch.full_like(t, 0.1)
    density = 20.0 * torch.rand(t.shape, generator=g, dtype=torch.float64)
    rgb = torch.rand(*t.shape, 3, generator=g, dtype=torch.float64)
    valid = torch.ones_like(t, dtype=torch.bool)
    background = torch.tensor([0.2, 0.4, 0.6], dtype=torch.float64)
    result = composite_layers(t, deltas, density, rgb, valid, background=background, far=5.0)
    assert_matches(result, brute_force(t, deltas, density, rgb, valid, background, 5.0))
    expected_ids = torch.tensor([0, 1] * num_samples).expand(num_rays, -1)
    assert torch.equal(result.person_ids, expected_ids)


def test_invalid_samples_and_empty_rays():
    t, deltas, density, rgb, valid = random_case(num_rays=6, seed=3)
    valid[0] = False  # no samples at all
    density[1] = 0.0  # samples, but nothing there
    valid[2, 0] = False  # first person absent on this ray
    # invalid entries hold garbage that must not leak
    t = torch.where(valid, t, torch.full_like(t, float("nan")))
    density = torch.where(valid, density, torch.full_like(density, float("inf")))
    rgb = torch.where(valid[..., None], rgb, torch.full_like(rgb, float("nan")))
    background = torch.tensor([0.3, 0.5, 0.7], dtype=torch.float64)
    result = composite_layers(t, deltas, density, rgb, valid, background=background, far=7.5)
    reference = brute_force(t, deltas, density, rgb, valid, background, 7.5)
    assert_matches(result, reference)
    for r in (0, 1):
        assert result.accumulation[r] == 0
        torch.testing.assert_close(result.rgb[r], background)
        assert result.depth[r] == 7.5
    assert (result.person_ids[0] == -1).all()
    # invalid samples sort after valid ones
    num_valid = valid.reshape(valid.shape[0], -1).sum(-1)
    for r in range(valid.shape[0]):
        assert result.valid_sorted[r, : num_valid[r]].all() and not result.valid_sorted[r, num_valid[r] :].any()
    assert torch.isfinite(result.rgb).all() and torch.isfinite(result.depth).all()


def test_default_background_white_and_default_far():
    t, deltas, density, rgb, valid = random_case(num_rays=3, seed=4)
    density[0] = 0.0
    result = composite_layers(t, deltas, density, rgb, valid)
    torch.testing.assert_close(result.rgb[0], torch.ones(3, dtype=torch.float64))
    assert result.depth[0] == t[valid].max()


def test_one_person_and_single_helper():
    t, deltas, density, rgb, valid = random_case(num_people=1, num_samples=9, seed=6)
    background = torch.ones(3, dtype=torch.float64)
    general = composite_layers(t, deltas, density, rgb, valid, far=4.0)
    assert_matches(general, brute_force(t, deltas, density, rgb, valid, background, 4.0))
    single = composite_single(t[:, 0], deltas[:, 0], density[:, 0], rgb[:, 0], valid[:, 0], far=4.0)
    for name, value in general.to_dict().items():
        assert torch.equal(value, getattr(single, name)), name
    torch.testing.assert_close(single.person_accumulation[:, 0], single.accumulation)


def test_person_accumulations_sum_to_total_and_layer_images():
    t, deltas, density, rgb, valid = random_case(num_rays=20, num_people=4, num_samples=5, seed=7)
    result = composite_layers(t, deltas, density, rgb, valid, background=0.0)
    torch.testing.assert_close(result.person_accumulation.sum(-1), result.accumulation, atol=1e-14, rtol=0)
    torch.testing.assert_close(result.person_rgb.sum(1), result.rgb, atol=1e-14, rtol=0)  # black background
    torch.testing.assert_close(result.sample_weights.sum(-1), result.person_accumulation, atol=1e-14, rtol=0)
    assert (result.accumulation <= 1 + 1e-12).all()
    # gather_sorted maps per-sample values into the sorted order consistently
    torch.testing.assert_close(gather_sorted(result.sample_weights, result.order), result.weights)
    torch.testing.assert_close(torch.where(result.valid_sorted, gather_sorted(t, result.order), 0.0), result.t_sorted)


def test_float32_batch_is_consistent_with_float64():
    t, deltas, density, rgb, valid = random_case(num_rays=64, num_people=2, num_samples=32, seed=8)
    r64 = composite_layers(t, deltas, density, rgb, valid)
    r32 = composite_layers(t.float(), deltas.float(), density.float(), rgb.float(), valid)
    torch.testing.assert_close(r32.rgb.double(), r64.rgb, atol=1e-5, rtol=0)
    torch.testing.assert_close(r32.person_accumulation.double(), r64.person_accumulation, atol=1e-5, rtol=0)


def test_instance_map():
    alpha = torch.tensor([[0.9, 0.05], [0.3, 0.6], [0.2, 0.1], [0.0, 0.0]])
    assert instance_map(alpha).tolist() == [0, 1, -1, -1]
    assert instance_map(alpha, threshold=0.15).tolist() == [0, 1, 0, -1]


def test_gradients_finite_and_gradcheck():
    t, deltas, density, rgb, valid = random_case(num_rays=3, num_people=2, num_samples=3, seed=9)
    valid[1, 1, 2] = False
    density = density.requires_grad_()
    rgb = rgb.requires_grad_()
    deltas = deltas.requires_grad_()
    t = t.requires_grad_()
    background = torch.tensor([0.9, 0.8, 0.7], dtype=torch.float64, requires_grad=True)

    def outputs(t_, deltas_, density_, rgb_, background_):
        result = composite_layers(t_, deltas_, density_, rgb_, valid, background=background_, far=6.0)
        return result.rgb, result.depth, result.person_accumulation, result.person_rgb, result.weights

    assert torch.autograd.gradcheck(outputs, (t, deltas, density, rgb, background), eps=1e-6, atol=1e-6)

    result = composite_layers(t, deltas, density, rgb, valid, background=background)
    loss = result.rgb.sum() + result.depth.sum() + result.person_accumulation.pow(2).sum()
    loss.backward()
    for tensor in (t, deltas, density, rgb, background):
        assert torch.isfinite(tensor.grad).all()
    # invalid samples get no gradient
    assert density.grad[1, 1, 2] == 0 and (rgb.grad[1, 1, 2] == 0).all()


def test_gradients_finite_with_empty_rays_float32():
    t, deltas, density, rgb, valid = random_case(num_rays=4, seed=10)
    valid[0] = False
    density[1] = 0.0
    t, deltas, density, rgb = (x.float().requires_grad_() for x in (t, deltas, density, rgb))
    result = composite_layers(t, deltas, density, rgb, valid)
    (result.rgb.sum() + result.depth.sum() + result.accumulation.sum()).backward()
    for tensor in (t, deltas, density, rgb):
        assert torch.isfinite(tensor.grad).all()
