"""Background plates (dataparsers/background_plate.py) and how the colour terms use them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avatarpose_ns.dataparsers.background_plate import background_plate
from avatarpose_ns.models.compositor import composite_layers, replace_background


def moving_square(frames: int = 6, size: int = 40, seed: int = 0):
    """A textured static background with a square 'person' moving left to right, plus a pixel block
    that flickers (a screen) and a column the square always covers."""
    rng = np.random.default_rng(seed)
    background = rng.uniform(0.1, 0.9, (size, size, 3)).astype(np.float32)
    images = np.repeat(background[None], frames, axis=0).copy()
    masks = np.zeros((frames, size, size), bool)
    for f in range(frames):
        x = 4 + 4 * f
        masks[f, 10:30, x:x + 22] = True
        images[f, 10:30, x:x + 22] = (0.9, 0.1, 0.1)
    images[:, 0:4, 0:4] = rng.uniform(0, 1, (frames, 4, 4, 3))  # flicker
    images += rng.normal(0, 0.005, images.shape).astype(np.float32)
    return np.clip(images, 0, 1), masks, background


def brute_force_plate(images, masks, margin_px, min_frames, max_spread):
    """The same plate pixel by pixel with plain loops: free = no mask pixel within the margin's disc."""
    frames, height, width, _ = images.shape
    plate = np.zeros((height, width, 4), np.float32)
    offsets = [(dy, dx) for dy in range(-margin_px, margin_px + 1) for dx in range(-margin_px, margin_px + 1)
               if dy * dy + dx * dx <= margin_px * margin_px]
    for y in range(height):
        for x in range(width):
            free = []
            for f in range(frames):
                near = any(masks[f, y + dy, x + dx] for dy, dx in offsets
                           if 0 <= y + dy < height and 0 <= x + dx < width)
                if not near:
                    free.append(images[f, y, x])
            if len(free) < min_frames:
                continue
            free = np.stack(free)
            median = np.median(free, axis=0)
            if np.median(np.abs(free - median), axis=0).max() <= max_spread:
                plate[y, x, :3], plate[y, x, 3] = median, 1
    return plate


def test_plate_matches_a_per_pixel_loop_and_recovers_the_background():
    images, masks, background = moving_square()
    plate = background_plate(images, masks, margin_px=2, min_frames=2, max_spread=0.06, rows_per_chunk=7)
    np.testing.assert_allclose(plate, brute_force_plate(images, masks, 2, 2, 0.06), atol=1e-6)
    known = plate[..., 3] > 0.5
    assert known.mean() > 0.6
    np.testing.assert_allclose(plate[known][:, :3], background[known], atol=0.02)
    assert not known[0:4, 0:4].any()  # the flickering block is not a background
    always_covered = masks.all(axis=0)
    assert always_covered.any() and not known[always_covered].any()


def test_a_missed_part_in_one_frame_does_not_leak_into_the_plate():
    """A mask that misses part of the person in one frame exposes the person's colour there; the
    median over the frames that saw the true background keeps the plate right."""
    images, masks, background = moving_square(frames=7)
    masks[3, 10:20, 16:26] = False  # frame 3's mask misses the top of the square
    plate = background_plate(images, masks, margin_px=1, min_frames=3)
    known = plate[..., 3] > 0.5
    np.testing.assert_allclose(plate[10:20, 16:26][known[10:20, 16:26]][:, :3],
                               background[10:20, 16:26][known[10:20, 16:26]], atol=0.02)


def test_bad_shapes_are_a_clear_error():
    with pytest.raises(ValueError, match="images must be"):
        background_plate(np.zeros((2, 4, 4, 3)), np.zeros((2, 4, 5), bool))


def test_replacing_the_background_equals_rendering_over_it():
    """The composite re-made over per-ray plate colours equals the compositor run with those colours."""
    torch.manual_seed(0)
    rays, people, samples = 7, 2, 5
    density = torch.rand(rays, people, samples, dtype=torch.float64) * 30
    rgb = torch.rand(rays, people, samples, 3, dtype=torch.float64)
    t = torch.sort(torch.rand(rays, people, samples, dtype=torch.float64), dim=-1).values + 1
    deltas = torch.full_like(t, 0.02)
    valid = torch.ones_like(t, dtype=torch.bool)
    plate = torch.rand(rays, 3, dtype=torch.float64)
    white = composite_layers(t, deltas, density, rgb, valid, background=torch.ones(3, dtype=torch.float64))
    direct = composite_layers(t, deltas, density, rgb, valid, background=plate)
    remade = replace_background(white.rgb, white.accumulation, torch.ones(3, dtype=torch.float64), plate)
    torch.testing.assert_close(remade, direct.rgb)


def test_plates_of_a_generated_sequence_reach_the_batch(tiny_sequence):
    """The dataparser estimates the (flat grey) plates of a synthetic sequence and every training ray
    carries its pixel's plate: grey where known."""
    from avatarpose_ns.datamanagers.avatar_dataset import AvatarDataset
    from avatarpose_ns.dataparsers.easymocap_dataparser import EasyMocapDataParserConfig

    parser = EasyMocapDataParserConfig(data=tiny_sequence, silhouette_fit=False).setup()
    outputs = parser.get_dataparser_outputs("train")
    plates = outputs.metadata["background_plates"]
    assert set(plates) == set(outputs.metadata["camera_names"])
    dataset = AvatarDataset(outputs)
    assert "background_plates" not in dataset.metadata  # kept out of the model's metadata
    data = dataset[0]
    plate = data["background"]
    assert plate.shape == data["image"].shape[:2] + (4,)
    known = plate[..., 3] > 0.5
    assert known.float().mean() > 0.5
    # the generator's grey, up to JPEG ringing: a stray pixel near an edge may exceed 0.03 (it depends on
    # the JPEG codec's version) but stays within the plate's own agreement bound, 0.06
    error = (plate[known][:, :3] - 0.5).abs()
    assert float((error <= 0.03).float().mean()) > 0.999
    assert float(error.max()) <= 0.06
    # where someone is in this frame's mask the plate is either unknown or the background, not the person
    mask = data["mask"][..., 0].bool()
    inside = known & mask
    if inside.any():
        np.testing.assert_allclose(plate[inside][:, :3].numpy(), 0.5, atol=0.03)
    off = EasyMocapDataParserConfig(data=tiny_sequence, silhouette_fit=False, background_plate=False).setup()
    assert "background" not in AvatarDataset(off.get_dataparser_outputs("train"))[0]


def test_colour_terms_use_the_image_and_the_plate_where_the_plate_is_known(tiny_sequence):
    """Where the plate is known the loss compares the render over the plate with the untouched image
    (a wrong mask changes nothing there); where unknown, the masked target over the flat background."""
    from model_fixtures import tiny_model

    model = tiny_model(tiny_sequence)
    rays = 6
    image = torch.rand(rays, 3)
    mask = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    plate = torch.cat([torch.rand(rays, 3), torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])[:, None]], dim=1)
    batch = {"image": image, "mask": mask[:, None], "background": plate}
    rgb, accumulation = torch.rand(rays, 3), torch.rand(rays)
    target, _ = model.masked_target(batch, rgb)
    composite, composite_target = model.plate_composite(batch, rgb, accumulation, target)
    white = model.avatars.background
    known = plate[:, 3] > 0.5
    torch.testing.assert_close(composite_target[known], image[known])  # the mask's 0 at ray 1 is ignored
    torch.testing.assert_close(composite[known], rgb[known] + (1 - accumulation[known, None]) * (plate[known, :3] - white))
    torch.testing.assert_close(composite_target[~known], target[~known])
    torch.testing.assert_close(composite[~known], rgb[~known])
    assert model.plate_composite({"image": image, "mask": mask[:, None]}, rgb, accumulation, target)[1] is target
