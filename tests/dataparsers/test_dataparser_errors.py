"""Bad input: each case gives one error naming the file and the problem, or a warning and a fallback."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from avatarpose_ns.dataparsers.easymocap_dataparser import EasyMocapDataParserConfig
from avatarpose_ns.dataparsers.sequence import SequenceError
from avatarpose_ns.fitting.silhouette_fit import SilhouetteFitConfig
from avatarpose_ns.io.cameras import read_cameras, write_cameras
from avatarpose_ns.io.easymocap import read_smpl_npz, write_smpl_npz
from dataparser_fixtures import Fixture, write_easymocap_sequence

LOGGER = "avatarpose_ns.dataparsers"


@pytest.fixture(scope="module")
def seq(tmp_path_factory, body_model) -> Fixture:
    return write_easymocap_sequence(tmp_path_factory.mktemp("errors") / "seq", body_model, seed=5)


@pytest.fixture
def root(seq, tmp_path) -> Path:
    target = tmp_path / "seq"
    shutil.copytree(seq.root, target, ignore=shutil.ignore_patterns(".cache"))
    return target


def parse(root: Path, split: str = "train", **options):
    options.setdefault("cache_dir", root.parent / "cache")
    options.setdefault("silhouette_fit", False)  # the layout is under test, not the fit
    return EasyMocapDataParserConfig(data=root, **options).setup().get_dataparser_outputs(split)


def resize_image(path: Path, size: tuple[int, int]) -> None:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(path), cv2.resize(image, size, interpolation=cv2.INTER_AREA))


def npz_payload(path: Path) -> dict:
    with np.load(path, allow_pickle=True) as archive:
        return {k: archive[k].item() for k in archive.files}


# ----------------------------------------------------------------------------- calibration and layout


def test_camera_missing_from_extri(root):
    cams = list(read_cameras(root).values())
    write_cameras(root / "tmp", cams[:2])
    shutil.move(root / "tmp" / "extri.yml", root / "extri.yml")
    with pytest.raises(SequenceError,
                       match=r"extri.yml: camera '02' \(listed in intri.yml\) is missing from extri.yml"):
        parse(root)


def test_folder_in_neither_layout(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SequenceError, match=r"empty: not an EasyMocap/AvatarPose sequence \(looked for intri.yml, "
                                            r"extri.yml, images/<camera>/<frame>.jpg\)"):
        parse(tmp_path / "empty")
    with pytest.raises(SequenceError, match=r"missing: sequence folder not found"):
        parse(tmp_path / "missing")


@pytest.mark.parametrize("text,message", [
    ("", r"intri.yml: empty calibration file \(expected OpenCV FileStorage YAML"),
    ("names: [", r"intri.yml: not a readable OpenCV FileStorage file \(.*Input file is invalid"),
])
def test_empty_or_malformed_intri(root, text, message):
    (root / "intri.yml").write_text(text)
    with pytest.raises(SequenceError, match=message):
        parse(root)


def edit_camera(root: Path, name: str, edit) -> None:
    cams = read_cameras(root)
    edit(cams[name])
    write_cameras(root, list(cams.values()))


@pytest.mark.parametrize("entry,value", [((0, 0), -1.0), ((1, 1), 0.0)])
def test_focal_length_not_positive(root, entry, value):
    edit_camera(root, "01", lambda cam: cam.K.__setitem__(entry, cam.K[entry] * value))
    with pytest.raises(SequenceError, match=r"intri.yml: camera '01' has focal lengths fx = .*, fy = .* "
                                            r"\(K\[0,0\], K\[1,1\]\); both must be positive"):
        parse(root)


def test_principal_point_outside_the_image(root):
    edit_camera(root, "01", lambda cam: cam.K.__setitem__((0, 2), 500.0))
    with pytest.raises(SequenceError, match=r"intri.yml: camera '01' has its principal point \(cx, cy\) = "
                                            r"\(500, 39.5\) outside its 96x80 image"):
        parse(root)


def test_camera_facing_away_from_the_people(root):
    def turn_around(cam) -> None:  # a half turn about the camera's own y axis: it looks the other way
        flip = np.diag([-1.0, 1.0, -1.0])
        cam.R, cam.T = flip @ cam.R, flip @ cam.T

    edit_camera(root, "02", turn_around)
    with pytest.raises(SequenceError, match=r"extri.yml: camera '02' sees none of the people in 3 of 3 frames: "
                                            r"their initial joints \(npz:.*smpl_init/smpl.npz\) lie behind the "
                                            r"camera; is its extrinsic flipped"):
        parse(root)


def test_every_camera_sees_the_people(root, caplog):
    with caplog.at_level(logging.WARNING, LOGGER):
        parse(root)
    assert "sees person" not in caplog.text and "sees none" not in caplog.text


def test_parent_of_sequences_names_them(root):
    with pytest.raises(SequenceError, match=r"sequences found inside: seq"):
        parse(root.parent)


def test_unknown_cameras_in_options(root):
    with pytest.raises(SequenceError, match=r"intri.yml: cameras \['07'\] requested but not calibrated"):
        parse(root, cameras=("00", "07"))
    with pytest.raises(SequenceError, match=r"eval cameras \['09'\] are not among the cameras in use"):
        parse(root, eval_cameras=("09",))
    with pytest.raises(SequenceError, match=r"every camera \['00', '01', '02'\] is held out"):
        parse(root, eval_cameras=("00", "01", "02"))


def test_calibrated_camera_without_images_is_skipped(root, caplog):
    shutil.move(root / "images" / "02", root / "images" / "99")
    with caplog.at_level(logging.WARNING, LOGGER):
        out = parse(root)
    assert "camera '02' is calibrated but has no image folder" in caplog.text
    assert "image folders ['99'] have no calibration" in caplog.text
    assert out.metadata["camera_names"] == ["00", "01"]


# ----------------------------------------------------------------------------- frames and images


def test_frame_missing_in_one_view(root, caplog):
    (root / "images" / "01" / "000001.jpg").unlink()
    with pytest.raises(SequenceError, match=r"images/01/000001.jpg: frame 1 is missing in camera\(s\) \['01'\] but "
                                            r"present in '00'"):
        parse(root)
    with caplog.at_level(logging.WARNING, LOGGER):
        out = parse(root, drop_incomplete_frames=True)
    assert "frame 1 missing in camera(s) ['01']; the frame is dropped" in caplog.text
    assert out.metadata["frames"] == [0, 2]


def test_frame_missing_in_every_view(root, caplog):
    for cam in ("00", "01", "02"):
        (root / "images" / cam / "000001.jpg").unlink()
    with pytest.raises(SequenceError, match=r"images/00/000001.jpg: frame 1 has no image in any camera, but the "
                                            r"initialisation \(npz:.*smpl_init/smpl.npz\) has it"):
        parse(root)
    with caplog.at_level(logging.WARNING, LOGGER):
        out = parse(root, drop_incomplete_frames=True)
    assert "frames [1] have no image in any camera but the initialisation" in caplog.text
    assert out.metadata["frames"] == [0, 2]


def test_image_size_differs_from_calibration(root):
    for path in (root / "images" / "01").glob("*.jpg"):
        resize_image(path, (64, 64))
    with pytest.raises(SequenceError, match=r"images/01/000000.jpg: image is 64x64 but .*intri.yml gives W_01=96, "
                                            r"H_01=80 \(a different aspect ratio\)"):
        parse(root)


def test_image_at_a_uniform_scale_of_calibration_rescales_k(root, caplog):
    for path in [*(root / "images" / "01").glob("*.jpg"), *(root / "mask" / "01").glob("**/*.png")]:
        resize_image(path, (48, 40))
    with caplog.at_level(logging.WARNING, LOGGER):
        out = parse(root)
    assert "image is 48x40 but" in caplog.text and "rescaling K by 0.5" in caplog.text
    index = out.metadata["image_camera_names"].index("01")
    assert int(out.cameras.width[index]) == 48
    assert float(out.cameras.fx[index]) == pytest.approx(read_cameras(root)["01"].K[0, 0] / 2, rel=1e-5)


def test_image_size_differs_from_other_frames(root):
    resize_image(root / "images" / "01" / "000002.jpg", (48, 40))
    with pytest.raises(SequenceError, match=r"images/01/000002.jpg: image is 48x40 but the other frames of camera "
                                            r"'01' \(000000.jpg\) are 96x80"):
        parse(root)


def test_unreadable_image(root):
    (root / "images" / "00" / "000001.jpg").write_bytes(b"this is not a jpeg")
    with pytest.raises(SequenceError, match=r"images/00/000001.jpg: unreadable image"):
        parse(root)


@pytest.mark.parametrize("distortion", [True, False])  # undistorted into the cache, or read as it is
def test_truncated_image(root, distortion):
    if not distortion:
        for name in ("00", "01", "02"):
            edit_camera(root, name, lambda cam: cam.dist.fill(0.0))
    path = root / "images" / "00" / "000001.jpg"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SequenceError, match=r"images/00/000001.jpg: unreadable image, truncated or corrupt "
                                            r"\(OSError: image file is truncated"):
        parse(root)


def test_empty_sequence(root):
    with pytest.raises(SequenceError, match=r"empty sequence: frame range \[10, 20\) selects none of the frames 0..2"):
        parse(root, frame_start=10, frame_end=20)
    for cam in ("00", "01", "02"):
        for path in (root / "images" / cam).iterdir():
            path.unlink()
    with pytest.raises(SequenceError, match=r"empty sequence: no images named <frame>.jpg/.png"):
        parse(root)


# ----------------------------------------------------------------------------- masks


def test_missing_mask(root):
    for path in (root / "mask" / "00" / "000001.png", root / "mask" / "00" / "0" / "000001.png"):
        path.unlink()
    with pytest.raises(SequenceError, match=r"mask/00/000001.png: foreground mask missing for camera '00', frame 1"):
        parse(root)


def test_missing_union_mask_made_from_person_masks(root):
    (root / "mask" / "00" / "000001.png").unlink()
    out = parse(root)
    union = cv2.imread(str(out.mask_filenames[1]), 0) > 0
    persons = [cv2.imread(str(p), 0) > 0 for p in out.metadata["person_mask_filenames"][1]]
    np.testing.assert_array_equal(union, persons[0] | persons[1])
    assert union.any()


def _record_fit(monkeypatch) -> list:
    """Replace the silhouette fit by one that records the per-person masks it is given."""
    import avatarpose_ns.dataparsers.silhouette_init as silhouette_init

    given = []

    def fit(body, cameras, masks, init, config, progress=False, person_masks=None, keypoints2d=None):
        given.append(person_masks)
        return init

    monkeypatch.setattr(silhouette_init, "fit_shape_to_silhouettes", fit)
    return given


@pytest.mark.parametrize("missing", ["mask/02/1/000002.png", "mask/02/1"])
def test_missing_person_mask_drops_person_masks(root, caplog, monkeypatch, missing):
    path = root / missing
    path.unlink() if path.is_file() else shutil.rmtree(path)
    given = _record_fit(monkeypatch)
    with caplog.at_level(logging.WARNING, LOGGER):
        out = parse(root, silhouette_fit=True)
    assert given == [None]  # the fit covers the union masks only
    assert (f"person masks off: {missing} missing; pass --silhouette.use-person-masks False to silence, "
            "or add the file") in caplog.text
    assert out.metadata["person_mask_filenames"] is None and out.metadata["person_label_filenames"] is None
    assert len(out.mask_filenames) == 9
    caplog.clear()
    with caplog.at_level(logging.WARNING, LOGGER):  # the hint silences it; so does turning the fit off
        parse(root, silhouette_fit=True, silhouette=SilhouetteFitConfig(use_person_masks=False))
        parse(root)
    assert "person masks off" not in caplog.text


def test_complete_person_masks_reach_the_fit(root, monkeypatch, caplog):
    given = _record_fit(monkeypatch)
    with caplog.at_level(logging.WARNING, LOGGER):
        parse(root, silhouette_fit=True)
    assert given[0].shape[:3] == (3, 3, 2) and "person masks off" not in caplog.text


def test_no_masks_at_all(root):
    shutil.rmtree(root / "mask")
    with pytest.raises(SequenceError, match=r"seq/mask: no foreground masks \(looked for .*mask/ or mask_sta/ or "
                                            r"mask_gt/\)"):
        parse(root)


def test_unreadable_or_wrongly_sized_mask(root):
    (root / "mask" / "01" / "000000.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(SequenceError, match=r"mask/01/000000.png: cannot read mask image"):
        parse(root)
    cv2.imwrite(str(root / "mask" / "01" / "000000.png"), np.zeros((40, 48), np.uint8))
    with pytest.raises(SequenceError,
                       match=r"mask/01/000000.png: mask is 48x40 but the images of this camera are 96x80"):
        parse(root)


# ----------------------------------------------------------------------------- initialisation and ground truth


def test_no_initialisation(root):
    shutil.rmtree(root / "smpl_init")
    shutil.rmtree(root / "keypoints3d")
    with pytest.raises(SequenceError, match=r"no SMPL initialisation \(looked for smpl_init/smpl.npz, "
                                            r"smpl/<frame>.json \(EasyMocap Rh/Th/poses/shapes\), "
                                            r"keypoints3d/<frame>.json\)"):
        parse(root)


@pytest.mark.parametrize("field,value,message", [
    ("transl", np.nan, r"smpl_init/smpl.npz: field 'human_0.transl' contains NaN or infinite values"),
    ("body_pose", (3, 60), r"smpl_init/smpl.npz: 'human_0.body_pose' has 60 values per frame, expected 69"),
    ("betas", (1, 16), r"smpl_init/smpl.npz: person 0 has 16 betas, expected 10"),
    ("global_orient", (2, 3), r"smpl_init/smpl.npz: 'human_0.global_orient' has 2 frames but body_pose has 3"),
])
def test_bad_values_or_shapes_in_init(root, field, value, message):
    path = root / "smpl_init" / "smpl.npz"
    payload = npz_payload(path)
    if isinstance(value, tuple):
        payload["human_0"][field] = np.zeros(value, np.float32)
    else:
        payload["human_0"][field] = payload["human_0"][field].copy()
        payload["human_0"][field][1, 0] = value
    np.savez(path, **payload)
    with pytest.raises(SequenceError, match=message):
        parse(root)


def test_init_lacking_selected_frames(root):
    path = root / "smpl_init" / "smpl.npz"
    people = read_smpl_npz(path)
    for seq in people.values():
        seq.body_pose, seq.global_orient, seq.transl, seq.frames = (
            seq.body_pose[:2], seq.global_orient[:2], seq.transl[:2], seq.frames[:2])
    write_smpl_npz(path, people)
    with pytest.raises(SequenceError, match=r"smpl_init/smpl.npz: person 0 has no parameters for frames \[2\]"):
        parse(root)
    assert parse(root, frame_end=2).metadata["frames"] == [0, 1]


def test_bad_easymocap_smpl_json(root):
    shutil.rmtree(root / "smpl_init")
    (root / "smpl").mkdir()
    good = {"id": 0, "Rh": [[0, 0, 0]], "Th": [[0, 0, 0]], "poses": [[0.0] * 72], "shapes": [[0.0] * 10]}
    for f in range(3):
        (root / "smpl" / f"{f:06d}.json").write_text(json.dumps([good]))
    (root / "smpl" / "000001.json").write_text(json.dumps([dict(good, Th=[[0, float("nan"), 0]])]))
    with pytest.raises(SequenceError, match=r"smpl/000001.json: Th contains NaN"):
        parse(root)
    (root / "smpl" / "000001.json").write_text(json.dumps([dict(good, poses=[[0.0] * 63])]))
    with pytest.raises(SequenceError, match=r"smpl/000001.json: record 0: poses has 63 values, expected 72"):
        parse(root)
    (root / "smpl" / "000002.json").unlink()
    (root / "smpl" / "000001.json").write_text(json.dumps([good]))
    with pytest.raises(SequenceError, match=r"smpl/000002.json: EasyMocap SMPL file for frame 2 not found"):
        parse(root)


def test_bad_keypoints3d(root):
    shutil.rmtree(root / "smpl_init")
    path = root / "keypoints3d" / "000001.json"
    records = json.loads(path.read_text())
    records[0]["keypoints3d"] = records[0]["keypoints3d"][:17]
    path.write_text(json.dumps(records))
    with pytest.raises(SequenceError, match=r"keypoints3d/000001.json: person 0 has 17 keypoints; expected 24"):
        parse(root)


def test_person_ids_differ_between_init_and_gt(root, caplog):
    path = root / "smpl_gt" / "smpl.npz"
    people = read_smpl_npz(path)
    write_smpl_npz(path, {0: people[0], 5: people[1]})
    with caplog.at_level(logging.WARNING, LOGGER):
        out = parse(root)
    assert "person ids differ between the initialisation" in caplog.text and "[0, 5]" in caplog.text
    assert sorted(out.metadata["eval_only_smpl_gt"]) == [0, 5]  # kept: evaluation matches by pose


def test_bad_ground_truth_is_a_warning(root, caplog):
    path = root / "smpl_gt" / "smpl.npz"
    payload = npz_payload(path)
    payload["human_1"]["transl"] = payload["human_1"]["transl"] * np.nan
    np.savez(path, **payload)
    with caplog.at_level(logging.WARNING, LOGGER):
        out = parse(root)
    assert "ground truth not used" in caplog.text and "smpl_gt/smpl.npz" in caplog.text
    assert out.metadata["eval_only_smpl_gt"] is None
    assert out.metadata["smpl_init"] is not None
