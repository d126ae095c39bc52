"""The avatarpose methods inside nerfstudio: registered, train on CPU, checkpoints load again."""


import pytest
import torch

from dataparser_fixtures import write_easymocap_sequence
from run_fixtures import short_run_trainer


def _clone_state(pipeline):
    return {k: v.detach().clone() for k, v in pipeline.model.state_dict().items()}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, body_model):
    """avatarpose-lite on a tiny sequence: 2 avatar, 2 pose and 2 body-pose steps, checkpoints saved.
    Returns (config, trainer, snapshots): model state (and field optimizer state) on entering each phase."""
    root = tmp_path_factory.mktemp("method")
    write_easymocap_sequence(root / "seq", body_model, num_cameras=2, num_frames=2, seed=1)
    trainer = short_run_trainer(root / "seq", root / "outputs", ("avatar:2", "pose:2", "pose_body:2"),
                                trainer_options={"steps_per_save": 2, "steps_per_eval_batch": 2},
                                body_prior_steps=5)
    config = trainer.config
    pipeline = trainer.pipeline
    snapshots = {"start": _clone_state(pipeline)}
    enter_step = pipeline.enter_step

    def spy(step: int) -> str:
        phase = enter_step(step)
        if phase not in snapshots:
            fields_adam = trainer.optimizers.optimizers["fields"].state
            snapshots[phase] = _clone_state(pipeline)
            snapshots[phase + "_adam"] = {id(k): {n: t.clone() for n, t in v.items() if torch.is_tensor(t)}
                                          for k, v in fields_adam.items()}
        return phase

    pipeline.enter_step = spy
    trainer.train()
    snapshots["end"] = _clone_state(pipeline)
    return config, trainer, snapshots


def _changed(before, after, prefixes):
    keys = [k for k in before if k.startswith(prefixes)]
    assert keys, prefixes
    return [k for k in keys if not torch.equal(before[k], after[k])]


FIELDS = ("avatars.fields",)
POSE = ("avatars.smpl.pose_mlps",)
TRANSL_ORIENT = ("avatars.smpl.delta_orient", "avatars.smpl.delta_transl")


def test_methods_are_registered():
    from nerfstudio.plugins.registry import discover_methods

    methods, _ = discover_methods()
    assert {"avatarpose", "avatarpose-lite"} <= set(methods)
    assert methods["avatarpose"].pipeline.model.scene.field.num_levels == 16  # released sizes
    assert methods["avatarpose-lite"].machine.device_type == "cpu"


@pytest.mark.slow
def test_phases_train_their_groups_and_leave_the_others_bit_identical(trained_run):
    _, trainer, snap = trained_run
    assert {"avatar", "pose", "pose_body"} <= set(snap)
    # avatar phase: fields change, poses do not
    assert _changed(snap["start"], snap["pose"], FIELDS)
    assert not _changed(snap["start"], snap["pose"], POSE + TRANSL_ORIENT)
    # pose phase: pose MLP, translation and orientation change, fields do not
    assert _changed(snap["pose"], snap["pose_body"], POSE) and _changed(snap["pose"], snap["pose_body"], TRANSL_ORIENT)
    assert not _changed(snap["pose"], snap["end"], FIELDS)
    # body-pose phase: only the MLP
    assert _changed(snap["pose_body"], snap["end"], POSE)
    assert not _changed(snap["pose_body"], snap["end"], TRANSL_ORIENT)
    # the frozen fields' Adam state is untouched by the pose phases
    adam_now = trainer.optimizers.optimizers["fields"].state
    for key, state in snap["pose_adam"].items():
        now = next(v for k, v in adam_now.items() if id(k) == key)
        for name, value in state.items():
            assert torch.equal(now[name], value), name


@pytest.mark.slow
def test_learning_rate_restarts_with_each_phase(trained_run):
    _, trainer, _ = trained_run
    pipeline = trainer.pipeline
    rates = []
    for step in (0, 1, 2, 3):
        pipeline.enter_step(step)
        rates.append(trainer.optimizers.optimizers["pose_mlp"].param_groups[0]["lr"])
    initial = trainer.optimizers.optimizers["pose_mlp"].param_groups[0]["initial_lr"]
    assert rates[0] == pytest.approx(initial) and rates[2] == pytest.approx(initial)  # phase starts
    assert rates[1] == pytest.approx(0.1 * initial) and rates[3] == pytest.approx(0.1 * initial)  # phase ends


@pytest.mark.slow
def test_checkpoint_loads_through_eval_setup(trained_run):
    from nerfstudio.utils.eval_utils import eval_setup

    config, trainer, _ = trained_run
    checkpoints = sorted((config.get_base_dir() / "nerfstudio_models").glob("*.ckpt"))
    assert checkpoints, "no checkpoint written"
    torch.load(checkpoints[-1], map_location="cpu", weights_only=True)  # torch >= 2.6 default
    _, pipeline, _, step = eval_setup(config.get_base_dir() / "config.yml", test_mode="inference")
    assert step == int(checkpoints[-1].stem.split("-")[-1])
    saved = torch.load(checkpoints[-1], map_location="cpu", weights_only=True)["pipeline"]
    loaded = pipeline.model.state_dict()
    key = next(k for k in loaded if k.startswith("avatars.fields") and "encoding" in k)
    torch.testing.assert_close(loaded[key], saved["_model." + key])
    assert pipeline.datamanager.train_dataset is not None  # nerfstudio keeps it in inference mode too
    camera = pipeline.datamanager.train_dataset.cameras[0:1]
    with torch.no_grad():
        outputs = pipeline.model.get_outputs_for_camera(camera)
    assert outputs["rgb"].shape[-1] == 3 and "rgb_person0" in outputs
