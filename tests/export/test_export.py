"""avatarpose-export poses / meshes on a short real run, the surface maths on their own, and what
nerfstudio's own ns-export subcommands do with an avatarpose run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh
from dataparser_fixtures import write_easymocap_sequence
from run_fixtures import short_run_trainer

from avatarpose_ns.body.skeleton import SMPL_JOINT_NAMES
from avatarpose_ns.export.surface import (
    Surface,
    isosurface,
    largest_component,
    surface_density,
)
from avatarpose_ns.io.easymocap import (
    SmplSequence,
    read_keypoints3d_folder,
    read_smpl_npz,
)

# a field small enough that 25 body-prior steps give a clean body on a CPU in seconds
TINY_FIELD = dict(num_levels=4, features_per_level=2, log2_hashmap_size=14, base_resolution=16, per_level_scale=2.0,
                  hidden_dim=16, hidden_dim_color=16)


@pytest.fixture(scope="module")
def run(tmp_path_factory, body_model):
    """avatarpose-lite on a 2-person, 2-frame sequence: each field fitted to its canonical body, then one
    avatar step (no pose step), checkpoint saved. Returns (config.yml, sequence root, trainer)."""
    from avatarpose_ns.models.body_prior import fit_field_to_body
    from avatarpose_ns.models.canonical_field import CanonicalFieldConfig

    root = tmp_path_factory.mktemp("export")
    write_easymocap_sequence(root / "seq", body_model, num_cameras=2, num_frames=2, seed=1)
    trainer = short_run_trainer(root / "seq", root / "outputs", ("avatar:1",),
                                field=CanonicalFieldConfig(**TINY_FIELD),
                                occupancy_resolution=32)  # the first step's occupancy update is then quick
    scene = trainer.pipeline.model.avatars
    canonical = scene.canonical_bodies()[0].detach()
    for person in range(scene.num_people):  # the body prior, faster than the training callback's
        fit_field_to_body(scene.fields[person], canonical[person], body_model.faces, steps=25, num_points=2048,
                          lr=5e-2)
    scene.body_prior_fitted.fill_(True)
    trainer.train()
    return trainer.config.get_base_dir() / "config.yml", root / "seq", trainer


# ----------------------------------------------------------------------------- poses


def _assert_same(people: dict, reference: dict, atol: float = 1e-5) -> None:
    assert sorted(people) == sorted(reference)
    for pid, seq in reference.items():
        got = people[pid]
        np.testing.assert_array_equal(got.frames, seq.frames)
        for name in ("betas", "body_pose", "global_orient", "transl"):
            np.testing.assert_allclose(getattr(got, name), getattr(seq, name), atol=atol, err_msg=f"{pid} {name}")


@pytest.mark.slow
def test_poses_round_trip_through_every_format(run, tmp_path, body_model):
    from avatarpose_ns.dataparsers.smpl_init import read_easymocap_smpl
    from avatarpose_ns.eval.loading import read_pose_source, smpl_sequences_to_joints
    from avatarpose_ns.export.cli import ExportPoses

    config_path, _, trainer = run
    ExportPoses(load_config=config_path, output_dir=tmp_path).main()
    model = trainer.pipeline.model
    expected = model.smpl_sequences()
    frames = model.frame_numbers
    assert sorted(p.name for p in (tmp_path / "smpl").iterdir()) == [f"{f:06d}.json" for f in frames]
    _assert_same(read_smpl_npz(tmp_path / "smpl.npz"), expected)
    _assert_same(read_easymocap_smpl(tmp_path / "smpl", frames, body_model), expected)
    record = json.loads((tmp_path / "smpl" / f"{frames[0]:06d}.json").read_text())[0]
    assert set(record) == {"id", "Rh", "Th", "poses", "shapes"} and np.shape(record["poses"]) == (1, 72)
    assert np.allclose(record["poses"][0][:3], 0.0)  # EasyMocap keeps the global orientation in Rh
    source = read_pose_source(tmp_path / "keypoints3d")  # the evaluation's reader
    assert source.kind == "keypoints3d"
    joints = smpl_sequences_to_joints(expected, body_model)
    for frame in frames:
        for pid, keypoints in source.keypoints[frame].items():
            assert keypoints.shape == (24, 4) and np.all(keypoints[:, 3] == 1.0)
            np.testing.assert_allclose(keypoints[:, :3], joints[frame][pid], atol=2e-6)


@pytest.mark.slow
def test_without_pose_steps_the_exported_joints_are_the_initialisation(run, tmp_path, body_model):
    from avatarpose_ns.eval.loading import smpl_sequences_to_joints
    from avatarpose_ns.export.cli import ExportPoses

    config_path, seq, trainer = run
    ExportPoses(load_config=config_path, output_dir=tmp_path).main()
    # the initialisation the model started from: smpl_init refined to the masks by the dataparser
    metadata = trainer.pipeline.datamanager.train_dataparser_outputs.metadata
    assert metadata["smpl_init_source"].endswith("refined to the masks")
    start = {int(p): SmplSequence(**v) for p, v in metadata["smpl_init"].items()}
    init = smpl_sequences_to_joints(start, body_model)
    exported = read_keypoints3d_folder(tmp_path / "keypoints3d")
    assert sorted(exported) == sorted(init)
    for frame, people in init.items():
        for pid, joints in people.items():  # the pose MLP starts within ~1e-5 of zero, so ~0.1 mm at most
            np.testing.assert_allclose(exported[frame][pid][:, :3], joints, atol=5e-4)


def test_easymocap_records_invert_the_init_reader(tmp_path, body_model):
    """Random parameters (rotations under pi, where the axis-angle vector is unique) survive
    EasyMocap's origin-centred Rh/Th convention both ways."""
    from avatarpose_ns.dataparsers.smpl_init import read_easymocap_smpl
    from avatarpose_ns.export.poses import write_easymocap_smpl_folder

    rng = np.random.default_rng(4)
    frames = np.array([3, 4, 7])
    people = {pid: SmplSequence(rng.normal(0, 1, 10), rng.normal(0, 0.3, (3, 69)), rng.normal(0, 0.8, (3, 3)),
                                rng.normal(0, 1, (3, 3)), frames) for pid in (0, 5)}
    write_easymocap_smpl_folder(tmp_path, people, body_model)
    _assert_same(read_easymocap_smpl(tmp_path, list(frames), body_model), people, atol=1e-9)


# ----------------------------------------------------------------------------- meshes


@pytest.mark.slow
def test_meshes_per_frame_and_person_near_the_people(run, tmp_path, body_model):
    from avatarpose_ns.dataparsers.smpl_init import posed_joints
    from avatarpose_ns.export.cli import ExportMeshes

    config_path, seq, trainer = run
    ExportMeshes(load_config=config_path, output_dir=tmp_path, resolution=64).main()
    model = trainer.pipeline.model
    gt = read_smpl_npz(seq / "smpl_gt" / "smpl.npz")
    for kind in ("smpl_meshes", "avatar_meshes"):
        names = sorted(p.name for p in (tmp_path / kind).iterdir())
        assert names == sorted(f"{f:06d}_person{pid}.ply" for f in model.frame_numbers for pid in model.person_ids)
    for pid, seq_gt in gt.items():
        joints = posed_joints(body_model, seq_gt)
        for i, frame in enumerate(seq_gt.frames):
            box = np.stack([joints[i].min(axis=0), joints[i].max(axis=0)])
            smpl = trimesh.load(tmp_path / "smpl_meshes" / f"{frame:06d}_person{pid}.ply")
            avatar = trimesh.load(tmp_path / "avatar_meshes" / f"{frame:06d}_person{pid}.ply")
            assert len(smpl.vertices) == body_model.num_vertices
            for mesh in (smpl, avatar):
                assert np.abs(mesh.bounds - box).max() < 0.3, (frame, pid, mesh.bounds, box)
            assert avatar.is_watertight and avatar.volume > 0.03  # one closed body (an adult is ~0.07 m^3)
            assert avatar.visual.vertex_colors.shape == (len(avatar.vertices), 4)


@pytest.mark.slow
def test_meshes_obj_for_chosen_frames_without_avatars(run, tmp_path):
    from avatarpose_ns.export.cli import ExportMeshes

    config_path, _, trainer = run
    frame = trainer.pipeline.model.frame_numbers[-1]
    ExportMeshes(load_config=config_path, output_dir=tmp_path, format="obj", avatar_surface=False,
                 frames=[frame]).main()
    assert sorted(p.name for p in (tmp_path / "smpl_meshes").iterdir()) == [f"{frame:06d}_person0.obj",
                                                                              f"{frame:06d}_person1.obj"]
    assert not (tmp_path / "avatar_meshes").exists()
    with pytest.raises(SystemExit, match="not in this run"):
        ExportMeshes(load_config=config_path, output_dir=tmp_path, frames=[frame + 100]).main()


# ----------------------------------------------------------------------------- animation


@pytest.mark.slow
def test_animation_from_a_run_follows_its_poses_and_avatar_meshes(run, tmp_path, body_model):
    """--load-config: the GLBs' joints are the run's posed SMPL joints; with --mesh avatar the skinned avatar
    is the per-frame avatar mesh of `meshes` (the same surface, posed by the same weights, 4 kept)."""
    from gltf_reader import Glb

    from avatarpose_ns.eval.loading import smpl_sequences_to_joints
    from avatarpose_ns.export.cli import ExportAnimation, ExportMeshes
    from avatarpose_ns.export.rig import world_to_output

    config_path, _, trainer = run
    model = trainer.pipeline.model
    c = world_to_output(model.world_up)
    ExportAnimation(load_config=config_path, output_dir=tmp_path / "smpl").main()
    folder = tmp_path / "smpl" / "animation"
    assert sorted(p.name for p in folder.iterdir()) == ["everyone.glb", "person0.bvh", "person0.glb",
                                                          "person1.bvh", "person1.glb"]
    joints = smpl_sequences_to_joints(model.smpl_sequences(), body_model)
    everyone = Glb(folder / "everyone.glb")
    for k, frame in enumerate(model.frame_numbers):
        world = everyone.world_matrices(k)
        for pid in model.person_ids:
            got = np.stack([world[everyone.node_index(f"person{pid}_{name}")][:3, 3] for name in SMPL_JOINT_NAMES])
            assert np.abs(got - joints[frame][pid] @ c.T).max() < 1e-4

    ExportAnimation(load_config=config_path, output_dir=tmp_path / "avatar", mesh="avatar", resolution=32).main()
    ExportMeshes(load_config=config_path, output_dir=tmp_path / "avatar", resolution=32).main()
    for pid in model.person_ids:
        glb = Glb(tmp_path / "avatar" / "animation" / f"person{pid}.glb")
        node = glb.node_index(f"person{pid}_body")
        assert glb.gltf.meshes[glb.gltf.nodes[node].mesh].primitives[0].attributes.COLOR_0 is not None
        for k, frame in enumerate(model.frame_numbers):
            mesh = trimesh.load(tmp_path / "avatar" / "avatar_meshes" / f"{frame:06d}_person{pid}.ply", process=False)
            error = np.linalg.norm(glb.skinned_vertices(node, k) - mesh.vertices @ c.T, axis=1)
            assert np.median(error) < 1e-4 and error.max() < 0.01, (pid, frame, np.median(error), error.max())


def test_surface_level_is_opacity_one_half_over_the_lite_step():
    assert surface_density() == pytest.approx(np.log(2) / 0.01)
    assert 1 - np.exp(-surface_density() * 0.01) == pytest.approx(0.5)


def test_isosurface_is_closed_at_the_grid_border_and_largest_component_drops_blobs():
    ticks = np.linspace(-1.0, 1.0, 33)
    x, y, z = np.meshgrid(ticks, ticks, ticks, indexing="ij")
    ball = 1.2 - np.sqrt(x ** 2 + y ** 2 + z ** 2)  # cut by the grid's faces
    blob = 0.15 - np.sqrt((x - 0.8) ** 2 + (y - 0.8) ** 2 + (z - 0.8) ** 2)
    origin, spacing = np.full(3, -1.0), ticks[1] - ticks[0]
    both = isosurface(np.maximum(ball - 0.6, blob), 0.0, origin, spacing)  # ball radius 0.6 and a small blob
    kept = largest_component(both)
    mesh = trimesh.Trimesh(kept.vertices, kept.faces, process=False)
    assert len(kept.faces) < len(both.faces) and mesh.is_watertight
    assert mesh.volume == pytest.approx(4 / 3 * np.pi * 0.6 ** 3, rel=0.05)  # positive: normals point out
    cut = trimesh.Trimesh(*(lambda s: (s.vertices, s.faces))(isosurface(ball, 0.0, origin, spacing)), process=False)
    assert cut.is_watertight and np.allclose(cut.bounds, [[-1, -1, -1], [1, 1, 1]], atol=1e-6)
    assert isosurface(np.zeros((4, 4, 4)), 0.5, origin, spacing).is_empty
    assert largest_component(Surface(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64))).is_empty


# ----------------------------------------------------------------------------- nerfstudio's ns-export


@pytest.mark.slow
def test_ns_export_cameras_works(run, tmp_path):
    from nerfstudio.scripts.exporter import ExportCameraPoses

    config_path, _, trainer = run
    ExportCameraPoses(load_config=config_path, output_dir=tmp_path).main()
    frames = json.loads((tmp_path / "transforms_train.json").read_text())
    assert len(frames) == len(trainer.pipeline.datamanager.train_dataset)
    assert np.shape(frames[0]["transform"]) == (3, 4)


@pytest.mark.slow
def test_ns_export_point_cloud_says_why_not(run, tmp_path):
    """pointcloud / poisson with --normal-method open3d and tsdf all stop at get_rgba_image."""
    from nerfstudio.scripts.exporter import ExportPointCloud

    config_path, _, _ = run
    with pytest.raises(NotImplementedError, match="avatarpose-export meshes"):
        ExportPointCloud(load_config=config_path, output_dir=tmp_path, normal_method="open3d", num_points=64,
                         num_rays_per_batch=256).main()
