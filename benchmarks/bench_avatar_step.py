"""Avatar-phase training step on the CPU: ms per step, samples per second, peak memory.

Two people, `--rays-per-person` rays each (default 1024), the lite field and
sampler (`avatarpose-lite`), rays from one frame of a generated sequence: 70 %
on the people, the rest anywhere. The step is timed twice: at the start (the
occupancy grid still marks every cell occupied) and after `--warm-steps` steps
with occupancy updates every 20 steps (the regime of most of a run). Last,
the hash-grid encoding alone against nerfstudio's torch HashEncoding at the
lite size (see bench_encoding.py for the full comparison).

    .venv/bin/python benchmarks/bench_avatar_step.py [--sequence data/demo] [--threads 2]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from avatarpose_ns.body.body_model import BodyModel  # noqa: E402
from avatarpose_ns.io.frame_rays import frame_rays  # noqa: E402
from avatarpose_ns.io.easymocap import read_smpl_npz  # noqa: E402
from avatarpose_ns.models.avatar_scene import AvatarScene, AvatarSceneConfig  # noqa: E402
from avatarpose_ns.models.canonical_field import CanonicalFieldConfig  # noqa: E402
from avatarpose_ns.models.losses import avatar_losses  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequence", type=Path, default=REPO / "data" / "demo")
    parser.add_argument("--rays-per-person", type=int, default=1024)
    parser.add_argument("--num-samples", type=int, default=32)
    parser.add_argument("--warm-steps", type=int, default=200)
    parser.add_argument("--timed-steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    sequence = args.sequence
    if not (sequence / "smpl_init" / "smpl.npz").is_file():
        from avatarpose_ns.synth.generate import PRESETS, generate_sequence

        sequence = Path(tempfile.mkdtemp()) / "demo"
        print(f"generating the demo sequence in {sequence}")
        generate_sequence(PRESETS["demo"], sequence, progress=False)

    init = read_smpl_npz(sequence / "smpl_init" / "smpl.npz")
    people = {p: {"betas": s.betas, "body_pose": s.body_pose, "global_orient": s.global_orient, "transl": s.transl}
              for p, s in init.items()}
    scene = AvatarScene(BodyModel(), people, AvatarSceneConfig(field=CanonicalFieldConfig.small(),
                                                               num_samples=args.num_samples, min_step=0.01))
    scene.smpl.set_pose_trainable(False)
    scene.train()
    origins, directions, colours, mask = frame_rays(sequence)
    target = torch.where(mask[:, None], colours, torch.ones_like(colours))
    on_people = mask.nonzero()[:, 0]
    num_rays = args.rays_per_person * len(people)
    optimizer = torch.optim.Adam(scene.fields.parameters(), lr=1e-2, eps=1e-15, betas=(0.9, 0.99))

    def step(index: int) -> int:
        inside = int(0.7 * num_rays)
        rays = torch.cat([on_people[torch.randint(len(on_people), (inside,))],
                          torch.randint(len(mask), (num_rays - inside,))])
        result = scene.render(origins[rays], directions[rays], frame_position=0)
        r = result.render
        loss = sum(avatar_losses(r.rgb, target[rays], r.accumulation, mask[rays].float(),
                                 person_accumulation=r.person_accumulation, sample_weights=r.weights,
                                 density_outside=result.empty_density).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if index % 20 == 0:
            scene.update_occupancy(index)
        return int((r.person_ids >= 0).sum())

    def timed(first: int) -> tuple[float, float]:
        samples, started = 0, time.perf_counter()
        for i in range(args.timed_steps):
            samples += step(first + i)
        seconds = time.perf_counter() - started
        return seconds / args.timed_steps * 1000, samples / seconds

    for i in range(3):
        step(1 + i)  # warm-up, no occupancy update
    cold_ms, cold_rate = timed(1001)
    for i in range(args.warm_steps):
        step(i)
    warm_ms, warm_rate = timed(args.warm_steps + 1)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"\navatar step: 2 people x {args.rays_per_person} rays, {args.num_samples} samples per ray and person, "
          f"lite field, {args.threads} threads")
    print(f"{'phase':<36}{'ms/step':>10}{'samples/s':>14}")
    print(f"{'start (grid all occupied)':<36}{cold_ms:>10.0f}{cold_rate:>14.0f}")
    print(f"{f'after {args.warm_steps} steps (grid pruned)':<36}{warm_ms:>10.0f}{warm_rate:>14.0f}")
    print(f"occupied cells: {[round(float(x), 3) for x in scene.occupancy.occupied_fraction()]}")
    print(f"peak resident memory: {peak_mb:.0f} MB")

    from bench_encoding import run_case

    print("\nhash-grid encoding alone, lite size, 32768 points, forward + backward + Adam:")
    ours = run_case("lite", "ours", 32768, 2, 5, args.threads, 0)
    theirs = run_case("lite", "nerfstudio", 32768, 2, 5, args.threads, 0)
    ours_ms = float(np.median(ours["times"])) * 1000
    theirs_ms = float(np.median(theirs["times"])) * 1000
    print(f"  this project {ours_ms:.0f} ms, nerfstudio HashEncoding {theirs_ms:.0f} ms, ratio {theirs_ms / ours_ms:.2f}x")


if __name__ == "__main__":
    main()
