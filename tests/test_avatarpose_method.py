"""The avatarpose methods inside nerfstudio: registered, train on CPU, checkpoints load again."""

from pathlib import Path

import pytest
import torch

from dataparser_fixtures import write_easymocap_sequence


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, body_model):
    """Three CPU iterations of avatarpose-lite on a tiny sequence, with a saved checkpoint."""
    from avatarpose_ns.method_configs import avatarpose_trainer

    root = tmp_path_factory.mktemp("method")
    write_easymocap_sequence(root / "seq", body_model, num_cameras=2, num_frames=2, seed=1)
    config = avatarpose_trainer(lite=True)
    config.pipeline.datamanager.data = root / "seq"
    config.pipeline.datamanager.train_num_rays_per_batch = 256
    config.pipeline.model.num_samples = 16
    config.output_dir = root / "outputs"
    config.max_num_iterations = 3
    config.steps_per_save = 2
    config.steps_per_eval_batch = 2
    config.steps_per_eval_image = 1000
    config.vis = "tensorboard"
    config.set_timestamp()
    config.save_config()
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    before = {k: v.clone() for k, v in trainer.pipeline.model.state_dict().items()}
    trainer.train()
    return config, trainer, before


def test_methods_are_registered():
    from nerfstudio.plugins.registry import discover_methods

    methods, _ = discover_methods()
    assert {"avatarpose", "avatarpose-lite"} <= set(methods)
    assert methods["avatarpose"].pipeline.model.canonical_field.num_levels == 16  # released sizes
    assert methods["avatarpose-lite"].machine.device_type == "cpu"


def test_training_changes_the_fields_not_the_poses(trained_run):
    _, trainer, before = trained_run
    after = trainer.pipeline.model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any(k.startswith("avatars.fields") for k in changed)
    for name in ("avatars.smpl.body_pose", "avatars.smpl.global_orient", "avatars.smpl.transl"):
        assert torch.equal(before[name], after[name]), name  # the avatar phase leaves poses alone


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
    camera = pipeline.datamanager.train_dataset.cameras[0:1] if pipeline.datamanager.train_dataset else None
    if camera is not None:
        with torch.no_grad():
            outputs = pipeline.model.get_outputs_for_camera(camera)
        assert outputs["rgb"].shape[-1] == 3 and "rgb_person0" in outputs
