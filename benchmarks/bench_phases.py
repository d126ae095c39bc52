"""Step time of every phase (avatar, pose, pose_body) on a GPU or the CPU: the device path checked
against the CPU, ms per step, and the released schedule extrapolated to a Hi4D-size sequence.

Needs torch, numpy, scipy, opencv and smplx only (no nerfstudio), so it runs on a bare
CUDA image with smplx carried as a wheel. Rays come from one frame of a generated
sequence (`data/demo`, or `--sequence`); per step 70 % of the rays land on the people.

1. CUDA path checks: the same scene rendered on the CPU and on the GPU (same weights,
   same rays, eval mode so the samples are deterministic) agree; an inverse-skinning round
   trip on the GPU; the layered compositor against a float64 per-ray loop on the GPU.
2. Step times, released sizes (16 levels, 2^19 table, 64-wide MLPs, 256 samples per ray
   and person, 5 mm march, 8192 rays per person, 2 people): the avatar step (fields and
   betas, occupancy update every 20 steps), the pose step (pose MLP, translation and
   orientation; fields frozen) and the pose_body step (pose MLP, with the collision loss).
3. The released schedule (avatar 15000, pose 10000, pose_body 5000 steps) from those
   times. The step cost does not depend on the image size or the number of frames (rays
   per step are fixed); per-frame work is the posing of the bodies, which is inside the
   timed step, so an 8-view 470x640 140-frame Hi4D sequence costs the same per step.

    python3 benchmarks/bench_phases.py [--device cuda] [--steps 30] [--field released|small]
    # the lite sizes on the CPU:
    .venv/bin/python benchmarks/bench_phases.py --device cpu --field small --num-samples 32 \
        --min-step 0.01 --rays-per-person 1024 --skip-checks
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from avatarpose_ns.body.body_model import BodyModel  # noqa: E402
from avatarpose_ns.io.easymocap import read_smpl_npz  # noqa: E402
from avatarpose_ns.io.frame_rays import frame_rays  # noqa: E402
from avatarpose_ns.models.avatar_scene import AvatarScene, AvatarSceneConfig  # noqa: E402
from avatarpose_ns.models.canonical_field import CanonicalFieldConfig  # noqa: E402
from avatarpose_ns.models.compositor import composite_layers  # noqa: E402
from avatarpose_ns.models.losses import avatar_losses, pose_losses  # noqa: E402
from avatarpose_ns.models.phases import PHASES  # noqa: E402

RELEASED_STEPS = {"avatar": 15000, "pose": 10000, "pose_body": 5000}


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_scene(sequence: Path, field: CanonicalFieldConfig, num_samples: int, min_step: float,
                prior_steps: int) -> AvatarScene:
    init = read_smpl_npz(sequence / "smpl_init" / "smpl.npz")
    people = {p: {"betas": s.betas, "body_pose": s.body_pose, "global_orient": s.global_orient,
                  "transl": s.transl} for p, s in init.items()}
    config = AvatarSceneConfig(field=field, num_samples=num_samples, min_step=min_step,
                               body_prior_steps=prior_steps)
    return AvatarScene(BodyModel(), people, config)


def check_cuda_path(sequence: Path, device: torch.device, report: dict) -> None:
    """CPU and GPU give the same answers (float32 tolerances)."""
    torch.manual_seed(0)
    scene = build_scene(sequence, CanonicalFieldConfig.small(), 32, 0.01, prior_steps=30)
    scene.fit_fields_to_bodies()  # on the CPU: both copies start from the same fitted fields
    scene.eval()
    origins, directions, _, mask = frame_rays(sequence)
    rays = mask.nonzero()[:, 0][torch.randperm(int(mask.sum()))[:2048]]
    with torch.no_grad():
        cpu = scene.render(origins[rays], directions[rays], frame_position=0).render
        scene.to(device)
        gpu = scene.render(origins[rays].to(device), directions[rays].to(device), frame_position=0).render
    rgb_error = float((cpu.rgb - gpu.rgb.cpu()).abs().max())
    acc_error = float((cpu.accumulation - gpu.accumulation.cpu()).abs().max())
    report["render_cpu_vs_gpu_max_abs"] = {"rgb": rgb_error, "accumulation": acc_error,
                                           "mean_accumulation": float(cpu.accumulation.mean())}
    print(f"render CPU vs GPU, 2048 rays: max |rgb| diff {rgb_error:.2e}, max |acc| diff {acc_error:.2e} "
          f"(mean accumulation {float(cpu.accumulation.mean()):.3f})")

    # inverse skinning round trip on the GPU: canonical vertices -> posed -> canonical
    with torch.no_grad():
        people = scene.pose(0)
        skinned = scene.deformer.inverse(people.vertices[0], people.vertices[0], people.transforms[0],
                                         people.canonical_transforms[0])
    round_trip = float((skinned.points - people.canonical_vertices[0]).norm(dim=-1).max())
    report["inverse_lbs_round_trip_max_m"] = round_trip
    print(f"inverse LBS round trip on {device}: max error {round_trip:.2e} m")

    # compositor vs a float64 per-ray loop (two people, interleaved samples)
    generator = torch.Generator().manual_seed(1)
    r, n = 64, 24
    t = torch.sort(torch.rand(r, 2 * n, generator=generator, dtype=torch.float64), dim=-1).values.view(r, n, 2)
    t = t.permute(0, 2, 1).contiguous()  # (R, L=2, S): the two people interleave along each ray
    deltas = torch.full_like(t, 1.0 / (2 * n))
    density = torch.rand(r, 2, n, generator=generator, dtype=torch.float64) * 20
    rgb = torch.rand(r, 2, n, 3, generator=generator, dtype=torch.float64)
    valid = torch.rand(r, 2, n, generator=generator) > 0.2
    background = torch.ones(3, dtype=torch.float64)
    gpu_out = composite_layers(t.to(device), deltas.to(device), density.to(device), rgb.to(device),
                               valid=valid.to(device), background=background.to(device))
    reference = torch.zeros(r, 3, dtype=torch.float64)
    for ray in range(r):
        keep = valid[ray].reshape(-1)
        order = torch.argsort(t[ray].reshape(-1)[keep])
        d, c, dt = (x[keep][order] for x in (density[ray].reshape(-1), rgb[ray].reshape(-1, 3),
                                              deltas[ray].reshape(-1)))
        transmittance, colour = 1.0, torch.zeros(3, dtype=torch.float64)
        for k in range(len(order)):
            alpha = 1 - torch.exp(-d[k] * dt[k])
            colour += transmittance * alpha * c[k]
            transmittance = transmittance * (1 - alpha)
        reference[ray] = colour + transmittance * background
    comp_error = float((gpu_out.rgb.cpu() - reference).abs().max())
    report["compositor_vs_loop_max_abs"] = comp_error
    print(f"layered compositor on {device} vs float64 per-ray loop: max error {comp_error:.2e}")


def time_phases(sequence: Path, device: torch.device, args: argparse.Namespace, report: dict) -> None:
    field = CanonicalFieldConfig() if args.field == "released" else CanonicalFieldConfig.small()
    torch.manual_seed(0)
    scene = build_scene(sequence, field, args.num_samples, args.min_step, prior_steps=150).to(device)
    synchronise(device)
    started = time.perf_counter()
    scene.fit_fields_to_bodies()
    synchronise(device)
    report["body_prior_s"] = time.perf_counter() - started
    print(f"body prior fit (150 steps per person): {report['body_prior_s']:.1f} s")

    origins, directions, colours, mask = (x.to(device) for x in frame_rays(sequence))
    target = torch.where(mask[:, None], colours, torch.ones_like(colours))
    on_people = mask.nonzero()[:, 0]
    num_rays = args.rays_per_person * scene.num_people
    groups = {"fields": list(scene.fields.parameters()), **scene.smpl.parameter_groups()}
    lrs = {"fields": 1e-2, "body_shape": 1e-5, "pose_mlp": 1e-3, "transl_orient": 1e-5}
    optimizer = torch.optim.Adam([{"params": p, "lr": lrs[n], "name": n} for n, p in groups.items()],
                                 eps=1e-15, betas=(0.9, 0.99))
    scene.train()
    counter = [0]

    def step(phase: str) -> int:
        trainable = PHASES[phase].trainable
        for name, parameters in groups.items():
            for parameter in parameters:
                parameter.requires_grad_(name in trainable)
        inside = int(0.7 * num_rays)
        rays = torch.cat([on_people[torch.randint(len(on_people), (inside,), device=device)],
                          torch.randint(len(mask), (num_rays - inside,), device=device)])
        result = scene.render(origins[rays], directions[rays], frame_position=counter[0] % scene.smpl.num_frames,
                              with_collision=PHASES[phase].collision)
        r = result.render
        if phase == "avatar":
            losses = avatar_losses(r.rgb, target[rays], r.accumulation, mask[rays].float(),
                                   person_accumulation=r.person_accumulation, sample_weights=r.weights,
                                   density_outside=result.empty_density)
        else:
            smpl = scene.smpl
            body_pose = smpl.body_pose_all()
            losses = pose_losses(r.rgb, target[rays], r.accumulation, mask[rays].float(), body_pose=body_pose,
                                 transl=smpl.transl_all(),
                                 smooth_pose=torch.cat([smpl.global_orient_all(), body_pose], dim=-1),
                                 collision_opacities=result.collision_opacities)
        loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        counter[0] += 1
        if phase == "avatar" and counter[0] % 20 == 0:
            scene.update_occupancy(counter[0])
        return int((r.person_ids >= 0).sum())

    if args.profile:
        for _ in range(args.warmup):
            step("avatar")
        activities = [torch.profiler.ProfilerActivity.CPU] + (
            [torch.profiler.ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with torch.profiler.profile(activities=activities) as profile:
            for _ in range(3):
                step("avatar")
            synchronise(device)
        sort_key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        print(profile.key_averages().table(sort_by=sort_key, row_limit=25, max_name_column_width=60))
        if device.type == "cuda":  # a step bound by the host shows here: launches, syncs, Python
            print(profile.key_averages().table(sort_by="self_cpu_time_total", row_limit=15,
                                               max_name_column_width=60))
        with torch.profiler.profile(activities=activities) as profile:
            with torch.profiler.record_function("render"):
                result = scene.render(origins[:num_rays], directions[:num_rays], frame_position=0)
            synchronise(device)
        print(profile.key_averages().table(sort_by="cpu_time_total", row_limit=25, max_name_column_width=60))

    step_ms = {}
    for phase in ("avatar", "pose", "pose_body"):
        for _ in range(args.warmup):
            step(phase)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        synchronise(device)
        started, samples = time.perf_counter(), 0
        for _ in range(args.steps):
            samples += step(phase)
        synchronise(device)
        seconds = time.perf_counter() - started
        step_ms[phase] = seconds / args.steps * 1000
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
        report.setdefault("phases", {})[phase] = {"ms_per_step": step_ms[phase],
                                                  "samples_per_s": samples / seconds,
                                                  "rays_per_s": num_rays * args.steps / seconds,
                                                  "peak_gpu_mb": peak}
        print(f"{phase:<10} {step_ms[phase]:8.1f} ms/step  {samples / seconds:12.0f} samples/s  "
              f"{num_rays * args.steps / seconds:10.0f} rays/s  peak GPU memory {peak:8.0f} MB")
    total_s = sum(RELEASED_STEPS[p] * step_ms[p] / 1000 for p in RELEASED_STEPS) + report["body_prior_s"]
    report["released_schedule_minutes"] = total_s / 60
    print(f"released schedule ({', '.join(f'{p} {n}' for p, n in RELEASED_STEPS.items())} steps) "
          f"+ body prior: {total_s / 60:.1f} min (Hi4D-size sequence: same per-step cost, see docstring)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequence", type=Path, default=REPO / "data" / "demo")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--field", choices=("released", "small"), default="released")
    parser.add_argument("--rays-per-person", type=int, default=8192)
    parser.add_argument("--num-samples", type=int, default=256)
    parser.add_argument("--min-step", type=float, default=0.005)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="print a torch profile of three avatar steps first")
    parser.add_argument("--skip-checks", action="store_true", help="skip the CPU-vs-device checks")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()
    device = torch.device(args.device)

    sequence = args.sequence
    if not (sequence / "smpl_init" / "smpl.npz").is_file():
        from avatarpose_ns.synth.generate import PRESETS, generate_sequence

        sequence = Path(tempfile.mkdtemp()) / "demo"
        print(f"generating the demo sequence in {sequence}")
        generate_sequence(PRESETS["demo"], sequence, progress=False)

    report: dict = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                    "torch": torch.__version__, "args": {k: str(v) for k, v in vars(args).items()}}
    print(f"device: {report['device']}, torch {torch.__version__}")
    if not args.skip_checks:
        check_cuda_path(sequence, device, report)
    time_phases(sequence, device, args, report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
