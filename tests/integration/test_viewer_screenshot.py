"""The viewer in a real browser: scripts/viewer_screenshot.py on a tiny run (skipped without Chromium).

Chromium comes from Debian: apt-get install -y chromium chromium-driver
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from dataparser_fixtures import write_easymocap_sequence

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "viewer_screenshot.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("viewer_screenshot", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


screenshot = _load_script()


@pytest.mark.skipif(screenshot.find_chromium() is None,
                    reason="needs Chromium (apt-get install -y chromium chromium-driver)")
@pytest.mark.slow
def test_viewer_screenshot_shows_the_render_and_the_skeletons(tmp_path, body_model):
    from PIL import Image

    from avatarpose_ns.models.palette import person_colour

    write_easymocap_sequence(tmp_path / "seq", body_model, num_cameras=2, num_frames=2, seed=1)
    output = tmp_path / "viewer.png"
    status = screenshot.main(["--data", str(tmp_path / "seq"), "--output", str(output), "--schedule", "avatar:2",
                              "--run-dir", str(tmp_path / "run"), "--settle", "10", "--timeout", "900",
                              "--", "--pipeline.model.scene.body-prior-steps", "10"])
    assert status == 0 and output.is_file()
    pixels = np.asarray(Image.open(output).convert("RGB")).astype(np.int64)
    assert pixels.shape == (800, 1280, 3)
    assert pixels.std() > 10, "blank screenshot"
    viewport = pixels[60:, :900]  # below the title bar, left of the control panel
    assert viewport.std() > 5, "nothing rendered in the viewport"
    for index in range(2):  # both skeletons drawn in their palette colours
        near = np.abs(viewport - np.asarray(person_colour(index))).max(-1) < 30
        assert near.sum() > 50, f"person {index}'s skeleton is not visible"


def test_resolution_readout_parsing():
    assert screenshot.rendered_resolution("Step: 60\nResolution: 512\u00d7399px") == 512
    assert screenshot.rendered_resolution("Resolution: 64x50px") == 64
    assert screenshot.rendered_resolution("Connecting...") == 0
