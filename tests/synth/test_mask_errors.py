"""The segmenter-like mask error model (avatarpose_ns.synth.mask_errors) on hand-made label maps."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from avatarpose_ns.synth.mask_errors import (MASK_ERROR_PRESETS, Forearm, MaskCorruptor, mask_error_config,
                                             signed_distance)


def two_people(size: int = 256) -> np.ndarray:
    """Two touching discs (person 0 left, 1 right) on background -1, like a hug seen from the side."""
    yy, xx = np.mgrid[:size, :size]
    labels = np.full((size, size), -1, np.int16)
    r = size * 0.18
    labels[(yy - size / 2) ** 2 + (xx - size * 0.33) ** 2 < r ** 2] = 0
    labels[((yy - size / 2) ** 2 + (xx - size * 0.67) ** 2 < r ** 2) & (labels < 0)] = 1
    labels[:, int(size * 0.5)] = np.where(labels[:, int(size * 0.5)] >= 0, 1, -1)  # a shared contact column
    return labels


def corrupt(level_or_config, seed: int = 0, frames: int = 6, size: int = 256):
    config = mask_error_config(level_or_config) if isinstance(level_or_config, str) else level_or_config
    corruptor = MaskCorruptor(config, num_views=2, num_people=2, resolution=(size, size),
                              rng=np.random.default_rng(seed))
    labels = two_people(size)
    outs = [corruptor(labels, view=f % 2) for f in range(frames)]
    return labels, outs, corruptor.stats.summary()


def test_signed_distance_thresholds_back_to_the_mask():
    mask = two_people(64) == 0
    np.testing.assert_array_equal(signed_distance(mask) > 0, mask)


def test_none_leaves_the_masks_exact():
    labels, outs, stats = corrupt("none")
    for out in outs:
        np.testing.assert_array_equal(out, labels)
    assert stats["changed_share_of_union"] == 0.0 and stats["person_iou_min"] == 1.0


def test_same_seed_same_errors_other_seed_other_errors():
    _, a, _ = corrupt("realistic", seed=5)
    _, b, _ = corrupt("realistic", seed=5)
    _, c, _ = corrupt("realistic", seed=6)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert any((x != z).any() for x, z in zip(a, c))


def test_labels_stay_valid_and_errors_grow_with_the_level():
    figures = {}
    for level in ("mild", "realistic", "harsh"):
        labels, outs, stats = corrupt(level, frames=8)
        for out in outs:
            assert out.shape == labels.shape and out.dtype == labels.dtype
            assert set(np.unique(out)) <= {-1, 0, 1}
        figures[level] = stats
    assert 0 < figures["mild"]["changed_share_of_union"] < figures["realistic"]["changed_share_of_union"] \
        < figures["harsh"]["changed_share_of_union"]
    assert figures["mild"]["person_iou_mean"] > figures["realistic"]["person_iou_mean"] \
        > figures["harsh"]["person_iou_mean"]
    # the documented range for "realistic" on large, simple silhouettes: most pixels stay right
    assert 0.75 < figures["realistic"]["person_iou_mean"] < 0.99


def test_a_swap_exchanges_two_people_exactly():
    config = dataclasses.replace(MASK_ERROR_PRESETS["none"], swap_prob=1.0)
    labels, outs, stats = corrupt(config, frames=1)
    expected = labels.copy()
    expected[labels == 0], expected[labels == 1] = 1, 0
    np.testing.assert_array_equal(outs[0], expected)
    assert stats["label_swaps"] == 1


def test_a_missed_forearm_removes_only_that_persons_pixels_along_the_arm():
    config = dataclasses.replace(MASK_ERROR_PRESETS["none"], miss_prob=1.0)
    corruptor = MaskCorruptor(config, 1, 2, (256, 256), np.random.default_rng(0))
    labels = two_people(256)
    arm = Forearm(person=0, tip=np.array([85.0, 128.0]), elbow=np.array([40.0, 128.0]), radius_px=4.0)
    out = corruptor(labels, 0, [arm])
    removed = (labels >= 0) & (out < 0)
    assert removed.any() and corruptor.stats.missed_parts == 1
    assert np.all(labels[removed] == 0)  # only the arm's owner loses pixels
    ys, xs = np.nonzero(removed)
    assert np.all(np.abs(ys - 128) <= 5)  # along the arm (thickness 2 radii)
    assert xs.min() >= 40 - 5 and xs.max() <= 85 + 5  # between elbow and tip, round caps included
    np.testing.assert_array_equal(out[~removed], labels[~removed])


def test_unknown_level_is_a_clear_error():
    with pytest.raises(ValueError, match="mask errors must be one of"):
        mask_error_config("terrible")


def test_generated_sequence_keeps_images_and_exact_masks(tiny_sequence, tmp_path):
    """With errors on, the images and the exact masks are those of the error-free sequence of the same seed;
    only mask/ differs, and meta.json says by how much."""
    import json

    import cv2

    from avatarpose_ns.synth.cli import SynthArgs, main
    from synth_fixtures import TINY_SYNTH_ARGS

    noisy = tmp_path / "noisy"
    main(SynthArgs(output_dir=noisy, quiet=True, mask_errors="realistic", **TINY_SYNTH_ARGS))
    assert not (tiny_sequence / "mask_exact").exists()
    changed = 0
    for exact in sorted((tiny_sequence / "mask").rglob("*.png")):
        rel = exact.relative_to(tiny_sequence / "mask")
        np.testing.assert_array_equal(cv2.imread(str(noisy / "mask_exact" / rel)), cv2.imread(str(exact)))
        changed += int((cv2.imread(str(noisy / "mask" / rel)) != cv2.imread(str(exact))).any())
    assert changed > 0
    for image in sorted((tiny_sequence / "images").rglob("*.jpg")):
        rel = image.relative_to(tiny_sequence)
        assert (noisy / rel).read_bytes() == image.read_bytes()
    stats = json.loads((noisy / "meta.json").read_text())["mask_errors"]
    assert stats["level"] == "realistic" and 0 < stats["changed_share_of_union"] < 0.5
