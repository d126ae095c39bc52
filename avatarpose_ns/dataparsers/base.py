"""What both multi-view dataparsers share: the options, the split, and the nerfstudio outputs.

A subclass only reads its layout into a ``RawSequence`` (``read_sequence``). The
expensive part (reading and checking the folder, fitting an initialisation,
undistorting into the cache, placing the scene) runs once per dataparser
instance; nerfstudio then asks for the train and eval splits.

Outputs (per split), besides nerfstudio's own fields:

* ``image_filenames`` / ``mask_filenames``: undistorted (and downscaled) images
  and union masks (0/255), camera-major: all frames of the first camera, then
  the next camera, ...
* ``cameras``: pinhole, OpenGL, in the scene frame; ``times`` = frame time in
  [0, 1]; ``metadata`` (N, 1) long: ``frame_index`` (the frame number),
  ``frame_position`` (index into ``metadata["frames"]`` and the per-frame SMPL
  arrays) and ``camera_index`` (index into ``metadata["camera_names"]``).
* ``dataparser_transform`` / ``dataparser_scale``: the scene transform
  (``avatarpose_ns.scene.transform.SceneTransform``), also in ``metadata["world_to_scene"]``.
* ``metadata``: see ``_metadata`` below (``background_plates``: camera name -> (H, W, 4)
  plate, `background_plate.py`, empty when off); SMPL parameters are numpy arrays in
  the input world frame and units (metres), keyed by person id, with per-frame
  rows in ``frames`` order.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs
from nerfstudio.data.scene_box import SceneBox

from avatarpose_ns.body.body_model import BodyModel
from avatarpose_ns.dataparsers.background_plate import camera_plate
from avatarpose_ns.dataparsers.cameras_convert import make_cameras
from avatarpose_ns.dataparsers.sequence import (
    LOG, RawSequence, SequenceError, check_image_sizes, check_people_in_view, list_frame_images, select_cameras,
    select_frames,
)
from avatarpose_ns.dataparsers.silhouette_init import refine_init_with_silhouettes
from avatarpose_ns.dataparsers.smpl_init import posed_joints
from avatarpose_ns.dataparsers.undistort_cache import CachedView, ViewGeometry, build_cache, default_cache_dir
from avatarpose_ns.fitting.silhouette_fit import SilhouetteFitConfig
from avatarpose_ns.io.cameras import CameraCalib
from avatarpose_ns.io.easymocap import SmplSequence
from avatarpose_ns.scene.timeline import frame_times
from avatarpose_ns.scene.transform import SceneTransform, fit_scene_transform, up_rotation


@dataclass
class MultiViewDataParserConfig(DataParserConfig):
    """Options shared by the EasyMocap/AvatarPose and Hi4D dataparsers."""

    _target: type = field(default_factory=lambda: MultiViewDataParser)
    data: Path = Path("data/demo")
    """sequence folder"""
    cameras: tuple[str, ...] = ()
    """camera names to use (default: every calibrated camera that has an image folder)"""
    eval_cameras: tuple[str, ...] = ()
    """cameras held out for evaluation. Default none: every view trains the poses (the method's accuracy
    grows with the number of views), and the eval split then shows the training cameras"""
    frame_start: int = 0
    """first frame number (inclusive)"""
    frame_end: int | None = None
    """frame number to stop before (exclusive); None: through the last frame"""
    frame_stride: int = 1
    """use every n-th frame of the range"""
    drop_incomplete_frames: bool = False
    """skip (with a warning) frames that some camera lacks, instead of stopping with an error"""
    downscale_factor: float = 1.0
    """divide the image size by this (K is scaled to match); AvatarPose trains Hi4D at 2"""
    init_path: Path | None = None
    """initial SMPL: an smpl.npz, an EasyMocap smpl/ or keypoints3d/ folder (relative to data or absolute);
    default: the first of smpl_init/smpl.npz, smpl/, keypoints3d/ inside the sequence"""
    mask_dir: str | None = None
    """mask root relative to data (default: the layout's own)"""
    silhouette_fit: bool = True
    """refine the initial SMPL (betas, per-frame pose and translation) so that the bodies fill the
    training cameras' foreground masks, before training (fitting/silhouette_fit.py; cached)"""
    silhouette: SilhouetteFitConfig = field(default_factory=SilhouetteFitConfig)
    """settings of that fit"""
    background_plate: bool = True
    """estimate each camera's background from the frames where the masks leave it free, so that the
    colour terms render over it and compare with the untouched image there, needing no mask
    (dataparsers/background_plate.py); off: flat background colour, image blanked outside the mask"""
    body_model_path: Path | None = None
    """SMPL .pkl file or folder; default: the built-in SMPL-format model"""
    cache_dir: Path | None = None
    """where undistorted images, masks and keypoint fits are cached; default <data>/.cache/avatarpose_ns"""
    world_up: Literal["+z", "-z", "+y", "-y", "+x", "-x"] = "+z"
    """the input world's up axis; the scene frame turns it into +z"""
    scene_box_half: float = 1.0
    """the people (joints plus scene_margin_m) are scaled into [-scene_box_half, scene_box_half]^3"""
    scene_margin_m: float = 0.3
    """padding around the joints for the body surface, metres"""
    num_workers: int = 4
    """threads that fill the undistortion cache"""


@dataclass
class Prepared:
    """Everything split-independent, computed once."""

    seq: RawSequence
    files: dict[tuple[str, int], CachedView]
    geoms: dict[str, ViewGeometry]
    transform: SceneTransform
    cache_dir: Path
    plates: dict[str, np.ndarray] = field(default_factory=dict)
    """camera name -> (H, W, 4) background plate (RGB, known flag), when estimated"""


@lru_cache(maxsize=4)
def load_body_model(path: str | None) -> BodyModel:
    """One BodyModel per model file and process: the train and eval datamanagers, and repeated
    dataparsers, share it (it is only read)."""
    return BodyModel(path)


def smpl_dict(people: dict[int, SmplSequence] | None) -> dict[int, dict[str, np.ndarray]] | None:
    """SmplSequence per person as plain arrays (the form stored in the metadata)."""
    if people is None:
        return None
    return {pid: {"betas": s.betas.copy(), "body_pose": s.body_pose.copy(), "global_orient": s.global_orient.copy(),
                  "transl": s.transl.copy(), "frames": s.frames.copy()} for pid, s in people.items()}


@dataclass
class MultiViewDataParser(DataParser):
    """Base of the multi-person, multi-view dataparsers (frames as time)."""

    config: MultiViewDataParserConfig
    includes_time: bool = True

    def __init__(self, config: MultiViewDataParserConfig) -> None:
        super().__init__(config=config)
        self._prepared: Prepared | None = None
        self._body: BodyModel | None = None

    @abstractmethod
    def read_sequence(self, body: BodyModel, cache_dir: Path) -> RawSequence:
        """Read and check the layout (calibration, frames, masks, initialisation, ground truth)."""

    # ---------------------------------------------------------------- shared steps
    def select_views(self, calib: dict[str, CameraCalib], image_dirs: dict[str, Path], calib_file: str
                     ) -> tuple[list[str], dict[str, dict[int, Path]], list[int], dict[str, CameraCalib]]:
        """What every layout's ``read_sequence`` opens with: the configured cameras and frames that
        have images, each camera's calibration checked against its image size.

        calib: camera name -> calibration; image_dirs: camera name -> its image folder.
        -> camera names, their frame images (name -> frame -> path), the frames, their calibrations.
        """
        config = self.config
        names = select_cameras(list(calib), image_dirs, config.cameras, calib_file)
        images = {name: list_frame_images(image_dirs[name]) for name in names}
        frames = select_frames(images, image_dirs, config.frame_start, config.frame_end, config.frame_stride,
                               config.drop_incomplete_frames)
        cameras = {name: check_image_sizes(calib[name], [images[name][f] for f in frames], calib_file)
                   for name in names}
        return names, images, frames, cameras

    def body_model(self) -> BodyModel:
        if self._body is None:
            path = self.config.body_model_path
            self._body = load_body_model(None if path is None else str(path))
        return self._body

    def cache_folder(self) -> Path:
        """Where this sequence's undistorted views and fits are cached."""
        config = self.config
        return Path(config.cache_dir) if config.cache_dir is not None else default_cache_dir(Path(config.data))

    def fitted_sequence(self) -> RawSequence:
        """The sequence read and checked, its initialisation refined to the masks when silhouette_fit is on
        (cached): the part of `prepare` that ``avatarpose-fit`` runs on its own."""
        config = self.config
        root = Path(config.data)
        if not root.is_dir():
            raise SequenceError(f"{root}: sequence folder not found")
        cache_dir = self.cache_folder()
        seq = self.read_sequence(self.body_model(), cache_dir)
        check_people_in_view(seq, {pid: posed_joints(self.body_model(), s) for pid, s in seq.init.items()})
        if config.silhouette_fit:
            seq.init = refine_init_with_silhouettes(seq, self.split_cameras(seq, "train"), self.body_model(),
                                                    config.silhouette, cache_dir)
            seq.init_source = f"{seq.init_source}, refined to the masks"
        return seq

    def prepare(self) -> Prepared:
        """Read, undistort and place the sequence (once per dataparser)."""
        if self._prepared is not None:
            return self._prepared
        config = self.config
        cache_dir = self.cache_folder()
        seq = self.fitted_sequence()
        files, geoms = build_cache(seq, cache_dir, config.downscale_factor, config.num_workers)
        joints = np.concatenate([posed_joints(self.body_model(), s).reshape(-1, 3) for s in seq.init.values()])
        transform = fit_scene_transform(joints, up_rotation(seq.world_up), config.scene_box_half,
                                        config.scene_margin_m)
        self._check_up(seq, transform)
        plates = {}
        if config.background_plate:
            for cam in seq.cameras:
                views = [files[(cam, frame)] for frame in seq.frames]
                plates[cam] = camera_plate([v.image for v in views], [v.union_mask for v in views])
            known = np.mean([p[..., 3].mean() for p in plates.values()])
            LOG.info("background plates known over %.0f %% of the pixels", 100 * known)
        self._prepared = Prepared(seq, files, geoms, transform, cache_dir, plates)
        return self._prepared

    @staticmethod
    def _check_up(seq: RawSequence, transform: SceneTransform) -> None:
        """Warn when the cameras' mean up direction disagrees with the configured world up axis."""
        ups = np.stack([-cam.R[1] for cam in seq.cameras.values()])  # image "up" of each camera, world frame
        mean = transform.rotation @ ups.mean(axis=0)
        if np.linalg.norm(mean) > 1e-6 and mean[2] / np.linalg.norm(mean) < 0.5:
            LOG.warning("the cameras' mean up direction is %s in the scene frame, far from +z: is world_up='%s' "
                        "right for %s?", np.round(mean / np.linalg.norm(mean), 2).tolist(), seq.world_up, seq.root)

    def split_cameras(self, seq: RawSequence, split: str) -> list[str]:
        """Train: every camera not held out. Eval: the held-out cameras, or the train cameras when none."""
        names = list(seq.cameras)
        held_out = list(self.config.eval_cameras)
        unknown = [c for c in held_out if c not in names]
        if unknown:
            raise SequenceError(f"eval cameras {unknown} are not among the cameras in use {names}")
        train = [c for c in names if c not in held_out]
        if not train:
            raise SequenceError(f"every camera {names} is held out for evaluation; none is left to train on")
        if split == "train":
            return train
        return [c for c in names if c in held_out] or train

    # ---------------------------------------------------------------- nerfstudio
    def _generate_dataparser_outputs(self, split: str = "train", **kwargs: Any) -> DataparserOutputs:
        prep = self.prepare()
        seq = prep.seq
        cams = self.split_cameras(seq, split)
        keys = [(cam, frame) for cam in cams for frame in seq.frames]
        position = {frame: i for i, frame in enumerate(seq.frames)}
        camera_index = {cam: i for i, cam in enumerate(seq.cameras)}
        times = frame_times(len(seq.frames))
        cameras = make_cameras(
            K=[prep.geoms[c].out_K for c, _ in keys],
            R=[seq.cameras[c].R for c, _ in keys],
            T=[seq.cameras[c].T for c, _ in keys],
            sizes=[prep.geoms[c].out_size for c, _ in keys],
            transform=prep.transform,
            times=np.array([times[position[f]] for _, f in keys]),
            metadata={
                "frame_index": np.array([f for _, f in keys]),
                "frame_position": np.array([position[f] for _, f in keys]),
                "camera_index": np.array([camera_index[c] for c, _ in keys]),
            },
        )
        half = self.config.scene_box_half
        return DataparserOutputs(
            image_filenames=[prep.files[k].image for k in keys],
            cameras=cameras,
            scene_box=SceneBox(aabb=torch.tensor([[-half] * 3, [half] * 3], dtype=torch.float32)),
            mask_filenames=[prep.files[k].union_mask for k in keys],
            metadata=self._metadata(prep, split, cams, keys),
            dataparser_transform=torch.tensor(prep.transform.matrix, dtype=torch.float32),
            dataparser_scale=float(prep.transform.scale),
        )

    def _metadata(self, prep: Prepared, split: str, cams: list[str], keys: list[tuple[str, int]]) -> dict[str, Any]:
        """Everything the AvatarPose model, evaluation and export need beyond images and cameras.

        Keys prefixed ``eval_only_`` hold ground truth: for metrics, never for training.
        """
        seq = prep.seq
        has_person_masks = all(prep.files[k].person_labels is not None for k in keys)
        return {
            "layout": seq.layout,
            "data_root": str(seq.root),
            "split": split,
            "camera_names": list(seq.cameras),
            "split_camera_names": cams,
            "frames": list(seq.frames),
            "frame_times": frame_times(len(seq.frames)).tolist(),
            "image_camera_names": [c for c, _ in keys],
            "image_frame_indices": [f for _, f in keys],
            "person_ids": list(seq.person_ids),
            "num_people": len(seq.person_ids),
            "person_mask_filenames": [prep.files[k].person_masks for k in keys] if has_person_masks else None,
            "person_label_filenames": [prep.files[k].person_labels for k in keys] if has_person_masks else None,
            "smpl_init": smpl_dict(seq.init),
            "smpl_init_source": seq.init_source,
            "eval_only_smpl_gt": smpl_dict(seq.gt),
            "eval_only_smpl_gt_source": seq.gt_source,
            "eval_only_keypoints3d_gt": seq.gt_keypoints,
            "eval_only_keypoints3d_gt_source": seq.gt_keypoints_source,
            "world_to_scene": prep.transform.as_dict(),
            "world_up": seq.world_up,
            "body_model_path": None if self.config.body_model_path is None else str(self.config.body_model_path),
            "body_model_file": str(self.body_model().model_path),  # the resolved SMPL pickle actually used
            "downscale_factor": float(self.config.downscale_factor),
            "cache_dir": str(prep.cache_dir),
            "background_plates": prep.plates,
        }
