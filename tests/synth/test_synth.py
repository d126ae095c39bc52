"""avatarpose-synth output: cameras, images, masks and ground truth agree with each other."""

import filecmp
import json

import cv2
import numpy as np
import pytest
import torch

from avatarpose_ns.io.cameras import project_points, read_cameras
from avatarpose_ns.io.easymocap import read_annots, read_keypoints3d_folder, read_smpl_npz
from avatarpose_ns.synth.cli import SynthArgs, main, resolve_config

from synth_fixtures import TINY_SYNTH_ARGS


def _mask(path):
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert image is not None, path
    return image


def test_layout_is_complete(tiny_sequence):
    cameras = read_cameras(tiny_sequence)
    assert list(cameras) == ["00", "01", "02"]
    for name, cam in cameras.items():
        assert (cam.width, cam.height) == (128, 128)
        assert np.any(cam.dist[:2] != 0)  # lens distortion is exercised
        for frame in range(3):
            image = cv2.imread(str(tiny_sequence / "images" / name / f"{frame:06d}.jpg"))
            assert image.shape == (128, 128, 3)
            assert (tiny_sequence / "annots" / name / f"{frame:06d}.json").is_file()
    for folder in ("keypoints3d", "keypoints3d_gt", "keypoints3d_init"):
        assert sorted(read_keypoints3d_folder(tiny_sequence / folder)) == [0, 1, 2]
    assert cv2.imread(str(tiny_sequence / "preview.png")).shape[1] == 3 * 128


def test_gt_joints_project_onto_the_masks(tiny_sequence):
    cameras = read_cameras(tiny_sequence)
    gt = read_keypoints3d_folder(tiny_sequence / "keypoints3d_gt")
    landed, total = 0, 0
    for name, cam in cameras.items():
        for frame, people in gt.items():
            mask = cv2.dilate(_mask(tiny_sequence / "mask" / name / f"{frame:06d}.png"), np.ones((3, 3), np.uint8))
            uv = np.round(project_points(np.concatenate([j[:, :3] for j in people.values()]), cam)).astype(int)
            inside = (uv[:, 0] >= 0) & (uv[:, 0] < cam.width) & (uv[:, 1] >= 0) & (uv[:, 1] < cam.height)
            landed += int((mask[uv[inside, 1], uv[inside, 0]] > 0).sum())
            total += int(inside.sum())
    assert total > 0.9 * 3 * 3 * 2 * 24
    assert landed / total > 0.98


def test_2d_detections_share_the_3d_estimator_errors(tiny_sequence):
    """The detections are the 3D keypoints' projections plus per-view pixel noise, so a fit to
    them cannot average away the estimator's structured errors (as triangulated detections can't)."""
    cameras = read_cameras(tiny_sequence)
    estimated = read_keypoints3d_folder(tiny_sequence / "keypoints3d")
    gt = read_keypoints3d_folder(tiny_sequence / "keypoints3d_gt")
    to_estimate, to_gt = [], []
    for name, cam in cameras.items():
        for frame in range(3):
            for pid, detection in read_annots(tiny_sequence / "annots" / name / f"{frame:06d}.json").items():
                seen = detection[:, 2] > 0.5  # unoccluded: pixel sigma 2 px
                to_estimate.append(np.linalg.norm(detection[seen, :2] - project_points(estimated[frame][pid][seen, :3], cam), axis=1))
                to_gt.append(np.linalg.norm(detection[seen, :2] - project_points(gt[frame][pid][seen, :3], cam), axis=1))
    to_estimate, to_gt = np.concatenate(to_estimate), np.concatenate(to_gt)
    assert len(to_estimate) > 100
    assert np.median(to_estimate) < 3.5  # 2D Gaussian with sigma 2 px: median 2.4 px
    assert np.mean(to_gt) > np.mean(to_estimate) + 0.5


def test_person_masks_partition_the_union(tiny_sequence):
    for cam in ("00", "01", "02"):
        for frame in range(3):
            union = _mask(tiny_sequence / "mask" / cam / f"{frame:06d}.png") > 0
            people = np.stack([_mask(tiny_sequence / "mask" / cam / str(p) / f"{frame:06d}.png") > 0 for p in (0, 1)])
            assert not np.any(people[0] & people[1])
            np.testing.assert_array_equal(people.any(0), union)
            assert people[0].any() and people[1].any()


def test_gt_parameters_reproduce_gt_joints(tiny_sequence, body_model):
    people = read_smpl_npz(tiny_sequence / "smpl_gt" / "smpl.npz")
    gt = read_keypoints3d_folder(tiny_sequence / "keypoints3d_gt")
    as_t = lambda a: torch.tensor(a, dtype=torch.float32)
    for pid, seq in people.items():
        joints = body_model.joints_only(as_t(seq.betas[None]), as_t(seq.body_pose), as_t(seq.global_orient),
                                        as_t(seq.transl)).numpy()
        for i, frame in enumerate(seq.frames):
            np.testing.assert_allclose(joints[i], gt[int(frame)][pid][:, :3], atol=1e-5)


def test_initialisation_is_imperfect_like_a_real_estimator(tiny_sequence):
    meta = json.loads((tiny_sequence / "meta.json").read_text())
    assert 15.0 < meta["init_mpjpe_mm"] < 150.0
    assert meta["interpenetration_gt"]["max_depth_m"] < 0.06
    assert meta["interpenetration_gt"]["inside_share"] < 0.02


def test_same_seed_same_sequence_other_seed_differs(tiny_sequence, tmp_path):
    """The same seed gives the same files, also where torch was left on another thread count."""
    again = tmp_path / "again"
    threads = torch.get_num_threads()
    torch.set_num_threads(1 if threads != 1 else 2)
    try:
        main(SynthArgs(output_dir=again, quiet=True, **TINY_SYNTH_ARGS))
    finally:
        torch.set_num_threads(threads)
    for relative in ("smpl_gt/smpl.npz", "smpl_init/smpl.npz", "mask/01/000002.png", "mask/01/1/000002.png",
                     "images/02/000001.jpg", "keypoints3d/000001.json", "intri.yml", "extri.yml"):
        assert filecmp.cmp(tiny_sequence / relative, again / relative, shallow=False), relative
    other = dict(TINY_SYNTH_ARGS, seed=TINY_SYNTH_ARGS["seed"] + 1, num_frames=1)
    config = resolve_config(SynthArgs(output_dir=tmp_path / "other", **other))
    assert config.seed != TINY_SYNTH_ARGS["seed"]


def test_flags_override_the_preset(tmp_path):
    config = resolve_config(SynthArgs(output_dir=tmp_path, preset="bench", num_cameras=5, resolution="320x240",
                                      lighting="headlight"))
    assert (config.num_cameras, config.resolution, config.num_frames) == (5, (320, 240), 20)
    assert config.lighting == "headlight" and resolve_config(SynthArgs(output_dir=tmp_path)).lighting == "all-cameras"
    with pytest.raises(ValueError, match="--resolution must look like 320x240"):
        resolve_config(SynthArgs(output_dir=tmp_path, resolution="large"))
    with pytest.raises(ValueError, match="--num-people must be 2 to 4"):
        resolve_config(SynthArgs(output_dir=tmp_path, num_people=7))


def test_rig_from_existing_calibration(tiny_sequence, tmp_path):
    """--rig reuses another sequence's cameras exactly (names, intrinsics, distortion, pose, size)."""
    output = tmp_path / "rigged"
    main(SynthArgs(output_dir=output, quiet=True, rig=tiny_sequence, seed=5, num_frames=1, interaction="handshake"))
    original, reused = read_cameras(tiny_sequence), read_cameras(output)
    assert list(original) == list(reused)
    for name in original:
        np.testing.assert_allclose(reused[name].K, original[name].K)
        np.testing.assert_allclose(reused[name].dist, original[name].dist)
        np.testing.assert_allclose(reused[name].T, original[name].T)
    assert cv2.imread(str(output / "images" / "00" / "000000.jpg")).shape == (128, 128, 3)


def test_the_old_output_option_is_renamed_with_a_warning(capsys):
    from avatarpose_ns.synth.cli import renamed_options

    assert renamed_options(["--output", "x", "--seed", "1"]) == ["--output-dir", "x", "--seed", "1"]
    assert renamed_options(["--output=x"]) == ["--output-dir=x"]
    assert "deprecated" in capsys.readouterr().err
    assert renamed_options(["--output-dir", "x"]) == ["--output-dir", "x"]
