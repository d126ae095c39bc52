"""Clothing as geometry (avatarpose_ns.synth.clothing): it encloses the body, moves with it, and
leaves the ground truth alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avatarpose_ns.body.body_model import BodyModel
from avatarpose_ns.io.cameras import ring_rig
from avatarpose_ns.synth.appearance import REGIONS, sample_style, vertex_colors, vertex_regions
from avatarpose_ns.synth.clothing import (CLOTHING_PRESETS, Outfit, clothing_config, fit_skirt, garment_thickness)
from avatarpose_ns.synth.render import MeshLayer, render_view


@pytest.fixture(scope="module")
def posed_body():
    """The built-in body in a walking-like pose: rest and posed vertices and joints, regions, colours."""
    body = BodyModel()
    betas = torch.zeros(1, 10)
    pose = torch.zeros(1, 69)
    pose[0, 0 * 3] = -0.5  # left hip forward
    pose[0, 1 * 3] = 0.4  # right hip back
    pose[0, 15 * 3 + 2] = -1.0  # left shoulder down
    pose[0, 16 * 3 + 2] = 1.0  # right shoulder down
    with torch.no_grad():
        out = body(betas, pose, torch.zeros(1, 3), torch.tensor([[0.0, 0.9, 0.0]]))
        rest = body.shaped_vertices(betas)[0].double().numpy()
        rest_joints = body.rest_joints(betas)[0].double().numpy()
    weights = body.skinning_weights.double().numpy()
    style = sample_style(np.random.default_rng(0), 0)
    return dict(faces=body.faces_np, rest=rest, rest_joints=rest_joints, weights=weights, style=style,
                vertices=out.vertices[0].double().numpy(), joints=out.joints[0].double().numpy(),
                regions=vertex_regions(rest, weights, rest_joints, style),
                colors=vertex_colors(rest, weights, rest_joints, style))


def outfit(posed_body, level: str, skirt: bool) -> Outfit:
    config = clothing_config(level)
    thickness = garment_thickness(posed_body["regions"], posed_body["weights"].argmax(1), posed_body["faces"], config)
    return Outfit(thickness, fit_skirt(posed_body["rest"], posed_body["rest_joints"], config) if skirt else None)


def silhouettes(posed_body, dressed: Outfit | None) -> list[np.ndarray]:
    cameras = ring_rig(4, radius=3.0, heights=(1.0,), width=160, height=160, fov_deg=45.0, dist=(0.0, 0.0),
                       look_at=(0.0, 0.9, 0.9), rng=np.random.default_rng(0))
    v, f, c = posed_body["vertices"], posed_body["faces"], posed_body["colors"]
    if dressed is not None:
        v, f, c = dressed.dress(v, f, c, posed_body["joints"])
    return [render_view([MeshLayer(v, f, c)], cam).person_index >= 0 for cam in cameras]


def test_every_region_is_used_and_colours_follow_regions(posed_body):
    regions, colors, style = posed_body["regions"], posed_body["colors"], posed_body["style"]
    assert set(np.unique(regions)) >= {REGIONS.index(r) for r in ("shirt", "skin", "trousers", "shoes", "hair")}
    for region, colour in (("trousers", style.trousers), ("hair", style.hair), ("shoes", style.shoes)):
        painted = colors[regions == REGIONS.index(region)]
        np.testing.assert_allclose(painted, np.broadcast_to(colour, painted.shape))


def test_thickness_is_the_garments_and_blends_smoothly(posed_body):
    config = CLOTHING_PRESETS["loose"]
    thickness = garment_thickness(posed_body["regions"], posed_body["weights"].argmax(1), posed_body["faces"], config)
    assert thickness.min() >= 0 and thickness.max() <= max(config.shirt_m, config.shin_m, config.hair_m) + 1e-12
    skin = posed_body["regions"] == REGIONS.index("skin")
    shirt = posed_body["regions"] == REGIONS.index("shirt")
    assert np.median(thickness[shirt]) > 0.8 * config.shirt_m  # the garment's own thickness away from its edges
    assert np.median(thickness[skin]) < 0.5 * config.shirt_m  # the skin mostly stays bare
    # the neighbour averaging leaves no step larger than a fraction of the thickness along any edge
    f = posed_body["faces"]
    steps = np.abs(thickness[f] - thickness[np.roll(f, 1, axis=1)])
    assert steps.max() < 0.6 * thickness.max()
    none = garment_thickness(posed_body["regions"], posed_body["weights"].argmax(1), f, CLOTHING_PRESETS["none"])
    assert not none.any()


@pytest.mark.parametrize("level,skirt", [("tight", False), ("loose", False), ("loose", True)])
def test_clothes_contain_the_body_and_grow_its_silhouette(posed_body, level, skirt):
    bare = silhouettes(posed_body, None)
    dressed = silhouettes(posed_body, outfit(posed_body, level, skirt))
    for b, d in zip(bare, dressed):
        assert (b & ~d).sum() <= 0.002 * b.sum()  # the body stays inside its clothes
    growth = sum(d.sum() for d in dressed) / sum(b.sum() for b in bare) - 1
    assert (0.01 < growth < 0.15) if level == "tight" else (growth > 0.15)


def test_skirt_hangs_from_the_waist_along_the_pelvis_and_faces_forward(posed_body):
    skirt = fit_skirt(posed_body["rest"], posed_body["rest_joints"], CLOTHING_PRESETS["loose"])
    joints = posed_body["rest_joints"]
    vertices, faces = skirt.mesh(joints)
    rings = vertices.reshape(skirt.rings, -1, 3)
    assert faces.max() < len(vertices) and faces.min() >= 0
    assert np.all(np.diff(rings[:, :, 1].mean(1)) < 0)  # each ring below the last (rest pose: y up)
    np.testing.assert_allclose(rings[0, :, 1].mean() - rings[-1, :, 1].mean(), skirt.length_m, atol=0.03)
    hem_radius = np.linalg.norm(rings[-1][:, [0, 2]] - rings[-1][:, [0, 2]].mean(0), axis=1)
    waist_radius = np.linalg.norm(rings[0][:, [0, 2]] - rings[0][:, [0, 2]].mean(0), axis=1)
    np.testing.assert_allclose(hem_radius - waist_radius, skirt.flare_m, atol=0.01)
    # angle 90 degrees is the body's front (+z in the rest pose), where the belly is
    quarter = len(skirt.waist_radius) // 4
    assert rings[0, quarter, 2] > joints[0, 2] and rings[0, 3 * quarter, 2] < joints[0, 2]
    # the waist ring clears the rest body's hips
    near = np.abs(posed_body["rest"][:, 1] - rings[0, :, 1].mean()) < 0.01
    trunk = near & (np.hypot(*(posed_body["rest"][:, [0, 2]] - joints[0, [0, 2]]).T) < 0.3)
    body_radius = np.hypot(*(posed_body["rest"][trunk][:, [0, 2]] - joints[0, [0, 2]]).T).max()
    assert waist_radius.min() > 0.6 * body_radius and waist_radius.max() > body_radius


def test_unknown_clothing_is_a_clear_error():
    with pytest.raises(ValueError, match="clothing must be one of"):
        clothing_config("tuxedo")


def test_clothing_changes_images_and_masks_not_the_ground_truth(tiny_sequence, tmp_path):
    """Same seed with loose clothes: the ground-truth SMPL and joints are byte for byte the bare
    sequence's, the masks are larger, and meta.json records the clothes."""
    import json

    import cv2

    from avatarpose_ns.synth.cli import SynthArgs, main
    from synth_fixtures import TINY_SYNTH_ARGS

    clothed = tmp_path / "clothed"
    main(SynthArgs(output_dir=clothed, quiet=True, clothing="loose", **TINY_SYNTH_ARGS))
    assert (clothed / "smpl_gt" / "smpl.npz").read_bytes() == (tiny_sequence / "smpl_gt" / "smpl.npz").read_bytes()
    for gt in sorted((tiny_sequence / "keypoints3d_gt").glob("*.json")):
        assert (clothed / "keypoints3d_gt" / gt.name).read_text() == gt.read_text()
    bare_area = clothed_area = 0
    for mask in sorted((tiny_sequence / "mask").glob("*/*.png")):
        rel = mask.relative_to(tiny_sequence)
        bare, dressed = cv2.imread(str(mask), 0) > 127, cv2.imread(str(clothed / rel), 0) > 127
        assert (bare & ~dressed).sum() <= 0.01 * bare.sum() + 2  # the body's pixels stay foreground
        bare_area, clothed_area = bare_area + bare.sum(), clothed_area + dressed.sum()
    assert clothed_area > 1.1 * bare_area
    meta = json.loads((clothed / "meta.json").read_text())
    assert meta["clothing"]["level"] == "loose" and len(meta["clothing"]["skirts"]) == 2
