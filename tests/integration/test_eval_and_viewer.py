"""Pose metrics in nerfstudio's evaluation (ns-eval) and the viewer's pose overlays, on a tiny run."""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import socket
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dataparser_fixtures import write_easymocap_sequence
from run_fixtures import short_run_trainer

POSE_KEYS = ("mpjpe", "pcp", "pck50", "ap50", "ap100", "recall500")


def _train(root: Path, data: Path):
    """avatarpose-lite for 2 steps (avatar, pose) without the viewer; returns the trainer."""
    trainer = short_run_trainer(data, root / "outputs", ("avatar:1", "pose:1"), rays=128, num_samples=8,
                                # the overlay callback runs (and must do nothing without a viewer)
                                pipeline_options={"overlay_update_every": 1}, body_prior_steps=2)
    trainer.train()
    return trainer


@pytest.fixture(scope="module")
def runs(tmp_path_factory, body_model):
    """Two tiny trained runs: the sequence with smpl_gt/ and a copy without it."""
    root = tmp_path_factory.mktemp("evalviewer")
    write_easymocap_sequence(root / "gt", body_model, num_cameras=2, num_frames=2, seed=4)
    shutil.copytree(root / "gt", root / "nogt")
    shutil.rmtree(root / "nogt" / "smpl_gt")
    return {"gt": _train(root / "run_gt", root / "gt"), "nogt": _train(root / "run_nogt", root / "nogt")}


def _ns_eval(trainer, tmp_path: Path) -> dict:
    """nerfstudio's own ns-eval entry on the run's config.yml."""
    from nerfstudio.scripts.eval import ComputePSNR

    output = tmp_path / "eval.json"
    ComputePSNR(load_config=trainer.config.get_base_dir() / "config.yml", output_path=output).main()
    return json.loads(output.read_text())["results"]


@pytest.mark.slow
def test_ns_eval_reports_pose_metrics_with_ground_truth(runs, tmp_path):
    results = _ns_eval(runs["gt"], tmp_path)
    assert {"psnr", "ssim", "psnr_std"} <= set(results)
    for key in POSE_KEYS:
        assert key in results and math.isfinite(results[key]), key
    # the init is ground truth plus small noise and the run is 2 steps long: close to it
    assert 0 < results["mpjpe"] < 150 and results["recall500"] == 100.0
    assert "lpips" not in results or math.isfinite(results["lpips"])  # only with locally present weights


@pytest.mark.slow
def test_pose_metrics_absent_without_ground_truth(runs, tmp_path):
    results = _ns_eval(runs["nogt"], tmp_path)
    assert "psnr" in results
    assert not set(POSE_KEYS) & set(results)


@pytest.mark.slow
def test_pose_metrics_match_the_export_and_eval_path(runs, body_model):
    """The pipeline's numbers equal avatarpose-eval's on the exported poses and the GT file."""
    from avatarpose_ns.eval.loading import smpl_sequences_to_joints
    from avatarpose_ns.eval.metrics import evaluate_sequence
    from avatarpose_ns.io.easymocap import read_smpl_npz

    pipeline = runs["gt"].pipeline
    data = Path(pipeline.datamanager.config.data)
    gt = smpl_sequences_to_joints(read_smpl_npz(data / "smpl_gt" / "smpl.npz"), body_model)
    pred = smpl_sequences_to_joints(pipeline.model.smpl_sequences(), body_model)
    expected = evaluate_sequence(pred, gt)
    got = pipeline.get_pose_metrics()
    assert got["mpjpe"] == pytest.approx(expected.mpjpe, rel=1e-5)
    assert got["ap50"] == pytest.approx(expected.ap[50], rel=1e-5)


# ----------------------------------------------------------------------------- viewer overlays


class FakeHandle:
    def __init__(self, scene, name):
        self.scene, self.name = scene, name

    def remove(self):
        self.scene.nodes.pop(self.name, None)


class FakeScene:
    """Records what the overlays draw (the viser 0.2.7 calls they use)."""

    def __init__(self):
        self.nodes = {}

    def _add(self, kind, name, **kwargs):
        self.nodes[name] = (kind, kwargs)
        return FakeHandle(self, name)

    def add_spline_catmull_rom(self, name, positions, **kwargs):
        return self._add("line", name, positions=np.asarray(positions), **kwargs)

    def add_point_cloud(self, name, points, colors, **kwargs):
        return self._add("points", name, points=points, colors=colors, **kwargs)

    def add_mesh_simple(self, name, vertices, faces, **kwargs):
        return self._add("mesh", name, vertices=vertices, faces=faces, **kwargs)


class FakeGuiHandle:
    """A GUI handle: holds its value and callbacks (a value set from Python does not call them here)."""

    def __init__(self, gui, kind, label, value, **kwargs):
        self.kind, self.label, self.value, self.kwargs = kind, label, value, kwargs
        self.folder = gui.folder
        self.callbacks = []

    def on_update(self, callback):
        self.callbacks.append(callback)

    def move_to(self, value):
        """What a user does: change the value, then the callbacks run."""
        self.value = value
        for callback in self.callbacks:
            callback(None)


class FakeGui:
    """Records the GUI the overlays install (the viser 0.2.7 calls nerfstudio's elements use)."""

    def __init__(self):
        self.handles, self.folders, self.folder = [], [], None

    @contextlib.contextmanager
    def add_folder(self, label, order=None, expand_by_default=True):
        self.folders.append((label, order, expand_by_default))
        self.folder = label
        yield
        self.folder = None

    def _add(self, kind, label, value, **kwargs):
        self.handles.append(FakeGuiHandle(self, kind, label, value, **kwargs))
        return self.handles[-1]

    def add_checkbox(self, label, initial_value, **kwargs):
        return self._add("checkbox", label, initial_value, **kwargs)

    def add_text(self, label, initial_value, **kwargs):
        return self._add("text", label, initial_value, **kwargs)

    def add_slider(self, label, min, max, step, initial_value, **kwargs):
        return self._add("slider", label, initial_value, min=min, max=max, step=step, **kwargs)


def _fake_viewer():
    slider_callbacks = []
    server = SimpleNamespace(scene=FakeScene(), gui=FakeGui(), atomic=contextlib.nullcontext,
                             on_client_connect=lambda cb: None)
    slider = SimpleNamespace(gui_handle=SimpleNamespace(on_update=slider_callbacks.append))
    panel = SimpleNamespace(time=0.0, _time=slider, _layer_depth=SimpleNamespace(value=True))
    stats = SimpleNamespace(order=3.0)
    return SimpleNamespace(viser_server=server, control_panel=panel, stats_markdown=stats), slider_callbacks


@pytest.mark.slow
def test_overlays_draw_skeletons_for_the_slider_frame(runs):
    from avatarpose_ns.eval.model_metrics import frame_joints
    from avatarpose_ns.models.palette import person_colour
    from avatarpose_ns.viewer.overlays import VISER_SCALE

    pipeline = runs["gt"].pipeline
    overlays = pipeline.overlays
    model = pipeline.model
    assert not overlays.attached  # trained with --vis tensorboard: nothing was set up or drawn
    viewer, slider_callbacks = _fake_viewer()
    overlays.control._setup(viewer)
    try:
        nodes = viewer.viser_server.scene.nodes
        for index, pid in enumerate(model.person_ids):
            lines = [v for k, v in nodes.items() if k.startswith(f"/avatarpose/person_{pid}/skeleton/bone")]
            assert len(lines) == 23 and all(kw["color"] == person_colour(index) for _, kw in lines)
        # the joints sit where the model poses them at frame 0, in viser units (scene frame x 10)
        joints0 = frame_joints(model, 0)[0]
        pid0 = model.person_ids[0]
        drawn = nodes[f"/avatarpose/person_{pid0}/skeleton/joints"][1]["points"]
        np.testing.assert_allclose(drawn, model.scene_transform.to_scene(joints0[0]) * VISER_SCALE, atol=1e-4)
        assert overlays.gui["mpjpe"].value.endswith(f" mm, frame {model.frame_numbers[0]}")
        assert overlays.gui["mpjpe_people"].value.count(":") == 2  # both GT persons

        # the slider moves to the last frame: the skeleton follows and the readout names that frame
        viewer.control_panel.time = 1.0
        for callback in slider_callbacks:
            callback(None)
        joints1 = frame_joints(model, model.num_frames - 1)[0]
        drawn = nodes[f"/avatarpose/person_{pid0}/skeleton/joints"][1]["points"]
        np.testing.assert_allclose(drawn, model.scene_transform.to_scene(joints1[0]) * VISER_SCALE, atol=1e-4)
        assert overlays.gui["mpjpe"].value.endswith(f" mm, frame {model.frame_numbers[-1]}")

        # one person off, meshes and ground truth on
        overlays.gui["person_00"].value = False
        overlays.gui["show_mesh"].value = True
        overlays.gui["show_ground_truth"].value = True
        overlays.refresh()
        assert not [k for k in nodes if k.startswith(f"/avatarpose/person_{pid0}/")]
        pid1 = model.person_ids[1]
        kind, mesh = nodes[f"/avatarpose/person_{pid1}/mesh"]
        assert kind == "mesh" and mesh["vertices"].shape == (model.body_model.num_vertices, 3)
        assert [k for k in nodes if k.startswith("/avatarpose/ground_truth/")]
    finally:
        overlays.gui["person_00"].value = True
        overlays.gui["show_mesh"].value = False
        overlays.gui["show_ground_truth"].value = False
        overlays._server = overlays._viewer = None


@pytest.mark.slow
def test_overlays_without_ground_truth_have_no_readout(runs):
    pipeline = runs["nogt"].pipeline
    overlays = pipeline.overlays
    assert "mpjpe" not in overlays.gui and "show_ground_truth" not in overlays.gui
    viewer, _ = _fake_viewer()
    overlays.control._setup(viewer)
    try:
        nodes = viewer.viser_server.scene.nodes
        assert len([k for k in nodes if "/skeleton/bone" in k]) == 23 * len(pipeline.model.person_ids)
        assert not [k for k in nodes if "ground_truth" in k]
    finally:
        overlays._server = overlays._viewer = None


def test_overlays_draw_what_their_source_gives():
    """No pipeline needed: the overlays draw the source's joints, through its scene transform, at the slider's
    frame, the mesh with the source's triangles, and the readout against the source's ground truth."""
    from avatarpose_ns.scene.transform import SceneTransform
    from avatarpose_ns.viewer.overlays import VISER_SCALE, OverlaySource, PoseOverlays

    rng = np.random.default_rng(0)
    joints = rng.normal(size=(2, 2, 24, 3))  # frame position, person, joint
    vertices = rng.normal(size=(2, 2, 5, 3))
    faces = np.array([[0, 1, 2], [2, 3, 4]])
    calls = []

    def frame_joints(position, with_vertices):
        calls.append((position, with_vertices))
        return joints[position], (vertices[position] if with_vertices else None)

    gt = {10: {7: joints[0, 0] + 0.01}, 11: {7: joints[1, 1]}}  # 10 mm off person 3; exactly person 4
    transform = SceneTransform(np.eye(3), np.array([0.5, 0.0, 0.0]), 0.5)
    source = OverlaySource(person_ids=[3, 4], frame_numbers=[10, 11], scene_transform=transform, faces=faces,
                           frame_joints=frame_joints, ground_truth_joints=lambda: gt)
    overlays = PoseOverlays(source)
    viewer, slider_callbacks = _fake_viewer()
    overlays.control._setup(viewer)
    nodes = viewer.viser_server.scene.nodes
    drawn = nodes["/avatarpose/person_4/skeleton/joints"][1]["points"]
    np.testing.assert_allclose(drawn, 0.5 * (joints[0, 1] + [0.5, 0, 0]) * VISER_SCALE, rtol=1e-6)
    assert overlays.gui["mpjpe"].value == f"{10 * 3 ** 0.5:.1f} mm, frame 10"
    viewer.control_panel.time = 1.0
    overlays.gui["show_mesh"].value = True
    for callback in slider_callbacks:
        callback(None)
    assert calls == [(0, False), (1, True)]
    drawn = nodes["/avatarpose/person_3/skeleton/joints"][1]["points"]
    np.testing.assert_allclose(drawn, 0.5 * (joints[1, 0] + [0.5, 0, 0]) * VISER_SCALE, rtol=1e-6)
    mesh = nodes["/avatarpose/person_3/mesh"][1]
    np.testing.assert_array_equal(mesh["faces"], faces)
    np.testing.assert_allclose(mesh["vertices"], 0.5 * (vertices[1, 0] + [0.5, 0, 0]) * VISER_SCALE, rtol=1e-6)
    assert overlays.gui["mpjpe"].value == "0.0 mm, frame 11"


def test_overlay_gui_sits_in_an_open_folder_with_a_frame_slider_in_step_with_time():
    from avatarpose_ns.scene.transform import SceneTransform
    from avatarpose_ns.viewer.overlays import FOLDER, MESH_OPACITY, OverlaySource, PoseOverlays

    joints = np.zeros((3, 1, 24, 3))
    joints[:, 0, :, 0] = np.arange(3)[:, None]  # frame position p: every joint at x = p
    drawn_at = []

    def frame_joints(position, with_vertices):
        drawn_at.append(position)
        return joints[position], (np.zeros((1, 3, 3)) if with_vertices else None)

    source = OverlaySource(person_ids=[0], frame_numbers=[20, 22, 24], scene_transform=SceneTransform.identity(),
                           faces=np.array([[0, 1, 2]]), frame_joints=frame_joints)
    overlays = PoseOverlays(source)
    viewer, time_callbacks = _fake_viewer()
    overlays.control._setup(viewer)
    gui = viewer.viser_server.gui
    # one open folder right under the stats (order 3), above nerfstudio's tabs; every element inside it
    assert gui.folders == [(FOLDER, 3.5, True)]
    assert all(handle.folder == FOLDER for handle in gui.handles)
    assert viewer.control_panel._layer_depth.value is False
    frame = next(h for h in gui.handles if h.label == "Frame")
    assert (frame.value, frame.kwargs["min"], frame.kwargs["max"], frame.kwargs["step"]) == (20, 20, 24, 2)

    frame.move_to(24)  # the Frame slider drives nerfstudio's time (0..1)
    assert viewer.control_panel.time == 1.0
    viewer.control_panel.time = 0.45  # and the time slider drives the Frame slider (nearest frame)
    for callback in time_callbacks:
        callback(None)
    assert frame.value == 22 and drawn_at[-1] == 1

    mesh = next(h for h in gui.handles if h.label == "SMPL meshes")
    mesh.move_to(True)
    kwargs = viewer.viser_server.scene.nodes["/avatarpose/person_0/mesh"][1]
    assert MESH_OPACITY == 0.2 and kwargs["opacity"] == 0.2 and kwargs["wireframe"] is False
    next(h for h in gui.handles if h.label == "Mesh wireframe").move_to(True)
    kwargs = viewer.viser_server.scene.nodes["/avatarpose/person_0/mesh"][1]
    assert kwargs["wireframe"] is True and kwargs["opacity"] is None


@pytest.mark.slow
def test_instance_map_uses_the_overlay_palette(runs):
    from avatarpose_ns.models.palette import person_colour

    pipeline = runs["gt"].pipeline
    camera = pipeline.datamanager.train_dataset.cameras[0:1]
    pipeline.eval()  # the per-person images and the instance map are viewer / render outputs
    try:
        with torch.no_grad():
            outputs = pipeline.model.get_outputs_for_camera(camera)
    finally:
        pipeline.train()
    instance = outputs["instance"].reshape(-1, 3)
    accumulation = torch.stack([outputs[f"accumulation_person{p}"].reshape(-1) for p in pipeline.model.person_ids])
    for index in range(len(pipeline.model.person_ids)):
        mine = (accumulation[index] >= 0.5) & (accumulation.argmax(0) == index)
        if mine.any():
            expected = torch.tensor(person_colour(index), dtype=instance.dtype) / 255
            torch.testing.assert_close(instance[mine], expected.expand(int(mine.sum()), 3))
    nobody = accumulation.max(0).values < 0.5
    torch.testing.assert_close(instance[nobody], pipeline.model.avatars.background.expand(int(nobody.sum()), 3))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_nerfstudio_viewer_installs_the_overlays(runs, tmp_path):
    """The real nerfstudio Viewer (viser server, no browser) finds the GUI elements and the control."""
    from nerfstudio.configs.base_config import ViewerConfig
    from nerfstudio.viewer.viewer import Viewer

    pipeline = runs["gt"].pipeline
    overlays = pipeline.overlays
    viewer = Viewer(ViewerConfig(websocket_port=_free_port(), websocket_host="127.0.0.1"),
                    log_filename=tmp_path / "viewer_log.txt", datapath=tmp_path, pipeline=pipeline)
    try:
        assert overlays.attached
        # installed by the overlays themselves (in their folder at the top), not under "Custom Elements"
        assert not [path for path, _ in viewer.viewer_elements if "/overlays/" in path]
        assert all(element.gui_handle is not None for element in overlays.gui.values())
        assert viewer.control_panel.layer_depth is False  # the method's default, under ns-viewer too
        assert [n for n in overlays._nodes if n.endswith("/joints")]
        assert overlays.gui["mpjpe"].value.endswith(" mm, frame 0")
    finally:
        viewer.viser_server.stop()
        overlays._server = overlays._viewer = None


# ----------------------------------------------------------------------------- pure helpers


def test_colour_instances_uses_the_palette_and_background():
    from avatarpose_ns.models.palette import PERSON_COLOURS, colour_instances

    instance = torch.tensor([[-1, 0], [1, 10]])
    colours = colour_instances(instance, 11, torch.tensor([1.0, 1.0, 1.0]))
    assert colours.shape == (2, 2, 3)
    torch.testing.assert_close(colours[0, 0], torch.ones(3))
    torch.testing.assert_close(colours[0, 1] * 255, torch.tensor(PERSON_COLOURS[0], dtype=torch.float32))
    torch.testing.assert_close(colours[1, 0] * 255, torch.tensor(PERSON_COLOURS[1], dtype=torch.float32))
    # the palette repeats
    torch.testing.assert_close(colours[1, 1] * 255, torch.tensor(PERSON_COLOURS[10 % len(PERSON_COLOURS)],
                                                                 dtype=torch.float32))


def test_skeleton_segments_follow_the_kinematic_tree():
    from avatarpose_ns.body.skeleton import SMPL_PARENTS
    from avatarpose_ns.viewer.overlays import skeleton_segments

    joints = np.arange(24 * 3, dtype=np.float64).reshape(24, 3)
    segments = skeleton_segments(joints)
    assert segments.shape == (23, 2, 3)
    for (start, end), child in zip(segments, range(1, 24)):
        np.testing.assert_array_equal(start, joints[SMPL_PARENTS[child]])
        np.testing.assert_array_equal(end, joints[child])


def test_mpjpe_readout_text():
    from avatarpose_ns.viewer.overlays import format_mpjpe

    assert format_mpjpe(12, 41.26, {1: 42.9, 0: 39.84}) == ("41.3 mm, frame 12", "0: 39.8, 1: 42.9")
    assert format_mpjpe(3, 40.0, {0: 40.0, 1: float("nan")}) == ("40.0 mm, frame 3", "0: 40.0, 1: -")
    assert format_mpjpe(3, float("nan"), {0: float("nan")}) == ("none within 500 mm, frame 3", "0: -")
