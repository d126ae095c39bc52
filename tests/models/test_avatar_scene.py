"""AvatarScene: the torch-only avatar renderer learns the people of a tiny sequence."""

import numpy as np
import pytest
import torch

from avatarpose_ns.io.frame_rays import frame_rays
from avatarpose_ns.io.easymocap import read_smpl_npz
from avatarpose_ns.models.avatar_scene import AvatarScene, AvatarSceneConfig
from avatarpose_ns.models.canonical_field import CanonicalFieldConfig
from avatarpose_ns.models.losses import avatar_losses


def _scene(sequence, body_model):
    init = read_smpl_npz(sequence / "smpl_gt" / "smpl.npz")
    people = {p: {"betas": s.betas, "body_pose": s.body_pose, "global_orient": s.global_orient, "transl": s.transl}
              for p, s in init.items()}
    config = AvatarSceneConfig(field=CanonicalFieldConfig.small(), num_samples=24)
    return AvatarScene(body_model, people, config)


def test_training_steps_lower_the_loss(tiny_sequence, body_model):
    torch.manual_seed(0)
    scene = _scene(tiny_sequence, body_model)
    origins, directions, colours, mask = frame_rays(tiny_sequence)
    target = torch.where(mask[:, None], colours, torch.ones_like(colours))
    on_people = mask.nonzero()[:, 0]
    optimizer = torch.optim.Adam(scene.fields.parameters(), lr=1e-2, eps=1e-15)
    generator = torch.Generator().manual_seed(0)
    rays = torch.cat([on_people[torch.randint(len(on_people), (384,), generator=generator)],
                      torch.randint(len(mask), (128,), generator=generator)])
    losses = []
    for step in range(20):
        result = scene.render(origins[rays], directions[rays], frame_position=0)
        r = result.render
        loss = sum(avatar_losses(r.rgb, target[rays], r.accumulation, mask[rays].float(),
                                 person_accumulation=r.person_accumulation, sample_weights=r.weights).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert losses[-1] < 0.6 * losses[0], losses


def test_render_shapes_and_layers(tiny_sequence, body_model):
    scene = _scene(tiny_sequence, body_model).eval()
    origins, directions, _, mask = frame_rays(tiny_sequence)
    pick = torch.cat([mask.nonzero()[:50, 0], (~mask).nonzero()[:50, 0]])
    with torch.no_grad():
        render = scene.render(origins[pick], directions[pick], frame_position=1).render
    assert render.rgb.shape == (100, 3) and render.person_accumulation.shape == (100, 2)
    torch.testing.assert_close(render.person_accumulation.sum(-1), render.accumulation, atol=1e-5, rtol=0)
    assert torch.all(render.accumulation[50:] < 1e-3)  # rays that miss everyone's box stay empty


def test_gradients_reach_the_pose(tiny_sequence, body_model):
    scene = _scene(tiny_sequence, body_model)
    origins, directions, _, mask = frame_rays(tiny_sequence)
    rays = mask.nonzero()[:200, 0]
    render = scene.render(origins[rays], directions[rays], frame_position=0).render
    render.rgb.sum().backward()
    last_layer = [mlp[-1].weight.grad for mlp in scene.smpl.pose_mlps]
    assert all(g is not None and g.abs().sum() > 0 for g in last_layer)
    for delta in (scene.smpl.delta_transl, scene.smpl.delta_orient):
        assert delta.grad[:, 0].abs().sum() > 0
        assert torch.all(delta.grad[:, 1:] == 0)  # other frames untouched


def test_nan_initialisation_is_refused(body_model):
    import pytest

    people = {0: {"betas": np.zeros(10), "body_pose": np.full((2, 69), np.nan), "global_orient": np.zeros((2, 3)),
                  "transl": np.zeros((2, 3))}}
    with pytest.raises(ValueError, match="body_pose' contains NaN"):
        AvatarScene(body_model, people, AvatarSceneConfig(field=CanonicalFieldConfig.small()))


def test_view_dependent_colour_gets_canonical_directions(tiny_sequence, body_model):
    """With direction_sh_degree > 0 the colour MLP's direction inputs are the spherical
    harmonics of the rays carried into canonical space by each sample's skinning map."""
    import dataclasses

    from avatarpose_ns.models.canonical_field import spherical_harmonics

    init = read_smpl_npz(tiny_sequence / "smpl_gt" / "smpl.npz")
    people = {p: {"betas": s.betas, "body_pose": s.body_pose, "global_orient": s.global_orient, "transl": s.transl}
              for p, s in init.items()}
    field = dataclasses.replace(CanonicalFieldConfig.small(), direction_sh_degree=2)
    scene = AvatarScene(body_model, people, AvatarSceneConfig(field=field, num_samples=24))
    origins, directions, _, mask = frame_rays(tiny_sequence)
    rays = mask.nonzero()[:100, 0]
    seen = []
    hook = scene.fields[0].color_mlp.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    render = scene.render(origins[rays], directions[rays], frame_position=0).render
    hook.remove()
    direction_features = seen[0][:, field.geo_feat_dim:]
    assert direction_features.shape[1] == 9
    # every input is the harmonics of some unit direction: Y_00 constant, degree-1 terms of norm C1
    torch.testing.assert_close(direction_features[:, 0], torch.full_like(direction_features[:, 0], 0.28209479177387814))
    torch.testing.assert_close(direction_features[:, 1:4].norm(dim=-1),
                               torch.full_like(direction_features[:, 0], 0.4886025119029199))
    # and they differ from the world-frame rays' harmonics (the bodies are posed)
    world = spherical_harmonics(directions[rays], 2)
    assert not any(torch.allclose(direction_features[:1], w[None], atol=1e-3) for w in world)
    render.rgb.sum().backward()
    assert scene.fields[0].color_mlp[0].weight.grad[:, field.geo_feat_dim + 1:].abs().sum() > 0


@pytest.mark.parametrize("every", [5, 20])
def test_occupancy_updates_every_configured_step_and_only_while_the_fields_train(tiny_sequence, every):
    from nerfstudio.engine.callbacks import TrainingCallbackLocation

    from model_fixtures import tiny_model

    model = tiny_model(tiny_sequence, occupancy_update_every=every)
    callbacks = model.get_training_callbacks(None)
    grid = model.avatars.occupancy
    for phase, expected in (("avatar", 40 // every + 1), ("pose", 0)):
        model.set_phase(phase)
        before = int(grid.num_updates)
        for step in range(41):
            for callback in callbacks:
                if callback.func.__name__ == "update_occupancy":
                    callback.run_callback_at_location(step, TrainingCallbackLocation.AFTER_TRAIN_ITERATION)
        assert int(grid.num_updates) - before == expected, phase
