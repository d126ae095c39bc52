"""Hash-grid encoding speed: this project's torch path vs nerfstudio's torch HashEncoding.

Times one training step (forward + backward + Adam) on N random points for the
released size (16 levels x 2, table 2^19, base 16, scale 1.5) and the lite size
(`CanonicalFieldConfig.small()`), and prints ms per step, the speed ratio and
the peak resident memory of each case.  Every case runs in its own fresh
process (so the peak RSS is that case's), cases are interleaved over
``--rounds`` rounds so that load from other processes spreads over all of them,
and the reported time is the median over all timed steps.

    python benchmarks/bench_encoding.py                 # 32768 points, 2 rounds x 5 steps
    python benchmarks/bench_encoding.py --threads 1 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

_GRID = dict(features_per_level=2, base_resolution=16, per_level_scale=1.5)
SIZES = {
    "released": dict(num_levels=16, log2_hashmap_size=19, **_GRID),  # CanonicalFieldConfig()
    "lite": dict(num_levels=8, log2_hashmap_size=16, **_GRID),  # CanonicalFieldConfig.small()
    "lite-2^14": dict(num_levels=8, log2_hashmap_size=14, **_GRID),
}
IMPLS = ("ours", "ours+dx", "ours+fused", "nerfstudio")
IMPL_NOTES = {
    "ours": "this project's torch HashGridEncoding",
    "ours+dx": "same, also returning d output / d x (pose optimisation)",
    "ours+fused": "same as ours, with torch.optim.Adam(fused=True)",
    "nerfstudio": "nerfstudio HashEncoding(implementation='torch')",
}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def run_case(size: str, impl: str, points: int, warmup: int, reps: int, threads: int, seed: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    cfg = SIZES[size]
    rss_start = _rss_mb()
    if impl.startswith("ours"):
        repo = Path(__file__).resolve().parents[1]
        sys.path.insert(0, str(repo))
        from avatarpose_ns.models.hash_encoding import HashGridEncoding

        enc = HashGridEncoding(**cfg, implementation="torch")
    else:
        from nerfstudio.field_components.encodings import HashEncoding

        max_res = cfg["base_resolution"] * cfg["per_level_scale"] ** (cfg["num_levels"] - 1)
        enc = HashEncoding(
            num_levels=cfg["num_levels"],
            min_res=cfg["base_resolution"],
            max_res=int(round(max_res)),
            log2_hashmap_size=cfg["log2_hashmap_size"],
            features_per_level=cfg["features_per_level"],
            hash_init_scale=1e-4,
            implementation="torch",
        )
    n_params = sum(p.numel() for p in enc.parameters())
    opt = torch.optim.Adam(
        enc.parameters(), lr=1e-2, betas=(0.9, 0.99), eps=1e-15, fused=True if impl == "ours+fused" else None
    )
    x = torch.rand(points, 3)
    target = torch.randn(points, cfg["num_levels"] * cfg["features_per_level"]) * 1e-4
    with_dx = impl == "ours+dx"

    def step() -> None:
        xi = x.clone().requires_grad_(True) if with_dx else x
        out = enc(xi)
        loss = (out - target).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    times, cpu_times = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    return dict(size=size, impl=impl, times=times, cpu_times=cpu_times, rss_start=rss_start, rss_peak=_rss_mb(),
                n_params=n_params)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=32768)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--reps", type=int, default=5, help="timed steps per case and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", "2")))
    parser.add_argument("--sizes", nargs="+", default=["released", "lite"], choices=sorted(SIZES))
    parser.add_argument("--impls", nargs="+", default=list(IMPLS), choices=IMPLS)
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case, print JSON
    args = parser.parse_args()

    if args.case:
        size, impl = args.case.split(":")
        print(json.dumps(run_case(size, impl, args.points, args.warmup, args.reps, args.threads, seed=0)))
        return

    import torch

    print(
        f"hash-grid encoding, {args.points} points, forward + backward + Adam, torch {torch.__version__}, "
        f"{args.threads} thread(s), {os.cpu_count()} CPU(s), {args.rounds} rounds x {args.reps} steps "
        f"after {args.warmup} warm-up, one fresh process per case and round"
    )
    results: dict = {}
    for _ in range(args.rounds):
        for size in args.sizes:
            for impl in args.impls:
                cmd = [sys.executable, __file__, "--case", f"{size}:{impl}", "--points", str(args.points),
                       "--warmup", str(args.warmup), "--reps", str(args.reps), "--threads", str(args.threads)]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    raise RuntimeError(f"case {size}:{impl} failed:\n{proc.stderr}")
                res = json.loads(proc.stdout.strip().splitlines()[-1])
                entry = results.setdefault(
                    (size, impl), dict(times=[], cpu_times=[], rss_peak=0.0, rss_start=1e9, n_params=0)
                )
                entry["times"] += res["times"]
                entry["cpu_times"] += res["cpu_times"]
                entry["rss_peak"] = max(entry["rss_peak"], res["rss_peak"])
                entry["rss_start"] = min(entry["rss_start"], res["rss_start"])
                entry["n_params"] = res["n_params"]

    header = (
        f"{'size':9s} {'implementation':14s} {'params':>9s} {'median ms':>10s} {'min ms':>8s} {'ratio':>7s} "
        f"{'CPU ms':>8s} {'CPU ratio':>9s} {'peak RSS MB':>11s} {'+ over import':>13s}"
    )
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        base = results.get((size, "nerfstudio"))
        base_ms = statistics.median(base["times"]) * 1e3 if base else None
        base_cpu = statistics.median(base["cpu_times"]) * 1e3 if base else None
        for impl in args.impls:
            r = results[(size, impl)]
            med = statistics.median(r["times"]) * 1e3
            cpu = statistics.median(r["cpu_times"]) * 1e3
            ratio = f"{base_ms / med:6.2f}x" if base_ms else "-"
            cpu_ratio = f"{base_cpu / cpu:6.2f}x" if base_cpu else "-"
            print(
                f"{size:9s} {impl:14s} {r['n_params']:9d} {med:10.1f} {min(r['times']) * 1e3:8.1f} {ratio:>7s} "
                f"{cpu:8.1f} {cpu_ratio:>9s} {r['rss_peak']:11.0f} {r['rss_peak'] - r['rss_start']:13.0f}"
            )
    print("ms: wall-clock per step (median over all timed steps); ratio = nerfstudio / this row, same size.")
    print("CPU ms: process CPU time per step, all threads (with --threads > 1 it includes threads spin-waiting).")
    for impl in args.impls:
        print(f"  {impl:11s} {IMPL_NOTES[impl]}")
    print("Optimiser: Adam(lr=1e-2, betas=(0.9, 0.99), eps=1e-15) unless noted; loss: MSE to random targets.")


if __name__ == "__main__":
    main()
