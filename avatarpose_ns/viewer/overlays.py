"""Pose overlays in nerfstudio's viewer: every person's SMPL skeleton (and, optionally, posed mesh).

nerfstudio 1.1.5 builds its viewer (``nerfstudio.viewer.viewer.Viewer``) after the
pipeline and scans the pipeline's attributes, recursing into ``nn.Module``s, for

* ``ViewerElement``s (checkboxes, text, sliders...): installed in the Control tab
  under "Custom Elements/<attribute path>", below nerfstudio's own controls (out of
  sight); their callbacks run holding the trainer's lock and then re-render;
* ``ViewerControl``s: ``_setup(viewer)`` hands them the ``Viewer``, whose
  ``viser_server`` takes extra scene geometry and GUI and whose ``control_panel.time`` is
  the time slider (its handle, ``control_panel._time.gui_handle``, takes more
  ``on_update`` callbacks).

``PoseOverlays`` is such an ``nn.Module`` (without parameters, so checkpoints do not
change) drawing from an ``OverlaySource`` (the run's people, frames and scene frame, and
functions that pose the current state and the ground truth). Its GUI (``gui``: a Frame
slider kept in step with nerfstudio's 0..1 time slider, one checkbox per person, mesh and
wireframe checkboxes, a ground-truth checkbox and an MPJPE readout with ground truth) is
held in a dict, which nerfstudio's scan skips, and installed by the control itself in an
open "AvatarPose" folder right under the viewer's step readout, above the tabs. The
control also turns "Composite depth" off (the overlays are drawn inside the bodies), for
``ns-viewer`` too, which otherwise takes its own viewer defaults over the method's.
Without a viewer (``--vis tensorboard``, tests, ns-eval) ``_setup`` is never called and
every refresh returns at once. Scene units: nerfstudio's scene frame times
``VISER_SCALE`` (the viewer's ``VISER_NERFSTUDIO_SCALE_RATIO``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.utils.rich_utils import CONSOLE
from nerfstudio.viewer.viewer_elements import ViewerCheckbox, ViewerControl, ViewerElement, ViewerSlider, ViewerText
from torch import nn

from avatarpose_ns.body.skeleton import SMPL_PARENTS
from avatarpose_ns.eval.loading import FrameJoints
from avatarpose_ns.scene.transform import SceneTransform
from avatarpose_ns.scene.timeline import frame_times, time_to_frame_position
from avatarpose_ns.models.palette import GROUND_TRUTH_COLOUR, person_colour

VISER_SCALE = 10.0  # nerfstudio.viewer.viewer.VISER_NERFSTUDIO_SCALE_RATIO
ROOT = "/avatarpose"
JOINT_SIZE_M = 0.025  # viser's point size (the dots come out about twice as wide)
LINE_WIDTH_PX = 3.0
MESH_OPACITY = 0.2  # faint enough to leave the render and the skeletons readable
FOLDER = "AvatarPose"
START_VIEW_STEP = 0.05  # share of the way to the scene centre the start view sits in front of its camera
START_VIEW_ZOOM_OUT = 1.3  # the start view's field of view is this much wider than its camera's (some margin)


def bones(parents: Sequence[int] = SMPL_PARENTS) -> list[tuple[int, int]]:
    """(parent, child) joint pairs of a kinematic tree."""
    return [(int(p), child) for child, p in enumerate(parents) if p >= 0]


def skeleton_segments(joints: np.ndarray, parents: Sequence[int] = SMPL_PARENTS) -> np.ndarray:
    """Joints (J, 3) -> (J - 1, 2, 3) line segments from each joint's parent to the joint."""
    pairs = np.asarray(bones(parents), dtype=np.int64)
    return np.stack([joints[pairs[:, 0]], joints[pairs[:, 1]]], axis=1)


def to_viser(points: np.ndarray, transform: SceneTransform) -> np.ndarray:
    """World points (..., 3), metres -> the viewer's scene units."""
    return np.asarray(transform.to_scene(np.asarray(points, dtype=np.float64)) * VISER_SCALE, dtype=np.float32)


def format_mpjpe(frame_number: int, mean: float, per_person: dict[int, float]) -> tuple[str, str]:
    """Readout texts: ('41.3 mm, frame 12', '0: 39.8, 1: 42.9') by GT person id, '-' for a person not
    matched within 500 mm."""
    people = ", ".join(f"{pid}: {v:.1f}" if np.isfinite(v) else f"{pid}: -" for pid, v in sorted(per_person.items()))
    if not np.isfinite(mean):
        return f"none within 500 mm, frame {frame_number}", people
    return f"{mean:.1f} mm, frame {frame_number}", people


class ReadoutText(ViewerText):
    """Read-only text: changing its value neither re-renders the viewer nor waits for the trainer's lock
    (nerfstudio hooks those onto an element's update callback, which this element never registers)."""

    def __init__(self, name: str, default_value: str, hint: str | None = None) -> None:
        super().__init__(name, default_value, disabled=True, hint=hint)

    def install(self, viser_server) -> None:
        self._create_gui_handle(viser_server)


@dataclass(frozen=True)
class OverlaySource:
    """What the overlays draw from, and nothing more (the pipeline and model stay out of the module tree).

    person_ids, frame_numbers: the run's people and frames, in the model's order; scene_transform: the
    input world to nerfstudio's scene frame; faces (F, 3): the body model's triangles; frame_joints
    (frame position, with_vertices) -> joints (L, 24, 3) and vertices (L, V, 3) or None, the current poses
    in world metres; ground_truth_joints: frame number -> GT person id -> (24, 3) joints, called once when
    first drawn (None: the sequence has no ground truth); train_cameras: where new viewer clients may
    start (`start_camera` indexes them)."""

    person_ids: Sequence[int]
    frame_numbers: Sequence[int]
    scene_transform: SceneTransform
    faces: np.ndarray
    frame_joints: Callable[[int, bool], tuple[np.ndarray, np.ndarray | None]]
    ground_truth_joints: Callable[[], FrameJoints | None] | None = None
    train_cameras: Cameras | None = None

    @property
    def has_ground_truth(self) -> bool:
        return self.ground_truth_joints is not None


class _OverlayControl(ViewerControl):
    """Receives the Viewer from nerfstudio and hands it to the overlays."""

    def __init__(self, on_setup: Callable) -> None:
        self._on_setup = on_setup

    def _setup(self, viewer) -> None:
        super()._setup(viewer)
        self._on_setup(viewer)


class PoseOverlays(nn.Module):
    """Skeleton / mesh overlays of `source` and their GUI; `start_camera` is the training image whose view
    new viewer clients start from (None: viser's default view)."""

    def __init__(self, source: OverlaySource, start_camera: int | None = 0) -> None:
        super().__init__()
        self._source = source
        self._person_ids = [int(p) for p in source.person_ids]
        self._start_camera = start_camera if source.train_cameras is not None else None
        self._viewer = None
        self._server = None
        self._lock = threading.Lock()
        self._nodes: dict[str, object] = {}  # scene node name -> handle
        self._gt_joints = None
        self.control = _OverlayControl(self._attach)
        # GUI, in the order shown; a dict, so that nerfstudio does not install it under "Custom Elements"
        frames = [int(f) for f in source.frame_numbers]
        steps = np.diff(frames)
        self.gui: dict[str, ViewerElement] = {"frame": ViewerSlider(
            "Frame", frames[0], frames[0], frames[-1], int(np.gcd.reduce(steps)) if len(steps) else 1,
            cb_hook=lambda _: self._on_frame_slider(),
            hint="the sequence's frame number; moves nerfstudio's Time slider (0..1) with it")}
        for index, pid in enumerate(self._person_ids):
            self.gui[f"person_{index:02d}"] = ViewerCheckbox(
                f"Person {pid} skeleton", True, cb_hook=lambda _: self.refresh(),
                hint=f"SMPL skeleton of person {pid} at the selected frame, in the colour of its layer "
                     f"in the instance map")
        self.gui["show_mesh"] = ViewerCheckbox("SMPL meshes", False, cb_hook=lambda _: self.refresh(),
                                               hint="also draw the checked persons' posed SMPL meshes")
        self.gui["wireframe"] = ViewerCheckbox("Mesh wireframe", False, cb_hook=lambda _: self.refresh(),
                                               hint="draw the meshes as wireframes instead of faint surfaces")
        if source.has_ground_truth:
            self.gui["show_ground_truth"] = ViewerCheckbox("Ground-truth skeletons", False,
                                                           cb_hook=lambda _: self.refresh(),
                                                           hint="the ground-truth skeletons, in grey")
            self.gui["mpjpe"] = ReadoutText("MPJPE", "-", hint="this frame's MPJPE to the ground truth (matched "
                                                                "pairs)")
            self.gui["mpjpe_people"] = ReadoutText("per person", "-", hint="this frame's MPJPE, mm, per "
                                                                           "ground-truth person id")

    # ------------------------------------------------------------------ viewer hook-up
    @property
    def attached(self) -> bool:
        return self._server is not None

    def _attach(self, viewer) -> None:
        self._viewer = viewer
        self._server = viewer.viser_server
        self._install_gui(viewer)
        try:
            viewer.control_panel._layer_depth.value = False
        except AttributeError:  # another viewer version: leave its depth compositing alone
            pass
        try:
            viewer.control_panel._time.gui_handle.on_update(lambda _: self._on_time_slider())
        except AttributeError:  # no time slider (another viewer version): overlays follow training only
            CONSOLE.log("[yellow]avatarpose overlays: no time slider found; showing frame 0")
        if self._start_camera is not None:
            self._server.on_client_connect(self._start_view)
        self.refresh()

    def _install_gui(self, viewer) -> None:
        """The GUI in an open folder right under the step readout (nerfstudio's header), above the tabs."""
        try:
            order = float(viewer.stats_markdown.order) + 0.5
        except AttributeError:
            order = None
        with self._server.gui.add_folder(FOLDER, order=order, expand_by_default=True):
            for element in self.gui.values():
                element.gui_handle = None  # a handle from an earlier server (another viewer) is stale here
                element.install(self._server)

    def _on_frame_slider(self) -> None:
        """Frame slider moved: move nerfstudio's time slider to that frame (it re-renders and redraws)."""
        frames = np.asarray(self._source.frame_numbers)
        position = int(np.abs(frames - float(self.gui["frame"].value)).argmin())
        time = float(frame_times(len(frames))[position])
        panel = getattr(self._viewer, "control_panel", None)
        if panel is not None and abs(float(panel.time) - time) > 1e-9:
            panel.time = time
        else:
            self.refresh()

    def _on_time_slider(self) -> None:
        """Time slider moved: show its frame number on the Frame slider and redraw."""
        frame_number = int(self._source.frame_numbers[self.frame_position()])
        if int(self.gui["frame"].value) != frame_number:
            self.gui["frame"].value = frame_number
        self.refresh()

    def _start_view(self, client) -> None:
        """Put a new client's camera at a training camera, looking along its axis; a little in front of
        it, since the viewer draws that camera's frustum and image right there."""
        try:
            cameras = self._source.train_cameras
            camera = cameras[int(self._start_camera) % len(cameras)]
            c2w = camera.camera_to_worlds.reshape(3, 4).cpu().double().numpy()
            forward, up = -c2w[:, 2], c2w[:, 1]  # OpenGL: the camera looks along -z, y is up
            position = c2w[:, 3] * VISER_SCALE
            distance = max(float(-position @ forward), 1.0)  # to the scene centre's depth, where the people are
            position = position + START_VIEW_STEP * distance * forward
            distance *= 1 - START_VIEW_STEP
            with client.atomic():
                fov = 2 * np.arctan(START_VIEW_ZOOM_OUT * 0.5 * float(camera.height) / float(camera.fy))
                client.camera.fov = float(fov)
                client.camera.position = position
                client.camera.look_at = position + distance * forward
                client.camera.up_direction = up
        except Exception as err:  # a viewer convenience: never stop training for it
            CONSOLE.log(f"[yellow]avatarpose overlays: could not set the start view ({err})")

    # ------------------------------------------------------------------ drawing
    def frame_position(self) -> int:
        """The frame the time slider selects (0 without a viewer or slider)."""
        try:
            time = float(self._viewer.control_panel.time)
        except AttributeError:
            time = 0.0
        return int(time_to_frame_position(time, len(self._source.frame_numbers)))

    def _ground_truth(self):
        if self._gt_joints is None:
            self._gt_joints = self._source.ground_truth_joints() or {}
        return self._gt_joints

    def refresh(self) -> None:
        """Redraw the overlays for the slider's frame with the current poses (no-op without a viewer)."""
        if self._server is None:
            return
        try:
            with self._lock:
                self._draw()
        except Exception as err:  # drawing must never stop training
            CONSOLE.log(f"[yellow]avatarpose overlays: drawing failed ({type(err).__name__}: {err})")

    def _add(self, name: str, handle) -> None:
        self._nodes[name] = handle

    def _remove_under(self, prefix: str) -> None:
        for name in [n for n in self._nodes if n == prefix or n.startswith(prefix + "/")]:
            self._nodes.pop(name).remove()

    def _draw_skeleton(self, prefix: str, joints: np.ndarray, colour, transform: SceneTransform) -> None:
        scene = self._server.scene
        segments = to_viser(skeleton_segments(joints), transform)
        for index, segment in enumerate(segments):
            name = f"{prefix}/bone_{index:02d}"
            self._add(name, scene.add_spline_catmull_rom(name, positions=segment, line_width=LINE_WIDTH_PX,
                                                         color=colour))
        size = JOINT_SIZE_M * transform.scale * VISER_SCALE
        self._add(f"{prefix}/joints", scene.add_point_cloud(f"{prefix}/joints", points=to_viser(joints, transform),
                                                            colors=colour, point_size=size, point_shape="circle"))

    def _draw(self) -> None:
        source = self._source
        transform = source.scene_transform
        position = self.frame_position()
        frame_number = source.frame_numbers[position]
        with_mesh = bool(self.gui["show_mesh"].value)
        wireframe = bool(self.gui["wireframe"].value)
        joints, vertices = source.frame_joints(position, with_mesh)
        faces = source.faces if with_mesh else None
        with self._server.atomic():
            for index, pid in enumerate(self._person_ids):
                prefix = f"{ROOT}/person_{pid}"
                if not self.gui[f"person_{index:02d}"].value:
                    self._remove_under(prefix)
                    continue
                colour = person_colour(index)
                self._draw_skeleton(f"{prefix}/skeleton", joints[index], colour, transform)
                if with_mesh:
                    name = f"{prefix}/mesh"
                    self._add(name, self._server.scene.add_mesh_simple(
                        name, vertices=to_viser(vertices[index], transform), faces=faces, color=colour,
                        wireframe=wireframe, opacity=None if wireframe else MESH_OPACITY, side="double"))
                else:
                    self._remove_under(f"{prefix}/mesh")
            if "mpjpe" in self.gui:
                self._draw_ground_truth(frame_number, joints, transform)

    def _draw_ground_truth(self, frame_number: int, joints: np.ndarray, transform: SceneTransform) -> None:
        from avatarpose_ns.eval.model_metrics import frame_mpjpe

        gt = self._ground_truth().get(frame_number, {})
        self._remove_under(f"{ROOT}/ground_truth")
        if self.gui["show_ground_truth"].value:
            for gid, gt_joints in gt.items():
                self._draw_skeleton(f"{ROOT}/ground_truth/person_{gid}", gt_joints, GROUND_TRUTH_COLOUR, transform)
        if gt:
            pred = {pid: joints[i] for i, pid in enumerate(self._person_ids)}
            overall, people = format_mpjpe(frame_number, *frame_mpjpe(pred, gt))
        else:
            overall, people = f"no ground truth, frame {frame_number}", "-"
        self.gui["mpjpe"].value = overall
        self.gui["mpjpe_people"].value = people

