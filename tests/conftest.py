"""Shared fixtures: the built-in body model and one tiny generated sequence, made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from avatarpose_ns.body.body_model import BodyModel


@pytest.fixture(scope="session")
def body_model() -> BodyModel:
    return BodyModel()


TINY_SYNTH_ARGS = dict(seed=3, num_people=2, num_cameras=3, num_frames=3, resolution="128x128")


@pytest.fixture(scope="session")
def tiny_sequence(tmp_path_factory) -> Path:
    """A 2-person, 3-camera, 3-frame hug at 128 px, written by avatarpose-synth's code path."""
    from avatarpose_ns.synth.cli import SynthArgs, main

    output = tmp_path_factory.mktemp("synth") / "tiny"
    main(SynthArgs(output=output, quiet=True, **TINY_SYNTH_ARGS))
    return output
