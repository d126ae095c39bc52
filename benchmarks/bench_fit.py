"""Time and accuracy of the silhouette fit, stage by stage, on two generated sequences.

The fit (`fitting.silhouette_fit.fit_shape_to_silhouettes`) runs in two stages: the initial fit
(betas, poses and the clothing layer, `iterations` Adam steps) and the hypotheses (limb swaps,
leg exchange, restart from the neighbours, `swap_iterations` steps). This times both from one run
and scores the initialisation, the initial fit and the final result against the ground truth with
`benchmarks/bench_accuracy.py`'s scoring (MPJPE, shape-only error).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_fit.py                      # demo, dance-3people
    .venv/bin/python benchmarks/bench_fit.py --iterations 600 --swap-iterations 100  # the default schedule

Sequences are generated into data/bench/<name> when missing. The steps default to a quarter of
the fit's defaults so that a run on two CPU cores stays near ten minutes.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_accuracy import ensure_sequence, score  # noqa: E402


def fit_in_stages(sequence: Path, iterations: int, swap_iterations: int) -> dict:
    """Run the dataparser's silhouette fit on all cameras; seconds and scores per stage."""
    import torch

    from avatarpose_ns.body.body_model import BodyModel
    from avatarpose_ns.dataparsers import silhouette_init
    from avatarpose_ns.dataparsers.easymocap_dataparser import EasyMocapDataParserConfig
    from avatarpose_ns.fitting import silhouette_fit
    from avatarpose_ns.io.easymocap import SmplSequence, write_smpl_npz

    parser = EasyMocapDataParserConfig(data=sequence, silhouette_fit=False).setup()
    body = BodyModel()
    seq = parser.read_sequence(body, None)
    cameras = list(seq.cameras)
    masks, _ = silhouette_init.union_masks(seq, cameras)
    people_masks, _ = silhouette_init.person_masks(seq, cameras)
    config = dataclasses.replace(parser.config.silhouette, iterations=iterations, swap_iterations=swap_iterations)
    stages: dict = {}
    original = silhouette_fit._try_hypotheses

    def timed_hypotheses(body_model, evidence, params, config, description):
        stages["initial_fit_s"] = time.perf_counter() - started
        stages["initial_params"] = {name: value.clone() for name, value in params.items()}
        began = time.perf_counter()
        result = original(body_model, evidence, params, config, description)
        stages["hypotheses_s"] = time.perf_counter() - began
        return result

    silhouette_fit._try_hypotheses = timed_hypotheses
    try:
        started = time.perf_counter()
        final = silhouette_fit.fit_shape_to_silhouettes(body, [seq.cameras[c] for c in cameras], masks, seq.init,
                                                        config, person_masks=people_masks)
        total = time.perf_counter() - started
    finally:
        silhouette_fit._try_hypotheses = original
    people = sorted(seq.init)
    initial = {name: value.cpu().double().numpy() for name, value in stages.pop("initial_params").items()}
    initial_fit = {p: SmplSequence(betas=initial["betas"][i, 0], body_pose=initial["body_pose"][i],
                                   global_orient=initial["global_orient"][i], transl=initial["transl"][i],
                                   frames=seq.init[p].frames.copy()) for i, p in enumerate(people)}
    row = {"cameras": len(cameras), "frames": masks.shape[1], "people": len(people),
           "image": f"{masks.shape[3]}x{masks.shape[2]}", "total_s": total, **stages, "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as folder:
        for stage, poses in (("init", seq.init), ("initial fit", initial_fit), ("final", final)):
            path = Path(folder) / f"{stage}.npz"
            write_smpl_npz(path, poses)
            metrics = score(path, sequence)
            row[stage] = {"mpjpe_mm": metrics["mpjpe"],  # millimetres already
                          "shape_only_mm": 1000 * metrics["shape_only_error_m"]}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", nargs="+", default=["demo", "dance-3people"])
    parser.add_argument("--data-root", type=Path, default=Path("data/bench"))
    parser.add_argument("--iterations", type=int, default=150)
    parser.add_argument("--swap-iterations", type=int, default=25)
    args = parser.parse_args()
    print(f"torch threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; "
          f"iterations {args.iterations}, swap iterations {args.swap_iterations}")
    print("| sequence | cameras x frames x people, image | initial fit min | hypotheses min | total min "
          "| MPJPE mm: init / initial fit / final | shape-only mm: init / final |")
    print("|---|---|---|---|---|---|---|")
    for name in args.sequences:
        row = fit_in_stages(ensure_sequence(name, args.data_root), args.iterations, args.swap_iterations)
        print(f"| {name} | {row['cameras']} x {row['frames']} x {row['people']}, {row['image']} "
              f"| {row['initial_fit_s'] / 60:.2f} | {row.get('hypotheses_s', 0) / 60:.2f} | {row['total_s'] / 60:.2f} "
              f"| {row['init']['mpjpe_mm']:.1f} / {row['initial fit']['mpjpe_mm']:.1f} / {row['final']['mpjpe_mm']:.1f} "
              f"| {row['init']['shape_only_mm']:.1f} / {row['final']['shape_only_mm']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
