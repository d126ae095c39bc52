"""The silhouette fit's announced estimate: steps x people x frames x cameras, by hand."""

from __future__ import annotations

from pathlib import Path

from avatarpose_ns.dataparsers.fit_stage import (CLOTHING_LAYER_FACTOR, HYPOTHESES, SECONDS_PER_UNIT, FitStage,
                                                  estimate_seconds, fit_units, format_duration)
from avatarpose_ns.fitting.silhouette_fit import SilhouetteFitConfig


def test_units_count_every_step_over_every_triple():
    config = SilhouetteFitConfig(iterations=600, swap_iterations=100, clothing_layer=False)
    assert fit_units(2, 4, 4, config) == 2 * 4 * 4 * (600 + HYPOTHESES * 100)
    layered = SilhouetteFitConfig(iterations=600, swap_iterations=0, clothing_layer=True, vertex_stride=4)
    assert fit_units(1, 1, 1, layered) == 600 * CLOTHING_LAYER_FACTOR * 2
    assert estimate_seconds(2, 4, 4, config) == SECONDS_PER_UNIT * 2 * 4 * 4 * 1000


def test_durations_read_as_words():
    assert format_duration(12.3) == "12 s"
    assert format_duration(210) == "3.5 min"
    assert format_duration(4 * 3600) == "4.0 h"


def test_announcement_names_the_stage_its_size_and_the_cache(tmp_path: Path):
    stage = FitStage(2, 4, 4, SilhouetteFitConfig(), tmp_path / "fit.npz")
    text = stage.announce()
    assert "2 people x 4 frames x 4 cameras" in text and str(tmp_path / "fit.npz") in text
    assert format_duration(stage.estimate_s) in text
