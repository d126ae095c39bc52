"""``easymocap-data``: sequences in the EasyMocap / AvatarPose layout (docs/design.md#data-layouts).

    intri.yml, extri.yml                      calibration (OpenCV FileStorage)
    images/<cam>/<frame:06d>.jpg              frames
    mask/<cam>/<frame>.png                    union masks; or AvatarPose's mask_sta/<cam>/all/<frame>.png,
    mask/<cam>/<pid>/<frame>.png              or mask_gt/...; per-person masks optional
    smpl_init/smpl.npz | smpl/ | keypoints3d/ initialisation (smpl_init.py)
    smpl_gt/smpl.npz, keypoints3d_gt/         ground truth, evaluation only (optional)

This is also what AvatarPose's preprocessing of Hi4D writes (z-up world).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from avatarpose_ns.body.body_model import BodyModel
from avatarpose_ns.dataparsers.base import MultiViewDataParser, MultiViewDataParserConfig
from avatarpose_ns.dataparsers.sequence import (
    RawSequence, SequenceError, check_frame_gaps, collect_views, relative, sequence_root,
)
from avatarpose_ns.dataparsers.smpl_init import (
    check_person_ids, init_frames, load_gt_keypoints, load_gt_npz, load_init,
)
from avatarpose_ns.io.cameras import read_cameras

MASK_ROOTS = ("mask", "mask_sta", "mask_gt")


@dataclass
class EasyMocapDataParserConfig(MultiViewDataParserConfig):
    """EasyMocap / AvatarPose layout: intri.yml, extri.yml, images/, mask/ (or mask_sta/), smpl_init/."""

    _target: type = field(default_factory=lambda: EasyMocapDataParser)


class EasyMocapDataParser(MultiViewDataParser):
    """Reads the EasyMocap / AvatarPose layout."""

    config: EasyMocapDataParserConfig
    includes_time: bool = True

    def read_sequence(self, body: BodyModel, cache_dir: Path) -> RawSequence:
        config = self.config
        root = sequence_root(config.data, "easymocap")
        try:
            calib = read_cameras(root)
        except (ValueError, FileNotFoundError) as err:
            raise SequenceError(str(err)) from None
        image_dirs = {name: root / "images" / name for name in calib}
        names, images, frames, cameras = self.select_views(calib, image_dirs, str(root / "intri.yml"))
        init, init_source = load_init(root, frames, body, config.init_path, cache_dir)
        check_frame_gaps(init_frames(root, config.init_path), images, image_dirs, frames, init_source,
                         config.drop_incomplete_frames)

        if config.mask_dir is not None:
            mask_root = root / config.mask_dir
        else:
            mask_root = next((root / m for m in MASK_ROOTS if (root / m).is_dir()), root / MASK_ROOTS[0])
        looked_for = "<mask root>/<cam>/<frame>.png or <mask root>/<cam>/all/<frame>.png, mask root " + (
            config.mask_dir if config.mask_dir is not None else " or ".join(f"{m}/" for m in MASK_ROOTS))
        views, missing_person_mask = collect_views(cameras, {n: n for n in names}, images, frames, mask_root,
                                                   list(init), looked_for)

        seq = RawSequence(
            layout="easymocap", root=root, cameras=cameras, frames=frames, views=views,
            mask_source=relative(mask_root, root), person_ids=list(init), init=init,
            init_source=init_source, world_up=config.world_up, missing_person_mask=missing_person_mask,
        )
        gt_npz = root / "smpl_gt" / "smpl.npz"
        if gt_npz.is_file():
            seq.gt = load_gt_npz(gt_npz, frames)
            seq.gt_source = str(gt_npz) if seq.gt is not None else None
            if seq.gt is not None:
                check_person_ids(init, init_source, list(seq.gt), str(gt_npz))
        gt_kp = root / "keypoints3d_gt"
        if gt_kp.is_dir():
            seq.gt_keypoints = load_gt_keypoints(gt_kp, frames)
            seq.gt_keypoints_source = str(gt_kp) if seq.gt_keypoints is not None else None
            if seq.gt_keypoints is not None and seq.gt is None:
                check_person_ids(init, init_source, sorted({p for f in seq.gt_keypoints.values() for p in f}),
                                 str(gt_kp))
        return seq
