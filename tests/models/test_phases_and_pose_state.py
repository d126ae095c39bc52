"""Phase schedules, what each phase trains, and the pose parameterisation Theta0 + MLP(Theta0)."""

import numpy as np
import pytest
import torch

from avatarpose_ns.models.phases import PHASES, PhaseSchedule, phase_spec
from avatarpose_ns.models.pose_correction import SmplState


def _people(num_frames=4, seed=0):
    rng = np.random.default_rng(seed)
    return {pid: {"betas": rng.normal(size=10) * 0.3, "body_pose": rng.normal(size=(num_frames, 69)) * 0.2,
                  "global_orient": rng.normal(size=(num_frames, 3)) * 0.2,
                  "transl": rng.normal(size=(num_frames, 3))} for pid in (0, 3)}


def test_schedule_parsing_and_lookup():
    schedule = PhaseSchedule.parse(["avatar:3", "pose:2", "pose_body:4"])
    assert schedule.total_steps == 9
    assert [schedule.locate(s)[1] for s in range(10)] == ["avatar"] * 3 + ["pose"] * 2 + ["pose_body"] * 5
    assert schedule.locate(4) == (1, "pose", 1, 2)
    assert schedule.locate(12) == (2, "pose_body", 7, 4)  # the last phase continues
    assert schedule.scaled(18).phases == (("avatar", 6), ("pose", 4), ("pose_body", 8))


@pytest.mark.parametrize("entry", ["avatar", "walk:10", "pose:x", "pose:0", "pose:-3"])
def test_bad_schedule_entries_are_named(entry):
    with pytest.raises(ValueError, match=entry.split(":")[0]):
        PhaseSchedule.parse(["avatar:5", entry])


# what each phase trains and whether it renders collisions, as docs/design.md#phases states it
TRAINS = {"avatar": {"fields", "body_shape"}, "pose": {"pose_mlp", "transl_orient"}, "pose_body": {"pose_mlp"},
          "joint": {"fields", "body_shape", "pose_mlp", "transl_orient"}}
COLLISION = {"avatar": False, "pose": False, "pose_body": True, "joint": True}


@pytest.mark.parametrize("phase", sorted(TRAINS))
def test_set_phase_trains_exactly_the_documented_groups(tiny_sequence, phase):
    """Gradients on for the phase's groups (the documented ones), off for every other group."""
    from model_fixtures import tiny_model

    model = tiny_model(tiny_sequence)
    model.set_phase(phase)
    assert model.phase == phase and model.phase_spec.collision == COLLISION[phase]
    groups = model.get_param_groups()
    assert set(groups) == set().union(*TRAINS.values())
    for name, parameters in groups.items():
        assert parameters, name
        assert {p.requires_grad for p in parameters} == {name in TRAINS[phase]}, (phase, name)


def test_the_phase_table_is_the_documented_one():
    assert set(PHASES) == set(TRAINS)
    for phase, spec in PHASES.items():
        assert spec.trainable == TRAINS[phase] and spec.collision == COLLISION[phase], phase
        assert spec.fields_train == ("fields" in TRAINS[phase])
        assert spec.ray_mix == ("avatar" if phase == "avatar" else "pose"), phase


def test_pose_phases_drop_the_image_terms_only_when_the_avatar_terms_fit_the_images():
    assert phase_spec("joint").avatar_losses and not phase_spec("joint").pose_image_terms
    assert all(phase_spec(p).pose_image_terms for p in ("pose", "pose_body"))
    with pytest.raises(ValueError, match="unknown phase 'walk'"):
        phase_spec("walk")


def test_state_starts_at_the_initialisation():
    people = _people()
    state = SmplState(people)
    exported = state.export()
    for index, pid in enumerate(people):
        np.testing.assert_allclose(exported["body_pose"][index].numpy(), people[pid]["body_pose"], atol=1e-4)
        np.testing.assert_allclose(exported["transl"][index].numpy(), people[pid]["transl"], atol=1e-6)
        np.testing.assert_allclose(exported["betas"][index].numpy(), people[pid]["betas"], atol=1e-6)
    frame = state.frame(2)
    torch.testing.assert_close(frame["body_pose"], exported["body_pose"][:, 2])
    torch.testing.assert_close(frame["global_orient"], exported["global_orient"][:, 2])


def test_groups_freeze_separately_and_mlp_is_shared_over_frames():
    state = SmplState(_people())
    state.set_trainable({"pose_mlp": True, "transl_orient": False, "body_shape": False})
    assert all(p.requires_grad for p in state.parameter_groups()["pose_mlp"])
    assert not state.delta_transl.requires_grad and not state.delta_betas.requires_grad
    state.frame(1)["body_pose"].sum().backward()
    # one MLP per person, evaluated on that person's frame: every person's MLP gets a gradient
    assert all(mlp[-1].weight.grad.abs().sum() > 0 for mlp in state.pose_mlps)
    assert state.delta_transl.grad is None


def test_nan_and_wrong_sizes_are_refused():
    people = _people()
    people[3]["transl"][1, 0] = np.nan
    with pytest.raises(ValueError, match="transl"):
        SmplState(people)
    people = _people()
    for pid in people:
        people[pid]["body_pose"] = people[pid]["body_pose"][:, :63]
    with pytest.raises(ValueError, match="69"):
        SmplState(people)
