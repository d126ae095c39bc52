"""Interrupts lose nothing: a checkpoint write cut off half-way leaves the previous checkpoint loadable,
and Ctrl-C during training saves a checkpoint at the last completed step, which --load-dir resumes."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
import torch

from avatarpose_ns.engine.trainer import latest_checkpoint_step
from avatarpose_ns.io.atomic import write_atomically
from dataparser_fixtures import write_easymocap_sequence
from run_fixtures import tiny_run_trainer


@pytest.fixture(scope="module")
def sequence(tmp_path_factory, body_model):
    root = tmp_path_factory.mktemp("interrupts")
    write_easymocap_sequence(root / "seq", body_model, num_cameras=2, num_frames=2, seed=1)
    return root / "seq"


def model_state(trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.pipeline.state_dict().items()}


def assert_same_state(state: dict, reference: dict) -> None:
    assert state.keys() == reference.keys()
    for key, value in reference.items():
        assert torch.equal(state[key], value), key


def cut_off_save(real_save):
    """torch.save that writes the first half of the checkpoint, then fails (disk full, process killed)."""
    def save(obj, target, *args, **kwargs):
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        half = buffer.getvalue()[: len(buffer.getvalue()) // 2]
        if isinstance(target, (str, os.PathLike)):
            Path(target).write_bytes(half)
        else:
            target.write(half)
            target.flush()
        raise OSError("No space left on device")
    return save


@pytest.mark.slow
def test_write_cut_off_half_way_leaves_the_previous_checkpoint(sequence, tmp_path, monkeypatch):
    trainer = tiny_run_trainer(sequence, tmp_path / "outputs", steps_per_save=1)
    trainer.train()
    folder = trainer.checkpoint_dir
    previous = (folder / "step-000000002.ckpt").read_bytes()
    saved = model_state(trainer)
    next(iter(trainer.pipeline.parameters())).data.add_(1.0)  # a later state, never saved completely
    monkeypatch.setattr(torch, "save", cut_off_save(torch.save))
    for step in (2, 3):  # overwriting the same step, and a new step (which would delete the old one)
        with pytest.raises(OSError, match="No space left"):
            trainer.save_checkpoint(step)
        assert sorted(p.name for p in folder.iterdir()) == ["step-000000002.ckpt"]
        assert (folder / "step-000000002.ckpt").read_bytes() == previous
    assert not [p for p in trainer.base_dir.rglob("*.partial")]  # no temporary file left behind
    monkeypatch.undo()
    trainer.config.load_dir = folder
    trainer._load_checkpoint()
    assert trainer._start_step == 3
    assert_same_state(model_state(trainer), saved)


def test_atomic_write_replaces_only_when_complete(tmp_path):
    path = tmp_path / "file.bin"
    write_atomically(path, lambda handle: handle.write(b"first"))

    def interrupted(handle) -> None:
        handle.write(b"sec")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(path, interrupted)
    assert path.read_bytes() == b"first" and sorted(p.name for p in tmp_path.iterdir()) == ["file.bin"]
    (tmp_path / ".step-000000009.ckpt.x.partial").write_bytes(b"")  # a leftover of a killed process
    (tmp_path / "step-000000004.ckpt").write_bytes(b"")
    assert latest_checkpoint_step(tmp_path) == 4


@pytest.mark.slow
def test_ctrl_c_saves_the_last_completed_step_and_resumes(sequence, tmp_path):
    schedule = ("avatar:1", "pose:3")
    trainer = tiny_run_trainer(sequence, tmp_path / "outputs", schedule, steps_per_save=1000)  # no periodic save
    forward = trainer.pipeline.get_train_loss_dict

    def interrupted_at_step_2(step: int):
        if step == 2:
            raise KeyboardInterrupt  # Ctrl-C during the forward pass of step 2
        return forward(step=step)

    trainer.pipeline.get_train_loss_dict = interrupted_at_step_2
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    folder = trainer.checkpoint_dir
    assert sorted(p.name for p in folder.iterdir()) == ["step-000000001.ckpt"]
    checkpoint = torch.load(folder / "step-000000001.ckpt", map_location="cpu")
    assert checkpoint["step"] == 1
    assert_same_state(checkpoint["pipeline"], model_state(trainer))  # everything steps 0 and 1 did

    config = trainer.config
    config.load_dir = folder
    resumed = config.setup(local_rank=0, world_size=1)
    resumed.setup()
    assert resumed._start_step == 2
    assert_same_state(model_state(resumed), checkpoint["pipeline"])
    resumed.train()
    assert latest_checkpoint_step(folder) == 2 + config.max_num_iterations - 1  # nerfstudio: that many more steps
