"""Corruption sweep: every corruption of a list, each alone, applied to a copy of a small generated sequence.

Each one must either stop with the project's own error (``SequenceError``) whose message names the
file, camera or frame, or load exactly the data of the clean copy. Ground truth (evaluation only)
and per-person masks are the two documented exceptions: a broken one is dropped with a warning
naming the file, and everything else still loads exactly as from the clean copy.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from avatarpose_ns.dataparsers.easymocap_dataparser import EasyMocapDataParserConfig
from avatarpose_ns.dataparsers.sequence import SequenceError
from avatarpose_ns.io.cameras import read_cameras, write_cameras
from dataparser_fixtures import write_easymocap_sequence

LOGGER = "avatarpose_ns.dataparsers"


# ----------------------------------------------------------------------------- corruptions


def truncate(path: str) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        data = (root / path).read_bytes()
        (root / path).write_bytes(data[: len(data) // 2])
    return apply


def zero_bytes(path: str) -> Callable[[Path], None]:
    return lambda root: (root / path).write_bytes(b"")


def delete(path: str) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        for name in path.split("+"):
            target = root / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()
    return apply


def copy(source: str, target: str) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        src, dst = root / source, root / target
        shutil.copytree(src, dst) if src.is_dir() else shutil.copyfile(src, dst)
    return apply


def resize(path: str, size: tuple[int, int]) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        image = cv2.imread(str(root / path), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(root / path), cv2.resize(image, size, interpolation=cv2.INTER_NEAREST))
    return apply


def recode(path: str, mode: str, as_path: str | None = None) -> Callable[[Path], None]:
    """Re-save an image in another PIL mode ("I;16" for 16-bit), or save a copy so under ``as_path``."""
    def apply(root: Path) -> None:
        with Image.open(root / path) as image:
            image.load()
        if mode == "I;16":
            converted = Image.fromarray(np.asarray(image.convert("L")).astype(np.uint16) * 257)
        elif mode == "P":
            converted = image.convert("L").point(lambda v: 1 if v >= 128 else 0).convert("P")
        else:
            converted = image.convert(mode)
        converted.save(root / (as_path or path))
    return apply


def edit_camera(name: str, edit: Callable) -> Callable[[Path], None]:
    """Change one camera's calibration through the project's own writer."""
    def apply(root: Path) -> None:
        cams = read_cameras(root)
        edit(cams[name])
        write_cameras(root, list(cams.values()))
    return apply


def read_storage(path: Path) -> dict[str, object]:
    """Every top-level entry of an OpenCV FileStorage file: 'names' as a list, numbers, matrices."""
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    entries: dict[str, object] = {}
    for key in fs.root().keys():
        node = fs.getNode(key)
        if node.isSeq():
            entries[key] = [node.at(i).string() for i in range(node.size())]
        elif node.isInt():
            entries[key] = int(node.real())
        else:
            entries[key] = node.mat()
    fs.release()
    return entries


def edit_storage(file: str, key: str, value: object = None, drop: bool = False) -> Callable[[Path], None]:
    """Set (or with ``drop`` remove) one entry of intri.yml / extri.yml, the rest written back as it was."""
    def apply(root: Path) -> None:
        entries = read_storage(root / file)
        if drop:
            del entries[key]
        else:
            entries[key] = value(entries[key]) if callable(value) else value
        fs = cv2.FileStorage(str(root / file), cv2.FILE_STORAGE_WRITE)
        for name, item in entries.items():
            if isinstance(item, list):
                fs.startWriteStruct(name, cv2.FileNode_SEQ)
                for element in item:
                    fs.write("", element)
                fs.endWriteStruct()
            else:
                fs.write(name, item)
        fs.release()
    return apply


def with_nan(matrix: np.ndarray) -> np.ndarray:
    matrix = matrix.copy()
    matrix.flat[0] = np.nan
    return matrix


def edit_npz(path: str, person: int, field: str, value: object = None, drop: bool = False
             ) -> Callable[[Path], None]:
    """Change one field of one person (``human_<person>``) in an AvatarPose smpl.npz."""
    def apply(root: Path) -> None:
        with np.load(root / path, allow_pickle=True) as archive:
            payload = {k: archive[k].item() for k in archive.files}
        record = payload[f"human_{person}"]
        if drop:
            del record[field]
        else:
            record[field] = value(record[field].copy()) if callable(value) else value
        np.savez(root / path, **payload)
    return apply


def nan_at(array: np.ndarray) -> np.ndarray:
    array.flat[1] = np.nan
    return array


def turn_around(cam) -> None:
    """A half turn about the camera's own y axis: it looks away from the people."""
    flip = np.diag([-1.0, 1.0, -1.0])
    cam.R, cam.T = flip @ cam.R, flip @ cam.T


def set_k(entry: tuple[int, int], value: float) -> Callable:
    return lambda cam: cam.K.__setitem__(entry, value)


def for_all(*corruptions: Callable[[Path], None]) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        for corruption in corruptions:
            corruption(root)
    return apply


def other_aspect(path: str) -> Callable[[Path], None]:
    return resize(path, (48, 48))


def rotation(name: str, matrix: np.ndarray) -> Callable[[Path], None]:
    return edit_storage("extri.yml", f"Rot_{name}", matrix)


# ----------------------------------------------------------------------------- the list

ERROR, SAME, DROPPED = "error", "same", "dropped"


@dataclass(frozen=True)
class Corruption:
    kind: str  # truncate, zero-byte, wrong size, ... (for the counts)
    what: str
    apply: Callable[[Path], None]
    outcome: str  # ERROR: SequenceError naming `names`; SAME: the clean copy's data; DROPPED: warning naming
    names: str = ""  # `names` and the clean data except `dropped`
    dropped: tuple[str, ...] = ()


GT = ("eval_only_smpl_gt", "eval_only_smpl_gt_source")
PERSON_MASKS = ("person masks", "person labels")
IMG, MASK, PMASK = "images/00/000001.jpg", "mask/01/000000.png", "mask/02/1/000002.png"

CORRUPTIONS = [
    # truncated: the first half of the file
    Corruption("truncate", "image", truncate(IMG), ERROR, IMG),
    Corruption("truncate", "union mask", truncate(MASK), ERROR, MASK),
    Corruption("truncate", "per-person mask", truncate(PMASK), ERROR, PMASK),
    Corruption("truncate", "intri.yml", truncate("intri.yml"), ERROR, "intri.yml"),
    Corruption("truncate", "extri.yml", truncate("extri.yml"), ERROR, "extri.yml"),
    Corruption("truncate", "initialisation", truncate("smpl_init/smpl.npz"), ERROR, "smpl_init/smpl.npz"),
    Corruption("truncate", "ground truth", truncate("smpl_gt/smpl.npz"), DROPPED, "smpl_gt/smpl.npz", GT),
    Corruption("truncate", "unused keypoints3d", truncate("keypoints3d/000001.json"), SAME),
    # zero bytes
    Corruption("zero-byte", "image", zero_bytes(IMG), ERROR, IMG),
    Corruption("zero-byte", "union mask", zero_bytes(MASK), ERROR, MASK),
    Corruption("zero-byte", "per-person mask", zero_bytes(PMASK), ERROR, PMASK),
    Corruption("zero-byte", "intri.yml", zero_bytes("intri.yml"), ERROR, "intri.yml"),
    Corruption("zero-byte", "extri.yml", zero_bytes("extri.yml"), ERROR, "extri.yml"),
    Corruption("zero-byte", "initialisation", zero_bytes("smpl_init/smpl.npz"), ERROR, "smpl_init/smpl.npz"),
    # wrong size
    Corruption("wrong size", "image", other_aspect(IMG), ERROR, IMG),
    Corruption("wrong size", "all images of a camera", for_all(*[other_aspect(f"images/01/{f:06d}.jpg")
                                                                 for f in range(3)]), ERROR, "images/01/000000.jpg"),
    Corruption("wrong size", "union mask", other_aspect(MASK), ERROR, MASK),
    Corruption("wrong size", "per-person mask", other_aspect(PMASK), ERROR, PMASK),
    Corruption("wrong size", "H_ in intri.yml", edit_storage("intri.yml", "H_01", 81), ERROR, "images/01/000000.jpg"),
    # wrong mode
    Corruption("wrong mode", "greyscale image", recode(IMG, "L"), ERROR, IMG),
    Corruption("wrong mode", "RGB union mask", recode(MASK, "RGB"), SAME),
    Corruption("wrong mode", "16-bit union mask", recode(MASK, "I;16"), SAME),
    Corruption("wrong mode", "palette union mask", recode(MASK, "P"), SAME),
    Corruption("wrong mode", "RGBA per-person mask", recode(PMASK, "RGBA"), SAME),
    # NaN
    Corruption("NaN", "K", edit_storage("intri.yml", "K_01", with_nan), ERROR, "intri.yml"),
    Corruption("NaN", "T", edit_storage("extri.yml", "T_02", with_nan), ERROR, "extri.yml"),
    Corruption("NaN", "dist", edit_storage("intri.yml", "dist_00", with_nan), ERROR, "intri.yml"),
    Corruption("NaN", "initial transl", edit_npz("smpl_init/smpl.npz", 0, "transl", nan_at), ERROR,
               "smpl_init/smpl.npz"),
    Corruption("NaN", "initial betas", edit_npz("smpl_init/smpl.npz", 1, "betas", nan_at), ERROR,
               "smpl_init/smpl.npz"),
    Corruption("NaN", "ground-truth pose", edit_npz("smpl_gt/smpl.npz", 1, "body_pose", nan_at), DROPPED,
               "smpl_gt/smpl.npz", GT),
    # wrong shape
    Corruption("wrong shape", "K 2x3", edit_storage("intri.yml", "K_01", lambda k: k[:2]), ERROR, "intri.yml"),
    Corruption("wrong shape", "dist of 3", edit_storage("intri.yml", "dist_01", lambda d: d[:, :3]), ERROR,
               "intri.yml"),
    Corruption("wrong shape", "T 2x1", edit_storage("extri.yml", "T_00", lambda t: t[:2]), ERROR, "extri.yml"),
    Corruption("wrong shape", "Rot 3x2", edit_storage("extri.yml", "Rot_00", lambda r: r[:, :2].copy()), ERROR,
               "extri.yml"),
    Corruption("wrong shape", "initial body_pose", edit_npz("smpl_init/smpl.npz", 0, "body_pose",
                                                            np.zeros((3, 60), np.float32)), ERROR,
               "smpl_init/smpl.npz"),
    Corruption("wrong shape", "initial transl frames", edit_npz("smpl_init/smpl.npz", 1, "transl",
                                                                np.zeros((2, 3), np.float32)), ERROR,
               "smpl_init/smpl.npz"),
    # missing key
    Corruption("missing key", "K", edit_storage("intri.yml", "K_01", drop=True), ERROR, "intri.yml"),
    Corruption("missing key", "names", edit_storage("intri.yml", "names", drop=True), ERROR, "intri.yml"),
    Corruption("missing key", "T", edit_storage("extri.yml", "T_02", drop=True), ERROR, "extri.yml"),
    Corruption("missing key", "Rot and R", for_all(edit_storage("extri.yml", "Rot_02", drop=True),
                                                   edit_storage("extri.yml", "R_02", drop=True)), ERROR, "extri.yml"),
    Corruption("missing key", "optional H_ and W_", for_all(edit_storage("intri.yml", "H_00", drop=True),
                                                            edit_storage("intri.yml", "W_00", drop=True)), SAME),
    Corruption("missing key", "initial transl", edit_npz("smpl_init/smpl.npz", 0, "transl", drop=True), ERROR,
               "smpl_init/smpl.npz"),
    # missing file
    Corruption("missing file", "image in one view", delete(IMG), ERROR, IMG),
    Corruption("missing file", "union mask (per-person masks remain)", delete(MASK), SAME),
    Corruption("missing file", "union and per-person masks", delete(f"{MASK}+mask/01/0/000000.png"), ERROR, MASK),
    Corruption("missing file", "per-person mask", delete(PMASK), DROPPED, PMASK, PERSON_MASKS),
    Corruption("missing file", "per-person mask folder", delete("mask/02/1"), DROPPED, "mask/02/1", PERSON_MASKS),
    Corruption("missing file", "extri.yml", delete("extri.yml"), ERROR, "extri.yml"),
    Corruption("missing file", "every initialisation", delete("smpl_init+keypoints3d"), ERROR, "smpl_init"),
    Corruption("missing file", "unused keypoints3d", delete("keypoints3d/000002.json"), SAME),
    # duplicated file
    Corruption("duplicated file", "image with two extensions", recode(IMG, "RGB", "images/00/000001.png"), ERROR,
               "images/00/000001.png"),
    Corruption("duplicated file", "image, unpadded frame name", copy(IMG, "images/00/1.jpg"), ERROR,
               "images/00/1.jpg"),
    Corruption("duplicated file", "image under a non-frame name", copy(IMG, "images/00/000001 (copy).jpg"), SAME),
    Corruption("duplicated file", "camera folder without calibration", copy("images/02", "images/02_copy"), SAME),
    Corruption("duplicated file", "camera name in intri.yml", edit_storage("intri.yml", "names",
                                                                          ["00", "01", "01"]), ERROR, "intri.yml"),
    # flipped or singular camera
    Corruption("flipped camera", "extrinsic turned around", edit_camera("02", turn_around), ERROR, "camera '02'"),
    Corruption("flipped camera", "mirrored Rot", rotation("01", np.diag([1.0, 1.0, -1.0])), ERROR, "Rot_01"),
    Corruption("flipped camera", "negative focal length", edit_camera("01", set_k((0, 0), -80.0)), ERROR,
               "camera '01'"),
    Corruption("singular camera", "zero focal length", edit_camera("01", set_k((1, 1), 0.0)), ERROR, "camera '01'"),
    Corruption("singular camera", "Rot with a zero row", rotation("00", np.diag([1.0, 1.0, 0.0])), ERROR, "Rot_00"),
    Corruption("singular camera", "K last row zero", edit_camera("00", set_k((2, 2), 0.0)), ERROR, "camera '00'"),
    Corruption("singular camera", "principal point off the image", edit_camera("00", set_k((0, 2), -30.0)), ERROR,
               "camera '00'"),
    # frame gaps
    Corruption("frame gap", "frame missing in every camera", delete("+".join(f"images/{c}/000001.jpg"
                                                                            for c in ("00", "01", "02"))), ERROR,
               "frame 1"),
    Corruption("frame gap", "frame missing in one camera", delete("images/02/000002.jpg"), ERROR, "frame 2"),
    Corruption("frame gap", "initialisation lacking a frame",
               for_all(*[edit_npz("smpl_init/smpl.npz", p, k, lambda a: a[:2]) for p in (0, 1)
                         for k in ("body_pose", "global_orient", "transl", "frames")]), ERROR, "frames [2]"),
]


# ----------------------------------------------------------------------------- loading and comparing


def parse(root: Path):
    return EasyMocapDataParserConfig(data=root, cache_dir=root.parent / "cache",
                                     silhouette_fit=False).setup().get_dataparser_outputs("train")


def read(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def loaded_data(out, root: Path) -> dict[str, object]:
    """What a run trains and evaluates on: pixels (not file names), cameras, metadata (paths made relative)."""
    md = out.metadata
    data: dict[str, object] = {
        "images": [read(p) for p in out.image_filenames],
        "masks": [read(p) for p in out.mask_filenames],
        "person masks": None if md["person_mask_filenames"] is None else
        [[read(p) for p in view] for view in md["person_mask_filenames"]],
        "person labels": None if md["person_label_filenames"] is None else
        [read(p) for p in md["person_label_filenames"]],
        "cameras": {k: v for k, v in vars(out.cameras).items() if torch.is_tensor(v)},
        "camera metadata": out.cameras.metadata,
        "transform": (out.dataparser_transform, out.dataparser_scale, out.scene_box.aabb),
    }
    for key, value in md.items():
        if key not in ("person_mask_filenames", "person_label_filenames", "data_root", "cache_dir"):
            data[key] = value.replace(str(root), "<root>") if isinstance(value, str) else value
    return data


def file_contents(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def same(a: object, b: object) -> bool:
    """Exact equality through dicts, lists, arrays and tensors."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if torch.is_tensor(a) and torch.is_tensor(b):
        return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    return type(a) is type(b) and a == b


@pytest.fixture(scope="module")
def clean(tmp_path_factory, body_model) -> tuple[Path, dict[str, object]]:
    """The clean sequence and the data it loads (from its own copy, so that paths compare alike)."""
    source = write_easymocap_sequence(tmp_path_factory.mktemp("sweep-source") / "seq", body_model, seed=5).root
    root = tmp_path_factory.mktemp("sweep-clean") / "seq"
    shutil.copytree(source, root)
    return source, loaded_data(parse(root), root)


def test_the_list_covers_every_kind():
    kinds = {c.kind for c in CORRUPTIONS}
    assert kinds == {"truncate", "zero-byte", "wrong size", "wrong mode", "NaN", "wrong shape", "missing key",
                     "missing file", "duplicated file", "flipped camera", "singular camera", "frame gap"}
    assert len({(c.kind, c.what) for c in CORRUPTIONS}) == len(CORRUPTIONS)


@pytest.mark.parametrize("corruption", CORRUPTIONS, ids=[f"{c.kind}: {c.what}" for c in CORRUPTIONS])
def test_corruption_stops_with_a_named_error_or_loads_the_same(clean, corruption, tmp_path, caplog):
    source, reference = clean
    root = tmp_path / "seq"
    shutil.copytree(source, root)
    corruption.apply(root)
    assert file_contents(root) != file_contents(source), "the corruption changed nothing"
    if corruption.outcome == ERROR:
        with pytest.raises(SequenceError) as error:
            parse(root)
        assert corruption.names in str(error.value), str(error.value)
        return
    with caplog.at_level(logging.INFO, LOGGER):
        data = loaded_data(parse(root), root)
    differing = sorted(k for k in reference if not same(reference[k], data[k]))
    assert differing == sorted(corruption.dropped)
    if corruption.outcome == DROPPED:
        assert corruption.names in caplog.text
