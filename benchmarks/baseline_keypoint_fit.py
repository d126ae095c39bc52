"""The "SMPL fitted" baseline (AvatarPose, Table 3): SMPL fitted to the multi-view 2D keypoints.

Reads a sequence in the EasyMocap/AvatarPose layout (intri.yml, extri.yml,
annots/<cam>/<frame:06d>.json, smpl_init/smpl.npz), refines every person's
initialisation against the 2D detections of all views with
`fitting.smpl_fit_2d.fit_smpl_to_keypoints2d`, writes `<output>/smpl.npz`
(score it with avatarpose-eval) and, when the sequence has `smpl_gt/smpl.npz`,
prints the initialisation's and the baseline's MPJPE / PCP / AP50 against it.

    .venv/bin/python benchmarks/baseline_keypoint_fit.py --sequence data/demo --output outputs/kpfit/demo

Weights can be overridden, e.g. `--set pixel_sigma_diagonal=0.02 --set iterations=300`.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import sys
import time
from pathlib import Path

import torch
from rich.console import Console

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from avatarpose_ns.body.body_model import BodyModel  # noqa: E402
from avatarpose_ns.eval.cli import EvalArgs, run_eval  # noqa: E402
from avatarpose_ns.fitting.smpl_fit_2d import KeypointFit2DConfig, fit_smpl_to_keypoints2d  # noqa: E402
from avatarpose_ns.io.cameras import read_cameras  # noqa: E402
from avatarpose_ns.io.easymocap import read_annots_folder, read_smpl_npz, write_smpl_npz  # noqa: E402


def parse_overrides(items: list[str]) -> dict:
    fields = {f.name: f.type for f in dataclasses.fields(KeypointFit2DConfig)}
    overrides = {}
    for item in items:
        name, _, value = item.partition("=")
        if name not in fields:
            raise SystemExit(f"--set {item}: unknown field, choose from {sorted(fields)}")
        overrides[name] = int(value) if fields[name] in (int, "int") else float(value)
    return overrides


def score(pred: Path, gt: Path) -> dict:
    metrics = run_eval(EvalArgs(pred=pred, gt=gt), Console(file=io.StringIO()))
    return {"mpjpe_mm": metrics.mpjpe, "pcp": metrics.pcp, "ap50": metrics.ap.get(50, float("nan")),
            "per_group_mpjpe_mm": metrics.per_group_mpjpe}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequence", type=Path, default=REPO / "data" / "demo")
    parser.add_argument("--output", type=Path, default=REPO / "outputs" / "kpfit" / "demo")
    parser.add_argument("--init", type=Path, default=None, help="default: <sequence>/smpl_init/smpl.npz")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a KeypointFit2DConfig field")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = dataclasses.replace(KeypointFit2DConfig(), **parse_overrides(args.overrides))
    init_path = args.init or args.sequence / "smpl_init" / "smpl.npz"
    cameras = read_cameras(args.sequence)
    init = read_smpl_npz(init_path)
    frames = sorted({int(f) for seq in init.values() for f in seq.frames})
    detections = read_annots_folder(args.sequence / "annots", list(cameras), frames)
    body = BodyModel(dtype=torch.float64)

    started = time.perf_counter()
    fitted = {}
    for pid, seq in init.items():
        if pid not in detections:
            print(f"person {pid}: no 2D detections, keeping the initialisation")
            fitted[pid] = seq
            continue
        index = [frames.index(int(f)) for f in seq.frames]
        fitted[pid] = fit_smpl_to_keypoints2d(body, cameras, detections[pid][:, index], seq, config)
    fit_s = time.perf_counter() - started

    output = args.output / "smpl.npz"
    write_smpl_npz(output, fitted)
    print(f"{args.sequence}: {len(fitted)} people, {len(cameras)} cameras, {len(frames)} frames; "
          f"fit {fit_s:.2f} s -> {output}")
    summary = {"sequence": str(args.sequence), "config": dataclasses.asdict(config), "fit_s": fit_s}
    gt = args.sequence / "smpl_gt" / "smpl.npz"
    if gt.is_file():
        summary["init"] = score(init_path, gt)
        summary["baseline"] = score(output, gt)
        print(f"{'':10s}{'MPJPE mm':>10s}{'PCP %':>8s}{'AP50 %':>8s}   per group MPJPE mm")
        for name in ("init", "baseline"):
            m = summary[name]
            groups = " ".join(f"{g} {v:.1f}" for g, v in m["per_group_mpjpe_mm"].items())
            print(f"{name:10s}{m['mpjpe_mm']:10.1f}{m['pcp']:8.1f}{m['ap50']:8.1f}   {groups}")
    (args.output / "summary.json").write_text(json.dumps(summary, indent=2, default=float))


if __name__ == "__main__":
    main()
