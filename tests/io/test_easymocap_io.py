import json

import numpy as np
import pytest

from avatarpose_ns.io.easymocap import (
    FormatError, SmplSequence, read_annots, read_keypoints3d_folder, read_smpl_npz, write_annots,
    write_keypoints3d_folder, write_smpl_npz,
)


def _sequence(rng, frames=4) -> SmplSequence:
    return SmplSequence(rng.normal(size=10), rng.normal(size=(frames, 69)), rng.normal(size=(frames, 3)),
                        rng.normal(size=(frames, 3)), np.arange(frames) + 5)


def test_smpl_npz_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    people = {0: _sequence(rng), 3: _sequence(rng)}
    write_smpl_npz(tmp_path / "smpl.npz", people)
    back = read_smpl_npz(tmp_path / "smpl.npz")
    assert sorted(back) == [0, 3]
    for pid in people:
        np.testing.assert_allclose(back[pid].body_pose, people[pid].body_pose, atol=1e-6)
        np.testing.assert_allclose(back[pid].transl, people[pid].transl, atol=1e-6)
        np.testing.assert_array_equal(back[pid].frames, people[pid].frames)
        assert back[pid].betas.shape == (10,)


def test_smpl_npz_write_cut_off_keeps_the_old_file(tmp_path, monkeypatch):
    """The fit caches are read back on the next run: an interrupted write must not leave half a file."""
    rng = np.random.default_rng(1)
    path = tmp_path / "smpl.npz"
    write_smpl_npz(path, {0: _sequence(rng)})
    old = path.read_bytes()
    real_savez = np.savez

    def cut_off(file, **arrays):
        real_savez(file, **arrays)
        file.truncate(file.tell() // 2)
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", cut_off)
    with pytest.raises(KeyboardInterrupt):
        write_smpl_npz(path, {0: _sequence(rng), 1: _sequence(rng)})
    assert path.read_bytes() == old and [p.name for p in tmp_path.iterdir()] == ["smpl.npz"]
    monkeypatch.undo()
    write_smpl_npz(tmp_path / "other", {0: _sequence(rng)})  # np.savez's naming: .npz appended
    assert (tmp_path / "other.npz").is_file()


def test_smpl_npz_accepts_avatarpose_shapes(tmp_path):
    """AvatarPose writes body_pose as (F, 1, 69) and betas as (1, 10)."""
    f = 3
    record = {"betas": np.ones((1, 10)), "body_pose": np.zeros((f, 1, 69)), "global_orient": np.zeros((f, 1, 3)),
              "transl": np.zeros((f, 3)), "frames": np.arange(f)}
    np.savez(tmp_path / "smpl.npz", human_1=record)
    back = read_smpl_npz(tmp_path / "smpl.npz")
    assert back[1].body_pose.shape == (f, 69) and back[1].global_orient.shape == (f, 3)


def test_smpl_npz_bad_input_names_file(tmp_path):
    f = 2
    bad = {"betas": np.zeros(10), "body_pose": np.full((f, 69), np.nan), "global_orient": np.zeros((f, 3)),
           "transl": np.zeros((f, 3))}
    np.savez(tmp_path / "nan.npz", human_0=bad)
    with pytest.raises(FormatError, match=r"nan\.npz.*NaN"):
        read_smpl_npz(tmp_path / "nan.npz")
    short = dict(bad, body_pose=np.zeros((f, 69)), transl=np.zeros((f + 1, 3)))
    np.savez(tmp_path / "short.npz", human_0=short)
    with pytest.raises(FormatError, match=r"short\.npz.*transl.*3 frames"):
        read_smpl_npz(tmp_path / "short.npz")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        read_smpl_npz(tmp_path / "missing.npz")


def test_keypoints3d_round_trip_and_errors(tmp_path):
    rng = np.random.default_rng(1)
    data = {f: {0: rng.normal(size=(24, 3)), 1: rng.normal(size=(24, 3))} for f in range(3)}
    write_keypoints3d_folder(tmp_path / "k", data)
    assert json.loads((tmp_path / "k" / "000002.json").read_text())[1]["id"] == 1
    back = read_keypoints3d_folder(tmp_path / "k")
    np.testing.assert_allclose(back[2][1][:, :3], data[2][1], atol=1e-6)
    np.testing.assert_array_equal(back[0][0][:, 3], 1.0)
    (tmp_path / "k" / "000003.json").write_text("[{\"id\": 0}]")
    with pytest.raises(FormatError, match="000003.json.*keypoints3d"):
        read_keypoints3d_folder(tmp_path / "k")


def test_annots_round_trip(tmp_path):
    keypoints = np.array([[10.0, 20.0, 0.9], [30.0, 5.0, 0.0], [50.0, 60.0, 0.8]])
    write_annots(tmp_path / "a.json", [(2, keypoints)], 64, 48)
    payload = json.loads((tmp_path / "a.json").read_text())
    assert payload["annots"][0]["bbox"][:4] == [10.0, 20.0, 50.0, 60.0]  # the missed joint is left out
    np.testing.assert_allclose(read_annots(tmp_path / "a.json")[2], keypoints)
