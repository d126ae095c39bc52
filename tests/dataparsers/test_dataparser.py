"""easymocap-data: cameras, undistortion, scene transform, time, splits, downscale, stride, initialisation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from avatarpose_ns.dataparsers.cameras_convert import make_cameras, project_with_cameras
from avatarpose_ns.dataparsers.easymocap_dataparser import EasyMocapDataParser, EasyMocapDataParserConfig
from avatarpose_ns.scene.transform import SceneTransform
from avatarpose_ns.scene.timeline import time_to_frame_position
from avatarpose_ns.dataparsers.undistort_cache import Undistorter, view_geometry
from avatarpose_ns.io.cameras import project_points, read_cameras, ring_rig, write_cameras
from avatarpose_ns.io.easymocap import SmplSequence
from dataparser_fixtures import THICK_JOINTS, Fixture, joints_of, mask_hits, write_easymocap_sequence


@pytest.fixture(scope="module")
def seq(tmp_path_factory, body_model) -> Fixture:
    return write_easymocap_sequence(tmp_path_factory.mktemp("easymocap") / "seq", body_model)


def parse(root: Path, split: str = "train", **options):
    options.setdefault("cache_dir", root.parent / f"cache-{root.name}")
    options.setdefault("silhouette_fit", False)  # these tests read the init as given; one test below fits it
    parser = EasyMocapDataParserConfig(data=root, **options).setup()
    return parser, parser.get_dataparser_outputs(split)


def copy_of(seq: Fixture, tmp_path: Path) -> Path:
    target = tmp_path / "seq"
    shutil.copytree(seq.root, target, ignore=shutil.ignore_patterns(".cache"))
    return target


def test_registered_with_nerfstudio():
    from nerfstudio.plugins.registry_dataparser import discover_dataparsers

    configs, descriptions = discover_dataparsers()
    assert {"easymocap-data", "hi4d-data"} <= set(configs)
    assert configs["easymocap-data"]._target is EasyMocapDataParser
    assert configs["hi4d-data"].world_up == "+y"
    assert EasyMocapDataParser.includes_time and descriptions["easymocap-data"]


def test_outputs_time_and_metadata(seq):
    parser, out = parse(seq.root)
    assert parser.includes_time
    n_cams, n_frames = len(seq.cameras), len(seq.frames)
    assert len(out.image_filenames) == len(out.mask_filenames) == out.cameras.shape[0] == n_cams * n_frames
    md = out.metadata
    assert md["frames"] == seq.frames and md["num_people"] == 2 and md["person_ids"] == [0, 1]
    # camera-major order; integer frame index and normalised time on every camera
    assert md["image_camera_names"] == [c.name for c in seq.cameras for _ in seq.frames]
    np.testing.assert_array_equal(out.cameras.metadata["frame_index"].ravel().numpy(), np.tile(seq.frames, n_cams))
    np.testing.assert_allclose(out.cameras.times.ravel().numpy(), np.tile([0.0, 0.5, 1.0], n_cams), atol=1e-6)
    assert out.cameras.metadata["frame_index"].dtype == torch.long
    positions = time_to_frame_position(out.cameras.times.ravel(), n_frames)
    np.testing.assert_array_equal(positions.numpy(), out.cameras.metadata["frame_position"].ravel().numpy())
    # pinhole cameras, no distortion: the images are undistorted
    assert out.cameras.distortion_params is None
    for path in out.image_filenames:
        assert path.is_file() and ".cache" not in str(path) and "undistorted" in str(path)
    # SMPL init in the input world, ground truth only under eval_only_ keys
    init = md["smpl_init"]
    assert set(init) == {0, 1} and init[0]["body_pose"].shape == (n_frames, 69) and init[0]["betas"].shape == (10,)
    assert md["smpl_init_source"].startswith("npz:") and md["smpl_init_source"].endswith("smpl_init/smpl.npz")
    assert set(md["eval_only_smpl_gt"]) == {0, 1} and md["eval_only_keypoints3d_gt"] is not None
    assert not any(k.startswith(("smpl_gt", "gt")) for k in md)
    # per-person masks and label maps
    persons, labels = md["person_mask_filenames"], md["person_label_filenames"]
    assert len(persons) == len(labels) == len(out.image_filenames) and len(persons[0]) == 2
    union = cv2.imread(str(out.mask_filenames[4]), 0) > 0
    label = cv2.imread(str(labels[4]), cv2.IMREAD_UNCHANGED)
    p0, p1 = (cv2.imread(str(p), 0) > 0 for p in persons[4])
    np.testing.assert_array_equal(p0 | p1, union)
    np.testing.assert_array_equal(label == 1, p0)
    np.testing.assert_array_equal(label == 2, p1)
    assert md["body_model_path"] is None and md["world_up"] == "+z"


def test_gt_joints_land_on_undistorted_masks(seq, body_model):
    _, out = parse(seq.root)
    hits = mask_hits(out, seq.gt, body_model)
    assert hits.mean() > 0.98, f"only {hits.mean():.1%} of projected GT joints on the masks"


def test_scene_transform_fits_people_and_returns_to_input_world(seq, body_model):
    _, out = parse(seq.root)
    transform = SceneTransform.from_dict(out.metadata["world_to_scene"])
    np.testing.assert_allclose(out.dataparser_transform.numpy(), transform.matrix, atol=1e-6)
    assert out.dataparser_scale == pytest.approx(transform.scale)
    scene = transform.to_scene(np.concatenate([joints_of(body_model, s).reshape(-1, 3) for s in seq.gt.values()]))
    assert np.abs(scene).max() < 1.0 and np.abs(scene.mean(axis=0)).max() < 0.3
    np.testing.assert_allclose(transform.to_world(scene), transform.to_world(transform.to_scene(transform.to_world(
        scene))), atol=1e-9)
    # nerfstudio's own inverse brings the cameras back to the input's OpenCV poses
    poses = out.transform_poses_to_original_space(out.cameras.camera_to_worlds, camera_convention="opencv")
    for i, cam in enumerate([c for c in seq.cameras for _ in seq.frames]):
        np.testing.assert_allclose(poses[i, :, :3].numpy(), cam.R.T, atol=1e-5)
        np.testing.assert_allclose(poses[i, :, 3].numpy(), cam.center, atol=1e-4)
    # world +z stays up in the scene
    np.testing.assert_allclose(transform.rotation, np.eye(3))


@pytest.mark.parametrize("downscale", [1.0, 2.0, 1.5])
def test_distorted_projection_undistorted_within_half_pixel(downscale):
    """A point's distorted projection, drawn in a distorted image and undistorted by the cache's code,
    lands within 0.5 px of where the nerfstudio camera projects it."""
    cam = ring_rig(1, radius=3.0, width=160, height=120, fov_deg=70, dist=(-0.25, 0.08))[0]
    cam.dist[2:4] = (1e-3, -5e-4)
    cam.K[0, 2] += 2.3  # off-centre principal point
    rng = np.random.default_rng(1)
    points = np.array([0.0, 0.0, 0.9]) + rng.uniform(-1.0, 1.0, (6, 3)) * [1.1, 1.1, 0.7]
    uv_dist = project_points(points, cam)
    geom = view_geometry(cam, downscale)
    und = Undistorter(geom)
    cameras = make_cameras([geom.out_K], [cam.R], [cam.T], [geom.out_size], SceneTransform.identity(), np.zeros(1),
                           {"frame_index": np.zeros(1, int)})
    expected = project_with_cameras(cameras, 0, torch.tensor(points)).numpy() - 0.5  # to OpenCV pixel centres
    yy, xx = np.mgrid[0:cam.height, 0:cam.width].astype(np.float32)
    sigma = 2.0 * downscale
    for (u, v), (eu, ev) in zip(uv_dist, expected):
        blob = np.exp(-((xx - u) ** 2 + (yy - v) ** 2) / (2 * sigma**2)).astype(np.float32)
        out = und.image(blob)
        assert out.shape == (geom.out_size[1], geom.out_size[0])
        oy, ox = np.mgrid[0:out.shape[0], 0:out.shape[1]]
        w = np.where(out > 0.05 * out.max(), out, 0.0)
        cu, cv = (w * ox).sum() / w.sum(), (w * oy).sum() / w.sum()
        assert np.hypot(cu - eu, cv - ev) < 0.5, (downscale, (u, v), (cu, cv), (eu, ev))
        # the nearest-neighbour mask path lands on the same spot
        disk = (xx - u) ** 2 + (yy - v) ** 2 <= (4 * downscale) ** 2
        m = und.mask(disk)
        my, mx = np.nonzero(m)
        assert np.hypot(mx.mean() - eu, my.mean() - ev) < 0.5 * max(1.0, downscale)


def test_downscale_scales_k_and_images(seq, body_model):
    _, full = parse(seq.root)
    _, half = parse(seq.root, downscale_factor=2.0)
    assert int(half.cameras.width[0]) == 48 and int(half.cameras.height[0]) == 40
    assert float(half.cameras.fx[0]) == pytest.approx(float(full.cameras.fx[0]) / 2, rel=1e-6)
    assert float(half.cameras.cx[0]) == pytest.approx(float(full.cameras.cx[0]) / 2, abs=1e-4)
    image = cv2.imread(str(half.image_filenames[0]))
    assert image.shape == (40, 48, 3)
    assert half.image_filenames[0].parent.parent != full.image_filenames[0].parent.parent  # own cache key
    # at 48x40 px forearms and feet are a pixel thin: check the joints inside thick body parts
    assert mask_hits(half, seq.gt, body_model, THICK_JOINTS).mean() > 0.98


def test_frame_range_and_stride(tmp_path, body_model):
    root = tmp_path / "long"
    fixture = write_easymocap_sequence(root, body_model, num_cameras=2, num_frames=6, seed=4)
    _, out = parse(root, frame_start=1, frame_stride=2)
    assert out.metadata["frames"] == [1, 3, 5]
    np.testing.assert_allclose(out.cameras.times.ravel().numpy(), [0, 0.5, 1, 0, 0.5, 1], atol=1e-6)
    np.testing.assert_array_equal(out.cameras.metadata["frame_index"].ravel().numpy(), [1, 3, 5, 1, 3, 5])
    np.testing.assert_array_equal(out.cameras.metadata["frame_position"].ravel().numpy(), [0, 1, 2, 0, 1, 2])
    init = out.metadata["smpl_init"][1]
    np.testing.assert_array_equal(init["frames"], [1, 3, 5])
    full = out.metadata["eval_only_smpl_gt"][1]
    np.testing.assert_allclose(full["transl"], fixture.gt[1].transl[[1, 3, 5]], atol=1e-6)
    _, out = parse(root, frame_start=2, frame_end=4)
    assert out.metadata["frames"] == [2, 3]
    assert mask_hits(out, fixture.gt, body_model).mean() > 0.98


def test_eval_cameras_split(seq):
    parser = EasyMocapDataParserConfig(data=seq.root, cache_dir=seq.root.parent / "cache-split",
                                       eval_cameras=(seq.cameras[-1].name,), silhouette_fit=False).setup()
    train, test = parser.get_dataparser_outputs("train"), parser.get_dataparser_outputs("val")
    assert set(train.metadata["image_camera_names"]) == {c.name for c in seq.cameras[:-1]}
    assert set(test.metadata["image_camera_names"]) == {seq.cameras[-1].name}
    assert len(test.image_filenames) == len(seq.frames)  # every frame in both splits
    assert int(test.cameras.metadata["camera_index"][0]) == len(seq.cameras) - 1
    # default: nothing held out, eval shows the training cameras
    _, default_test = parse(seq.root, split="test")
    assert len(default_test.image_filenames) == len(seq.cameras) * len(seq.frames)
    # a camera subset
    _, subset = parse(seq.root, cameras=(seq.cameras[0].name, seq.cameras[2].name))
    assert subset.metadata["camera_names"] == [seq.cameras[0].name, seq.cameras[2].name]


def test_cache_reused_and_keyed_by_calibration(seq, tmp_path):
    root = copy_of(seq, tmp_path)
    _, out = parse(root, cache_dir=None)  # default: inside the data folder
    first = out.image_filenames[0]
    assert str(first).startswith(str(root / ".cache" / "avatarpose_ns"))
    stamp = first.stat().st_mtime_ns
    _, again = parse(root, cache_dir=None)
    assert again.image_filenames[0] == first and first.stat().st_mtime_ns == stamp  # not rewritten
    cams = list(read_cameras(root).values())
    cams[0].dist[0] -= 0.01
    write_cameras(root, cams)
    _, changed = parse(root, cache_dir=None)
    assert changed.image_filenames[0] != first  # a new calibration never reuses the old files


# ----------------------------------------------------------------------------- initialisation sources


def _easymocap_records(rng: np.random.Generator, num_frames: int) -> list[list[dict]]:
    """Random EasyMocap SMPL records for two people; person 0 with zero root rotation in poses (EasyMocap's
    usual output), person 1 with a root rotation in poses as well as Rh."""
    shapes = [rng.normal(0, 1.0, (1, 10)) for _ in range(2)]  # constant per person, as EasyMocap writes them
    records = []
    for _ in range(num_frames):
        frame_records = []
        for pid in range(2):
            poses = rng.normal(0, 0.3, (1, 72))
            if pid == 0:
                poses[0, :3] = 0.0
            frame_records.append({"id": pid, "Rh": rng.normal(0, 1.0, (1, 3)).tolist(),
                                  "Th": rng.normal(0, 1.0, (1, 3)).tolist(), "poses": poses.tolist(),
                                  "shapes": shapes[pid].tolist()})
        records.append(frame_records)
    return records


def test_easymocap_rh_th_conversion_matches_smplx(seq, tmp_path, body_model):
    root = copy_of(seq, tmp_path)
    shutil.rmtree(root / "smpl_init")
    records = _easymocap_records(np.random.default_rng(7), len(seq.frames))
    (root / "smpl").mkdir()
    for f, frame_records in zip(seq.frames, records):
        (root / "smpl" / f"{f:06d}.json").write_text(json.dumps(frame_records))
    _, out = parse(root)
    init = out.metadata["smpl_init"]
    assert out.metadata["smpl_init_source"].startswith("smpl:")
    smpl = body_model.smpl
    for i, frame_records in enumerate(records):
        for rec in frame_records:
            shapes = torch.tensor(rec["shapes"], dtype=torch.float32)
            poses = torch.tensor(rec["poses"], dtype=torch.float32)
            rh, th = np.asarray(rec["Rh"])[0], np.asarray(rec["Th"])[0]
            with torch.no_grad():  # EasyMocap's forward: pose with zero translation, then x -> R(Rh) x + Th
                ref = smpl(betas=shapes, body_pose=poses[:, 3:], global_orient=poses[:, :3], transl=torch.zeros(1, 3))
                ref = ref.vertices[0].double().numpy() @ Rotation.from_rotvec(rh).as_matrix().T + th
                p = init[rec["id"]]
                got = smpl(betas=torch.tensor(p["betas"][None], dtype=torch.float32),
                           body_pose=torch.tensor(p["body_pose"][i:i + 1], dtype=torch.float32),
                           global_orient=torch.tensor(p["global_orient"][i:i + 1], dtype=torch.float32),
                           transl=torch.tensor(p["transl"][i:i + 1], dtype=torch.float32))
            assert np.abs(got.vertices[0].double().numpy() - ref).max() < 1e-5


def test_keypoints_init_is_fitted_and_cached(seq, tmp_path, body_model):
    root = copy_of(seq, tmp_path)
    shutil.rmtree(root / "smpl_init")
    cache = tmp_path / "cache"
    _, out = parse(root, cache_dir=cache)
    assert out.metadata["smpl_init_source"].startswith("keypoints3d:")
    init = out.metadata["smpl_init"]
    for pid, gt in seq.gt.items():
        fitted = joints_of(body_model, SmplSequence(**init[pid]))
        error = np.linalg.norm(fitted - joints_of(body_model, gt), axis=-1).mean()
        assert error < 0.04, f"person {pid}: fitted init {error * 1000:.0f} mm from GT"
    fits = sorted((cache / "smpl_fit").glob("*.npz"))
    assert len(fits) == 2
    stamps = [f.stat().st_mtime_ns for f in fits]
    _, again = parse(root, cache_dir=cache)  # second parse reads the cached fit
    assert [f.stat().st_mtime_ns for f in fits] == stamps
    np.testing.assert_allclose(again.metadata["smpl_init"][0]["body_pose"], init[0]["body_pose"], atol=1e-6)


def test_init_path_option(seq, tmp_path):
    root = copy_of(seq, tmp_path)
    elsewhere = tmp_path / "elsewhere.npz"
    shutil.move(root / "smpl_init" / "smpl.npz", elsewhere)
    shutil.rmtree(root / "smpl_init")
    shutil.rmtree(root / "keypoints3d")
    _, out = parse(root, init_path=elsewhere)
    assert out.metadata["smpl_init_source"] == f"npz:{elsewhere}"


def test_camera_without_size_takes_it_from_images(seq, tmp_path):
    root = copy_of(seq, tmp_path)
    text = (root / "intri.yml").read_text()
    lines = [ln for ln in text.splitlines() if not ln.startswith(("H_", "W_"))]
    (root / "intri.yml").write_text("\n".join(lines) + "\n")
    _, out = parse(root)
    assert int(out.cameras.width[0]) == 96 and int(out.cameras.height[0]) == 80


def test_palette_union_masks_of_avatarpose(seq, tmp_path, body_model):
    """AvatarPose's mask_sta/<cam>/all/<frame>.png palette masks (SAM-Track ids) read as union masks."""
    from PIL import Image

    root = copy_of(seq, tmp_path)
    for cam in seq.cameras:
        out_dir = root / "mask_sta" / cam.name / "all"
        out_dir.mkdir(parents=True)
        for f in seq.frames:
            ids = np.zeros((80, 96), np.uint8)
            for pid in (0, 1):
                ids[cv2.imread(str(root / "mask" / cam.name / str(pid) / f"{f:06d}.png"), 0) > 0] = pid + 1
            image = Image.fromarray(ids, mode="P")
            image.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * 759)
            image.save(out_dir / f"{f:06d}.png")
    shutil.rmtree(root / "mask")
    _, out = parse(root)
    assert out.metadata["person_mask_filenames"] is None  # palette ids are not person ids
    assert mask_hits(out, seq.gt, body_model).mean() > 0.98



def test_silhouette_fit_refines_the_init_on_train_cameras_and_caches(seq, tmp_path, monkeypatch):
    import avatarpose_ns.dataparsers.silhouette_init as silhouette_init
    from avatarpose_ns.fitting.silhouette_fit import SilhouetteFitConfig

    calls = []
    real_fit = silhouette_init.fit_shape_to_silhouettes

    def recording_fit(body, cameras, masks, init, config, progress=False, person_masks=None, keypoints2d=None):
        calls.append(([c.name for c in cameras], masks.shape, None if person_masks is None else person_masks.shape))
        return real_fit(body, cameras, masks, init, config, person_masks=person_masks)

    monkeypatch.setattr(silhouette_init, "fit_shape_to_silhouettes", recording_fit)
    root, cache = copy_of(seq, tmp_path), tmp_path / "cache"
    held_out = seq.cameras[-1].name
    options = dict(cache_dir=cache, eval_cameras=(held_out,), silhouette_fit=True,
                   silhouette=SilhouetteFitConfig(iterations=10))
    _, plain = parse(root, cache_dir=cache, eval_cameras=(held_out,))
    _, out = parse(root, **options)
    assert out.metadata["smpl_init_source"].endswith("refined to the masks")
    assert len(calls) == 1
    cameras, mask_shape, person_mask_shape = calls[0]
    assert cameras == [c.name for c in seq.cameras[:-1]]  # the held-out view is never used
    assert mask_shape[:2] == (len(seq.cameras) - 1, len(seq.frames))
    assert person_mask_shape == mask_shape[:2] + (2,) + mask_shape[2:]  # the fixture has per-person masks
    refined, original = out.metadata["smpl_init"][0], plain.metadata["smpl_init"][0]
    assert not np.allclose(refined["betas"], original["betas"])
    assert np.all(np.isfinite(refined["body_pose"]))
    assert len(list((cache / "silhouette_fit").glob("*.npz"))) == 1
    _, again = parse(root, **options)  # cached: no second fit
    assert len(calls) == 1
    np.testing.assert_allclose(again.metadata["smpl_init"][0]["betas"], refined["betas"], atol=1e-6)
    monkeypatch.setattr(silhouette_init, "source_digest", lambda: "the fitting code changed")
    parse(root, **options)  # a result of other fitting code is not reused
    assert len(calls) == 2
