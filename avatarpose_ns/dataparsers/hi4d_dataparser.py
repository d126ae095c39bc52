"""``hi4d-data``: native Hi4D sequences (``pairXX/actionXX``, docs/design.md#data-layouts).

    cameras/rgb_cameras.npz                   ids, intrinsics, extrinsics (world->camera), dist_coeffs
    images/<cam id>/<frame:06d>.jpg           frames (940x1280)
    seg/img_seg_mask/<cam id>/{all,0,1}/<frame>.png   union and per-person masks
    smpl/<frame:06d>.npz                      ground truth: evaluation only, never the initialisation

Hi4D ships no initialisation: it is taken from ``smpl_init/smpl.npz``,
``smpl/<frame>.json`` or ``keypoints3d/`` placed inside the sequence folder, or
from ``init_path``. Hi4D's world is y-up (``world_up="+y"``, as AvatarPose's
preprocessing assumes); the scene frame turns it to z-up, and exports go back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from avatarpose_ns.body.body_model import BodyModel
from avatarpose_ns.dataparsers.base import MultiViewDataParser, MultiViewDataParserConfig
from avatarpose_ns.dataparsers.hi4d_io import CAMERAS_FILE, camera_folder, read_hi4d_cameras, read_hi4d_gt
from avatarpose_ns.dataparsers.sequence import (
    RawSequence, SequenceError, check_frame_gaps, collect_views, relative, sequence_root,
)
from avatarpose_ns.dataparsers.smpl_init import check_person_ids, init_frames, load_init

MASK_ROOT = "seg/img_seg_mask"


@dataclass
class Hi4DDataParserConfig(MultiViewDataParserConfig):
    """Native Hi4D: cameras/rgb_cameras.npz, images/, seg/img_seg_mask/, smpl/ (ground truth only)."""

    _target: type = field(default_factory=lambda: Hi4DDataParser)
    data: Path = Path("data/hi4d/pair00/action00")
    world_up: Literal["+z", "-z", "+y", "-y", "+x", "-x"] = "+y"


class Hi4DDataParser(MultiViewDataParser):
    """Reads native Hi4D sequences."""

    config: Hi4DDataParserConfig
    includes_time: bool = True

    def read_sequence(self, body: BodyModel, cache_dir: Path) -> RawSequence:
        config = self.config
        root = sequence_root(config.data, "hi4d")
        calib_file = root / CAMERAS_FILE
        calib = read_hi4d_cameras(calib_file)
        image_dirs = {name: camera_folder(root / "images", name) for name in calib}
        names, images, frames, cameras = self.select_views(calib, image_dirs, str(calib_file))
        try:
            init, init_source = load_init(root, frames, body, config.init_path, cache_dir)
        except SequenceError as err:
            if config.init_path is None and "no SMPL initialisation" in str(err):
                raise SequenceError(f"{err}. Hi4D has no initialisation of its own (its smpl/*.npz is ground truth, "
                                    "used for evaluation only)") from None
            raise
        check_frame_gaps(init_frames(root, config.init_path), images, image_dirs, frames, init_source,
                         config.drop_incomplete_frames)

        mask_root = root / (config.mask_dir if config.mask_dir is not None else MASK_ROOT)
        cam_dirs = {n: image_dirs[n].name for n in names}
        views, missing_person_mask = collect_views(cameras, cam_dirs, images, frames, mask_root, list(init),
                                                   f"{relative(mask_root, root)}/<cam>/all/<frame>.png")
        seq = RawSequence(
            layout="hi4d", root=root, cameras=cameras, frames=frames, views=views,
            mask_source=relative(mask_root, root), person_ids=list(init), init=init,
            init_source=init_source, world_up=config.world_up, missing_person_mask=missing_person_mask,
        )
        gt_folder = root / "smpl"
        if any(gt_folder.glob("*.npz")):
            seq.gt, seq.gt_keypoints = read_hi4d_gt(gt_folder, frames)
            if seq.gt is not None:
                seq.gt_source = seq.gt_keypoints_source = str(gt_folder)
                check_person_ids(init, init_source, list(seq.gt), str(gt_folder))
        return seq
