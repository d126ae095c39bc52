"""Shared fixtures: the built-in body model and one tiny generated sequence, made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from avatarpose_ns.body.body_model import BodyModel
from synth_fixtures import TINY_SYNTH_ARGS


@pytest.fixture(scope="session")
def body_model() -> BodyModel:
    return BodyModel()




@pytest.fixture(scope="session")
def tiny_sequence(tmp_path_factory) -> Path:
    """A 2-person, 3-camera, 3-frame hug at 128 px, written by avatarpose-synth's code path."""
    from avatarpose_ns.synth.cli import SynthArgs, main

    output = tmp_path_factory.mktemp("synth") / "tiny"
    main(SynthArgs(output_dir=output, quiet=True, **TINY_SYNTH_ARGS))
    return output
