"""`avatarpose-eval`: compare predicted multi-person 3D poses with ground truth.

    avatarpose-eval --pred X --gt Y [--json OUT] [--body-model-path P] [--body25-regressor R]

X and Y: an AvatarPose smpl.npz, a folder holding smpl.npz (or exactly one
<sub>/smpl.npz), or a folder of EasyMocap keypoints3d <frame:06d>.json files.
"""

from __future__ import annotations

import avatarpose_ns.commands  # noqa: F401  (first: the warning filters, one-line errors)

import json as jsonlib
import math
import dataclasses
import io
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal
from collections.abc import Sequence

import numpy as np
import tyro
from rich.console import Console
from rich.table import Table

from avatarpose_ns.eval.loading import (
    PoseLoadError,
    choose_joint_set,
    load_body25_regressor,
    read_pose_source,
    source_to_joints,
)
from avatarpose_ns.eval.metrics import PoseMetrics, evaluate_sequence


@dataclass
class EvalArgs:
    """Evaluate multi-person 3D poses: MPJPE, PCP, AP@25..150, Recall@500, PCK@50 (mm, %)."""

    pred: Path
    """Predictions: smpl.npz, a folder with smpl.npz, or a keypoints3d folder."""
    gt: Path
    """Ground truth, same choices as --pred."""
    json: Path | None = None
    """Also write the results to this JSON file."""
    body_model_path: Path | None = None
    """SMPL model file or folder for smpl.npz inputs (default: the built-in model)."""
    body25_regressor: Path | None = None
    """J_regressor_body25 (.npy/.npz/.txt, 25 x V): evaluate on AvatarPose's 19-joint skeleton."""
    joint_set: Literal["auto", "smpl24", "avatarpose19"] = "auto"
    """auto: avatarpose19 with a regressor or BODY25/19-joint keypoints, else smpl24."""
    use_confidence: bool = False
    """Rank keypoints3d predictions for AP by their mean joint confidence (default: by error)."""
    common_frames_only: bool = False
    """Evaluate only frames present in both inputs (default: GT frames without predictions are misses)."""
    per_joint: bool = False
    """Also print the per-joint MPJPE table."""
    baseline: Path | None = None
    """Another prediction (e.g. the initialisation) to compare with: adds a baseline-vs-pred table."""


class EvalError(Exception):
    """A user-facing failure of the evaluation command."""


def run_eval(args: EvalArgs, console: Console | None = None) -> PoseMetrics:
    """Load both inputs, evaluate, print the tables and optionally write JSON."""
    console = console or Console()
    try:
        pred_src = read_pose_source(args.pred)
        gt_src = read_pose_source(args.gt)
    except PoseLoadError as err:
        raise EvalError(str(err)) from None

    regressor = None
    if args.body25_regressor is not None:
        try:
            regressor = load_body25_regressor(args.body25_regressor)
        except (OSError, ValueError) as err:
            raise EvalError(str(err)) from None

    try:
        if args.joint_set == "auto":
            joint_set = choose_joint_set([pred_src, gt_src], regressor is not None)
        else:
            joint_set = args.joint_set

        @lru_cache(maxsize=1)
        def body_model():
            from avatarpose_ns.body.body_model import BodyModel

            return BodyModel(model_path=args.body_model_path)

        pred, pred_conf = source_to_joints(pred_src, joint_set, body_model, regressor)
        gt, _ = source_to_joints(gt_src, joint_set, body_model, regressor)
    except PoseLoadError as err:
        raise EvalError(str(err)) from None

    gt_frames = {f for f, people in gt.items() if people}
    pred_frames = {f for f, people in pred.items() if people}
    common = gt_frames & pred_frames
    if not common:
        raise EvalError(
            f"no overlapping frames: {args.pred} has {_frame_range(pred_frames)}, "
            f"{args.gt} has {_frame_range(gt_frames)}"
        )
    if args.common_frames_only:
        gt = {f: gt[f] for f in sorted(common)}
    if not args.use_confidence:
        pred_conf = None
    elif pred_conf is None:
        console.print(f"[yellow]note:[/] {pred_src.path} has no confidences; AP ranks by error")

    try:
        metrics = evaluate_sequence(pred, gt, joint_set=joint_set, pred_conf=pred_conf)
    except ValueError as err:
        raise EvalError(f"{args.pred} vs {args.gt}: {err}") from None

    print_metrics(metrics, console, pred_src.path, gt_src.path, per_joint=args.per_joint)
    if args.json is not None:
        payload = metrics.to_dict()
        payload["pred"] = str(pred_src.path)
        payload["gt"] = str(gt_src.path)
        try:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(jsonlib.dumps(payload, indent=2))
        except OSError as err:
            raise EvalError(f"{args.json}: cannot write JSON ({err})") from None
        console.print(f"wrote {args.json}")
    if args.baseline is not None:
        quiet = Console(file=io.StringIO())
        base = run_eval(dataclasses.replace(args, pred=args.baseline, baseline=None, json=None, per_joint=False), quiet)
        print_comparison(base, metrics, console, str(args.baseline), str(args.pred))
    return metrics


def print_comparison(base: PoseMetrics, pred: PoseMetrics, console: Console, base_name: str, pred_name: str) -> None:
    """One row per input and the ratio: MPJPE, per-group MPJPE, PCP, AP50, AP100, Recall@500."""
    table = Table(title="baseline vs prediction (errors in mm, PCP/AP/recall in %)")
    columns = [("MPJPE", lambda m: m.mpjpe, True)]
    columns += [(g, (lambda g: lambda m: m.per_group_mpjpe.get(g, float("nan")))(g), True)
                for g in pred.per_group_mpjpe]
    columns += [("PCP", lambda m: m.pcp, False), ("AP50", lambda m: m.ap.get(50, float("nan")), False),
                ("AP100", lambda m: m.ap.get(100, float("nan")), False), ("Rec500", lambda m: m.recall500, False)]
    table.add_column("")
    for name, _, _ in columns:
        table.add_column(name, justify="right")
    for label, metrics in (("base", base), ("pred", pred)):
        table.add_row(label, *[_fmt(get(metrics), 1) for _, get, _ in columns])
    ratio = [_fmt(get(pred) / get(base), 3) if is_error and get(base) else "" for _, get, is_error in columns]
    table.add_row("ratio", *ratio)
    table.caption = f"baseline: {base_name}\nprediction: {pred_name}"
    console.print(table)


def _frame_range(frames: set[int]) -> str:
    if not frames:
        return "no frames"
    return f"{len(frames)} frames ({min(frames)}..{max(frames)})"


def _fmt(value: float, digits: int = 2) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def print_metrics(metrics: PoseMetrics, console: Console, pred_path: Path | str = "", gt_path: Path | str = "",
                  per_joint: bool = False) -> None:
    """Rich tables: overall metrics, per-person MPJPE, per-group (and optionally per-joint) MPJPE."""
    overall = Table(title=f"3D pose metrics ({metrics.joint_set})", caption=f"pred: {pred_path}\ngt: {gt_path}")
    overall.add_column("metric")
    overall.add_column("value", justify="right")
    overall.add_row("MPJPE (mm)", _fmt(metrics.mpjpe))
    overall.add_row("PCP3D (%)", _fmt(metrics.pcp))
    for k, v in metrics.ap.items():
        overall.add_row(f"AP@{k} (%)", _fmt(v))
    overall.add_row("Recall@500 (%)", _fmt(metrics.recall500))
    overall.add_row("PCK@50 (%)", _fmt(metrics.pck50))
    overall.add_row("frames / GT persons / predictions / matched",
                    f"{metrics.num_frames} / {metrics.num_gt} / {metrics.num_pred} / {metrics.num_matched}")
    console.print(overall)

    people = Table(title="per person (GT id)")
    for col in ("id", "frames", "matched", "MPJPE (mm)", "PCK@50 (%)", "PCP3D (%)"):
        people.add_column(col, justify="right")
    for pid, p in metrics.per_person.items():
        people.add_row(str(pid), str(p.num_frames), str(p.num_matched), _fmt(p.mpjpe), _fmt(p.pck50), _fmt(p.pcp))
    console.print(people)

    if metrics.per_group_mpjpe:
        groups = Table(title="per joint group")
        groups.add_column("group")
        groups.add_column("MPJPE (mm)", justify="right")
        for name, v in metrics.per_group_mpjpe.items():
            groups.add_row(name, _fmt(v))
        console.print(groups)

    if per_joint:
        joints = Table(title="per joint")
        joints.add_column("joint")
        joints.add_column("MPJPE (mm)", justify="right")
        for name, v in zip(metrics.joint_names, np.asarray(metrics.per_joint_mpjpe)):
            joints.add_row(name, _fmt(float(v)))
        console.print(joints)


def entrypoint(argv: Sequence[str] | None = None) -> None:
    """Console script `avatarpose-eval`."""
    args = tyro.cli(EvalArgs, args=argv)
    try:
        run_eval(args)
    except EvalError as err:
        raise SystemExit(f"avatarpose-eval: error: {err}") from None


if __name__ == "__main__":
    entrypoint()
