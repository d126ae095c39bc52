"""Nearest-vertex search of the skinning deformer: brute force ("cdist") vs "grid" vs cKDTree ("kdtree").

Queries N points around one posed body of the built-in model (V = 14116): a fraction
within ~3 cm of the surface (as the shell-sampled ray samples of training), the rest
uniform in the body's box grown by 10 cm (mostly farther than max_dist = 5 cm, hence
invalid). One timed call includes the grid's build, as the deformer rebuilds it for
every posed body. Prints the minimum over --repeats calls in ms, the grid's build
alone, its size (rows, longest candidate list K, mean list length), and whether the
methods agree (indices equal except for float ties, identical validity).

    python benchmarks/bench_nearest_vertex.py                       # CPU, N = 65536 and 1M
    python benchmarks/bench_nearest_vertex.py --device cuda --sizes 65536 1048576 4194304
    python benchmarks/bench_nearest_vertex.py --cell-sizes 0.03 0.04 0.05 --methods grid
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from avatarpose_ns.body.body_model import BodyModel  # noqa: E402
from avatarpose_ns.models.deformer import MAX_DIST  # noqa: E402
from avatarpose_ns.models.nearest_vertex import (  # noqa: E402
    GRID_CELL_SIZE,
    build_vertex_grid,
    nearest_vertex_index,
)


def posed_body(seed: int = 0) -> torch.Tensor:
    """Vertices (V, 3) of one randomly posed and shaped body, metres, 2.5 m in front of the origin."""
    g = torch.Generator().manual_seed(seed)
    out = BodyModel()(betas=torch.randn(1, 10, generator=g) * 0.5, body_pose=torch.randn(1, 69, generator=g) * 0.3,
                      global_orient=torch.randn(1, 3, generator=g) * 0.4, transl=torch.tensor([[0.7, 0.1, 2.5]]))
    return out.vertices[0].detach()


def query_points(vertices: torch.Tensor, num_points: int, near_fraction: float, seed: int = 1) -> torch.Tensor:
    """(N, 3): near_fraction of them vertices plus N(0, 2 cm) noise, the rest uniform in the padded box."""
    g = torch.Generator().manual_seed(seed)
    num_near = int(num_points * near_fraction)
    pick = torch.randint(vertices.shape[0], (num_near,), generator=g)
    near = vertices[pick] + torch.randn(num_near, 3, generator=g) * 0.02
    lo, hi = vertices.amin(0) - 0.1, vertices.amax(0) + 0.1
    boxed = lo + torch.rand(num_points - num_near, 3, generator=g) * (hi - lo)
    return torch.cat([near, boxed])


def timed(fn, device: torch.device, repeats: int) -> tuple[float, torch.Tensor]:
    """Minimum wall time in ms over `repeats` calls after one warm-up call, and the last result."""
    result = fn()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        result = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, (time.perf_counter() - start) * 1e3)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[65536, 1048576])
    parser.add_argument("--methods", nargs="+", default=["cdist", "grid", "kdtree"],
                        choices=("cdist", "grid", "kdtree"))
    parser.add_argument("--cell-sizes", type=float, nargs="+", default=[GRID_CELL_SIZE])
    parser.add_argument("--near-fraction", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (and cKDTree workers)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    workers = args.threads or -1
    vertices = posed_body().to(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"device: {name}, torch {torch.__version__}, V = {vertices.shape[0]}, max_dist = {MAX_DIST} m, "
          f"near fraction {args.near_fraction}")
    for cell_size in args.cell_sizes:
        build_ms, grid = timed(lambda: build_vertex_grid(vertices, MAX_DIST, cell_size), device, args.repeats)
        lists = grid.count[:-1].float()
        print(f"grid cell {cell_size} m: build {build_ms:.1f} ms, {int(grid.dims.prod())} cells, "
              f"{lists.shape[0]} with candidates, K = {grid.coords.shape[1]}, mean list {float(lists.mean()):.0f}")
    for num_points in args.sizes:
        points = query_points(vertices.cpu(), num_points, args.near_fraction).to(device)
        results = {}
        for method in args.methods:
            for cell_size in args.cell_sizes if method == "grid" else [None]:
                label = method if cell_size is None else f"grid {cell_size}"
                ms, index = timed(lambda: nearest_vertex_index(points, vertices, MAX_DIST, method=method,
                                                               workers=workers, cell_size=cell_size),
                                  device, args.repeats)
                results[label] = index
                print(f"N = {num_points:8d}  {label:<10} {ms:10.1f} ms  {ms * 1e6 / num_points:8.1f} ns/point  "
                      f"valid {float((index >= 0).float().mean()):.3f}")
        reference = next(iter(results.values()))
        for label, index in results.items():
            print(f"    {label} vs {next(iter(results))}: indices differ at {int((index != reference).sum())} "
                  f"points, validity at {int(((index >= 0) != (reference >= 0)).sum())}")


if __name__ == "__main__":
    main()
