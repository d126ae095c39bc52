"""hi4d-data: native Hi4D files (y-up world), ground truth from smpl/ for evaluation only."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from avatarpose_ns.dataparsers.hi4d_dataparser import Hi4DDataParserConfig
from avatarpose_ns.scene.transform import SceneTransform
from avatarpose_ns.dataparsers.sequence import SequenceError
from avatarpose_ns.io.easymocap import SmplSequence
from dataparser_fixtures import (
    HI4D_OFFSET, THICK_JOINTS, Z_UP_TO_Y_UP, joints_of, mask_hits, write_easymocap_sequence, write_hi4d_sequence,
)


@pytest.fixture(scope="module")
def hi4d(tmp_path_factory, body_model):
    base = tmp_path_factory.mktemp("hi4d")
    source = write_easymocap_sequence(base / "easymocap", body_model, num_cameras=3, num_frames=3, seed=2)
    root = base / "pair00" / "action00"
    gt = write_hi4d_sequence(source.root, root, body_model)
    return root, gt, source


def parse(root: Path, split: str = "train", **options):
    options.setdefault("cache_dir", root.parent / "cache")
    options.setdefault("silhouette_fit", False)  # the layout is under test, not the fit
    parser = Hi4DDataParserConfig(data=root, **options).setup()
    return parser, parser.get_dataparser_outputs(split)


def test_fixture_smpl_transform_is_exact(hi4d, body_model):
    """transform_smpl (used by the fixture and the EasyMocap conversion) moves the posed joints rigidly."""
    _, gt, source = hi4d
    for pid, seq in gt.items():
        moved = joints_of(body_model, source.gt[pid]) @ Z_UP_TO_Y_UP.T + HI4D_OFFSET
        np.testing.assert_allclose(joints_of(body_model, seq), moved, atol=2e-5)


def test_hi4d_cameras_masks_and_gt(hi4d, body_model):
    root, gt, source = hi4d
    parser, out = parse(root)
    md = out.metadata
    assert parser.includes_time and md["layout"] == "hi4d" and md["world_up"] == "+y"
    assert md["camera_names"] == ["4", "16", "28"] and md["frames"] == [0, 1, 2]
    assert md["smpl_init_source"].endswith("smpl_init/smpl.npz")
    # ground truth from smpl/<frame>.npz, evaluation only
    assert md["eval_only_smpl_gt_source"] == str(root / "smpl")
    np.testing.assert_allclose(md["eval_only_smpl_gt"][1]["transl"], gt[1].transl, atol=1e-6)
    assert md["eval_only_keypoints3d_gt"][2][0].shape == (24, 4)
    assert md["person_label_filenames"] is not None  # seg/img_seg_mask/<cam>/{0,1}
    # GT (Hi4D world) through the dataparser's transform and cameras lands on the undistorted masks
    assert mask_hits(out, gt, body_model).mean() > 0.98
    # the y-up world becomes z-up in the scene: heads above pelvises
    transform = SceneTransform.from_dict(md["world_to_scene"])
    for seq in gt.values():
        scene = transform.to_scene(joints_of(body_model, seq))
        assert (scene[:, 15, 2] - scene[:, 0, 2] > 0.3 * transform.scale).all()
        assert np.abs(scene).max() < 1.0
    # and nerfstudio's inverse returns the cameras to Hi4D's own frame
    extr = np.load(root / "cameras" / "rgb_cameras.npz")["extrinsics"]
    poses = out.transform_poses_to_original_space(out.cameras.camera_to_worlds, camera_convention="opencv")
    R, T = extr[0, :, :3], extr[0, :, 3]
    np.testing.assert_allclose(poses[0, :, :3].numpy(), R.T, atol=1e-5)
    np.testing.assert_allclose(poses[0, :, 3].numpy(), -R.T @ T, atol=1e-4)


def test_hi4d_downscale_and_stride(hi4d, body_model):
    root, gt, _ = hi4d
    _, out = parse(root, downscale_factor=2.0, frame_stride=2)
    assert out.metadata["frames"] == [0, 2]
    assert int(out.cameras.width[0]) == 48 and int(out.cameras.height[0]) == 40
    people = {p: SmplSequence(s.betas, s.body_pose[[0, 2]], s.global_orient[[0, 2]], s.transl[[0, 2]], s.frames[[0, 2]])
              for p, s in gt.items()}
    assert mask_hits(out, people, body_model, THICK_JOINTS).mean() > 0.98


def test_hi4d_without_init_explains_and_accepts_init_path(hi4d, tmp_path):
    root, _, source = hi4d
    bare = tmp_path / "pair01" / "action01"
    shutil.copytree(root, bare, ignore=shutil.ignore_patterns("smpl_init", "cache"))
    with pytest.raises(SequenceError, match=r"no SMPL initialisation.*looked for smpl_init/smpl.npz.*init_path.*"
                                            r"Hi4D has no initialisation of its own"):
        parse(bare)
    _, out = parse(bare, init_path=root / "smpl_init" / "smpl.npz")
    assert out.metadata["smpl_init_source"] == f"npz:{root / 'smpl_init' / 'smpl.npz'}"


def test_hi4d_folder_given_to_the_other_parser(hi4d):
    from avatarpose_ns.dataparsers.easymocap_dataparser import EasyMocapDataParserConfig

    root, _, source = hi4d
    with pytest.raises(SequenceError, match=r"not an EasyMocap/AvatarPose sequence \(looked for intri.yml, "
                                            r"extri.yml, images/<camera>/<frame>.jpg\).*use the hi4d-data"):
        EasyMocapDataParserConfig(data=root).setup().get_dataparser_outputs("train")
    with pytest.raises(SequenceError, match=r"not a native Hi4D sequence.*use the easymocap-data"):
        parse(source.root)
    with pytest.raises(SequenceError, match=r"sequences found inside: action00"):
        parse(root.parent)


def test_wrong_world_up_is_warned(hi4d, caplog):
    root, _, _ = hi4d
    with caplog.at_level(logging.WARNING, "avatarpose_ns.dataparsers"):
        parse(root, world_up="+z")
    assert "the cameras' mean up direction" in caplog.text and "world_up='+z'" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, "avatarpose_ns.dataparsers"):
        parse(root)
    assert "mean up direction" not in caplog.text


def test_bad_hi4d_files(hi4d, tmp_path, caplog):
    root, _, _ = hi4d
    bad = tmp_path / "pair02" / "action02"
    shutil.copytree(root, bad, ignore=shutil.ignore_patterns("cache"))
    cameras = dict(np.load(bad / "cameras" / "rgb_cameras.npz"))
    np.savez(bad / "cameras" / "rgb_cameras.npz", **dict(cameras, ids=cameras["ids"][:2]))
    with pytest.raises(SequenceError, match=r"rgb_cameras.npz: 'intrinsics' has shape \(3, 3, 3\), expected "
                                            r"\(2, 3, 3\) for 2 camera ids"):
        parse(bad)
    np.savez(bad / "cameras" / "rgb_cameras.npz", **cameras)
    gt = dict(np.load(bad / "smpl" / "000001.npz"))
    np.savez(bad / "smpl" / "000001.npz", **dict(gt, body_pose=gt["body_pose"][:, :60]))
    with caplog.at_level(logging.WARNING, "avatarpose_ns.dataparsers"):
        _, out = parse(bad)
    assert "ground truth not used" in caplog.text and "smpl/000001.npz: 'body_pose' has shape (2, 60)" in caplog.text
    assert out.metadata["eval_only_smpl_gt"] is None
