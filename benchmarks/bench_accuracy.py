"""Pose accuracy on generated sequences: the initialisation, baselines, the method and its ablations.

For every sequence (generated into `data/bench/<name>` when missing) and configuration, this
trains `avatarpose-lite` with `ns-train` (the default configuration, untouched, plus the
configuration's flags), exports the poses, scores them against the ground truth with the
project's metrics (the same as `avatarpose-eval`) and measures the interpenetration of the
posed SMPL meshes. Each run's figures go to `outputs/bench/<sequence>/<config>/result.json`;
runs with a result are skipped, so an interrupted benchmark resumes where it stopped. The
table at the end is built from every result on disk.

    .venv/bin/python benchmarks/bench_accuracy.py                       # all sequences, "ours"
    .venv/bin/python benchmarks/bench_accuracy.py --sequences demo-realistic --configs init silhouette-fit ours
    .venv/bin/python benchmarks/bench_accuracy.py --configs ours no-rgb no-mask no-collision joint
    .venv/bin/python benchmarks/bench_accuracy.py --sequences demo dance-3people --table-only

Every sequence has a realistic twin, `<name>-realistic`: the same seed and motion with loose
clothes (`--clothing loose`) and segmenter-like masks (`--mask-errors realistic`).

"shape only" is the error the estimate's betas keep under the exact pose (ground-truth angles
and root, pelvis aligned; `avatarpose_ns.eval.shape_error`): what pose refinement cannot
remove.  `--rescore` recomputes the metrics of finished runs from their stored estimates and starts
no new run.

Wall times are those of `ns-train` alone (set-up and export excluded); peak memory is the
largest resident set of any child process so far (ru_maxrss of the children).
The first trained configuration of a sequence fits to the masks within its `ns-train` time; the
others, and the fit-alone row, reuse that fit from the dataparser's cache (the table's minutes say
"fit cached").
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
BIN = Path(sys.executable).parent

SEQUENCES: dict[str, list[str]] = {
    # name: avatarpose-synth flags. All demo-sized (8 frames, 256 px) except "bench".
    "demo": ["--preset", "demo"],
    "handshake-seed1": ["--preset", "demo", "--seed", "1", "--interaction", "handshake"],
    "dance-3people": ["--preset", "demo", "--seed", "2", "--interaction", "dance", "--num-people", "3"],
    "walk-4cams": ["--preset", "demo", "--seed", "3", "--interaction", "shoulder_walk", "--num-cameras", "4"],
    "hug-8cams": ["--preset", "demo", "--seed", "4", "--interaction", "hug", "--num-cameras", "8"],
    "bench": ["--preset", "bench"],
}
REALISTIC_FLAGS = ["--clothing", "loose", "--mask-errors", "realistic"]
"""the realistic test bed: loose clothes (silhouettes larger than the SMPL body) and segmenter-like masks"""
SEQUENCES.update({f"{name}-realistic": [*flags, *REALISTIC_FLAGS] for name, flags in list(SEQUENCES.items())})
CLEAN_SEQUENCES = ("demo", "handshake-seed1", "dance-3people", "walk-4cams", "hug-8cams")
DEFAULT_SEQUENCES = (*CLEAN_SEQUENCES, *(f"{name}-realistic" for name in CLEAN_SEQUENCES))

CONFIGS: dict[str, list[str]] = {
    # name: extra ns-train flags on top of avatarpose-lite's defaults
    "ours": [],
    "no-rgb": ["--pipeline.model.pose-loss-weights.rgb", "0"],
    "no-mask": ["--pipeline.model.pose-loss-weights.mask", "0"],
    "no-collision": ["--pipeline.model.pose-loss-weights.collision", "0"],
    "joint": ["--pipeline.joint-optimisation", "True"],
    "no-silhouette-fit": [],
}
DATAPARSER_FLAGS: dict[str, list[str]] = {
    # name: flags after the dataparser subcommand
    "no-silhouette-fit": ["--silhouette-fit", "False"],
}
BASELINES = ("init", "keypoint-fit", "silhouette-fit")


def run(command: list[str], log: Path) -> float:
    """Run a command with its output in `log`; seconds taken. Raises with the log's tail on failure."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with log.open("w") as handle:
        code = subprocess.call(command, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO)
    if code != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-30:])
        raise RuntimeError(f"{' '.join(command)} failed ({code}); end of {log}:\n{tail}")
    return time.perf_counter() - started


def ensure_sequence(name: str, data_root: Path) -> Path:
    path = data_root / name
    if not (path / "meta.json").is_file():
        print(f"[{name}] generating {path}", flush=True)
        run([str(BIN / "avatarpose-synth"), *SEQUENCES[name], "--output-dir", str(path)], path.parent / f"{name}.synth.log")
    return path


def score(pred: Path, sequence: Path) -> dict:
    """Pose metrics and interpenetration of an smpl.npz against the sequence's ground truth."""
    from avatarpose_ns.body.body_model import BodyModel
    from avatarpose_ns.eval.interpenetration import smpl_interpenetration
    from avatarpose_ns.eval.loading import read_pose_source, source_to_joints
    from avatarpose_ns.eval.metrics import evaluate_sequence
    from avatarpose_ns.eval.shape_error import shape_only_error
    from avatarpose_ns.io.easymocap import read_smpl_npz

    body = BodyModel()
    pred_joints, _ = source_to_joints(read_pose_source(pred), "smpl24", lambda: body)
    gt_joints, _ = source_to_joints(read_pose_source(sequence / "smpl_gt" / "smpl.npz"), "smpl24", lambda: body)
    metrics = evaluate_sequence(pred_joints, gt_joints, joint_set="smpl24").to_dict()
    metrics["interpenetration"] = smpl_interpenetration(body, read_smpl_npz(pred))
    metrics["shape_only_error_m"] = shape_only_error(body, read_smpl_npz(pred),
                                                     read_smpl_npz(sequence / "smpl_gt" / "smpl.npz"))["mean"]
    return metrics


def cached_fits(sequence: Path) -> set[Path]:
    """The dataparser's cached silhouette fits of a sequence: a run that adds one has fitted."""
    from avatarpose_ns.dataparsers.undistort_cache import default_cache_dir

    fits = default_cache_dir(sequence) / "silhouette_fit"
    return set(fits.glob("*.npz")) if fits.is_dir() else set()


def silhouette_fit(sequence: Path, out: Path) -> bool:
    """The initialisation refined to every camera's masks alone (`fitting.silhouette_fit`, default
    settings): the step the dataparser runs before training, without the avatars. It shares the
    dataparser's fit cache, so after a run of the method on the same code it is the very fit that run
    started from; returns whether it came from that cache (then its time is not the fit's)."""
    from avatarpose_ns.body.body_model import BodyModel
    from avatarpose_ns.dataparsers.easymocap_dataparser import EasyMocapDataParserConfig
    from avatarpose_ns.dataparsers.silhouette_init import refine_init_with_silhouettes
    from avatarpose_ns.dataparsers.undistort_cache import default_cache_dir
    from avatarpose_ns.io.easymocap import write_smpl_npz

    parser = EasyMocapDataParserConfig(data=sequence, silhouette_fit=False).setup()
    body = BodyModel()
    cache_dir = default_cache_dir(sequence)
    seq = parser.read_sequence(body, cache_dir)
    before = cached_fits(sequence)
    write_smpl_npz(out / "smpl.npz", refine_init_with_silhouettes(seq, list(seq.cameras), body,
                                                                  parser.config.silhouette, cache_dir))
    return not (cached_fits(sequence) - before)


def keypoint_fit(sequence: Path, out: Path) -> Path | None:
    """The SMPL-fitted-to-2D-keypoints baseline, when the project has it."""
    script = REPO / "benchmarks" / "baseline_keypoint_fit.py"
    if not script.is_file():
        return None
    run([sys.executable, str(script), "--sequence", str(sequence), "--output", str(out)], out / "fit.log")
    return out / "smpl.npz"


def train(sequence: Path, config: str, out: Path, extra_flags: list[str],
          extra_dataparser_flags: list[str] = ()) -> dict:
    """ns-train avatarpose-lite + export; returns timing and whether the run fitted to the masks itself
    (not when an earlier run of the same fit left it in the cache)."""
    before = cached_fits(sequence)
    seconds = run([str(BIN / "ns-train"), "avatarpose-lite", "--data", str(sequence), "--output-dir", str(out),
                   "--timestamp", "run", "--vis", "tensorboard", "--steps-per-eval-image", "1000000",
                   "--steps-per-eval-batch", "1000000", "--steps-per-eval-all-images", "1000000",
                   *CONFIGS[config], *extra_flags, "easymocap-data", *DATAPARSER_FLAGS.get(config, []),
                   *extra_dataparser_flags], out / "train.log")
    config_path = next(out.glob("*/avatarpose-lite/run/config.yml"))
    run([str(BIN / "avatarpose-export"), "poses", "--load-config", str(config_path), "--output-dir", str(out / "export")],
        out / "export.log")
    return {"train_s": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            "fit_in_run": bool(cached_fits(sequence) - before)}


def prediction_path(sequence: Path, config: str, out: Path) -> Path:
    """Where a configuration's estimate (smpl.npz) is."""
    if config == "init":
        return sequence / "smpl_init" / "smpl.npz"
    if config in ("keypoint-fit", "silhouette-fit"):
        return out / "smpl.npz"
    return out / "export" / "smpl.npz"


def run_one(sequence_name: str, config: str, data_root: Path, out_root: Path,
            extra_flags: tuple[str, ...] = (), rescore: bool = False,
            extra_dataparser_flags: tuple[str, ...] = ()) -> dict | None:
    out = out_root / sequence_name / config
    result_path = out / "result.json"
    if result_path.is_file():
        result = json.loads(result_path.read_text())
        if rescore:  # metrics again from the stored estimate (e.g. after a metric was added)
            sequence = data_root / sequence_name
            pred = prediction_path(sequence, config, out)
            if not pred.is_file():
                print(f"[{sequence_name}] {config}: {pred} is gone, kept the stored metrics")
                return result
            result["metrics"] = score(pred, sequence)
            result_path.write_text(json.dumps(result, indent=2))
        return result
    if rescore:  # rescoring starts no new run
        return None
    sequence = ensure_sequence(sequence_name, data_root)
    print(f"[{sequence_name}] {config} ...", flush=True)
    extra: dict = {}
    if config == "keypoint-fit":
        started = time.perf_counter()
        if keypoint_fit(sequence, out) is None:
            print(f"[{sequence_name}] keypoint-fit: benchmarks/baseline_keypoint_fit.py missing, skipped")
            return None
        extra["fit_s"] = time.perf_counter() - started
    elif config == "silhouette-fit":
        started = time.perf_counter()
        if silhouette_fit(sequence, out):
            extra["fit_cached"] = True  # the fit of an earlier method run: its minutes are in that run's
        else:
            extra["fit_s"] = time.perf_counter() - started
    elif config != "init":
        extra = train(sequence, config, out, list(extra_flags), list(extra_dataparser_flags))
    pred = prediction_path(sequence, config, out)
    result = {"sequence": sequence_name, "config": config, **extra, "metrics": score(pred, sequence)}
    out.mkdir(parents=True, exist_ok=True)
    result_path.write_text(json.dumps(result, indent=2))
    m = result["metrics"]
    print(f"[{sequence_name}] {config}: MPJPE {m['mpjpe']:.1f} mm, PCP {m['pcp']:.1f}, AP50 {m['ap']['50']:.1f}"
          + (f", {extra['train_s'] / 60:.1f} min" if "train_s" in extra else ""), flush=True)
    return result


def print_table(out_root: Path, sequences: list[str], configs: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="pose accuracy (smpl24 joints; mm, %)")
    for column in ("sequence", "config", "MPJPE", "x init", "x kp fit", "PCP", "AP50", "AP100", "Recall@500", "arms",
                   "hands", "shape only", "interpen. mean/max mm", "train min"):
        table.add_column(column, justify="left" if column in ("sequence", "config") else "right")
    for sequence in sequences:
        init_mpjpe = keypoint_fit_mpjpe = None
        for config in configs:
            path = out_root / sequence / config / "result.json"
            if not path.is_file():
                continue
            result = json.loads(path.read_text())
            m = result["metrics"]
            if config == "init":
                init_mpjpe = m["mpjpe"]
            if config == "keypoint-fit":
                keypoint_fit_mpjpe = m["mpjpe"]
            ratio = f"{m['mpjpe'] / init_mpjpe:.2f}" if init_mpjpe else ""
            kp_ratio = f"{m['mpjpe'] / keypoint_fit_mpjpe:.2f}" if keypoint_fit_mpjpe else ""
            minutes = f"{result['train_s'] / 60:.1f}" if "train_s" in result else ""
            if result.get("fit_in_run") is False and config not in DATAPARSER_FLAGS:
                minutes += " (fit cached)"
            pen = m["interpenetration"]
            table.add_row(sequence, config, f"{m['mpjpe']:.1f}", ratio, kp_ratio, f"{m['pcp']:.1f}", f"{m['ap']['50']:.1f}",
                          f"{m['ap']['100']:.1f}", f"{m['recall500']:.1f}", f"{m['per_group_mpjpe']['arms']:.1f}",
                          f"{m['per_group_mpjpe']['hands']:.1f}",
                          f"{m['shape_only_error_m'] * 1000:.1f}" if "shape_only_error_m" in m else "",
                          f"{pen['mean_vertex_depth_m'] * 1000:.2f}/{pen['max_depth_m'] * 1000:.0f}", minutes)
    Console(width=160).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", nargs="+", default=list(DEFAULT_SEQUENCES), choices=list(SEQUENCES))
    parser.add_argument("--configs", nargs="+", default=["init", "keypoint-fit", "ours"],
                        choices=[*BASELINES, *CONFIGS])
    parser.add_argument("--data-root", type=Path, default=REPO / "data" / "bench")
    parser.add_argument("--out-root", type=Path, default=REPO / "outputs" / "bench")
    parser.add_argument("--extra-flags", default="",
                        help="ns-train flags added to every trained configuration, e.g. to try a setting "
                             "(use with its own --out-root)")
    parser.add_argument("--extra-dataparser-flags", default="",
                        help="easymocap-data flags added to every trained configuration")
    parser.add_argument("--table-only", action="store_true", help="print the table of the results on disk")
    parser.add_argument("--rescore", action="store_true",
                        help="recompute the metrics of finished runs from their stored estimates (starts no new run)")
    args = parser.parse_args()
    if not args.table_only:
        # one configuration over every sequence before the next; trained ones first, so that the first
        # of them fits to the masks within its ns-train time and the others (and the fit-alone row)
        # reuse that fit from the dataparser's cache
        for config in sorted(args.configs, key=lambda c: c in BASELINES):
            for sequence in args.sequences:
                run_one(sequence, config, args.data_root, args.out_root, tuple(shlex.split(args.extra_flags)),
                        rescore=args.rescore,
                        extra_dataparser_flags=tuple(shlex.split(args.extra_dataparser_flags)))
    print_table(args.out_root, args.sequences, [c for c in (*BASELINES, *CONFIGS) if c in args.configs])


if __name__ == "__main__":
    main()
