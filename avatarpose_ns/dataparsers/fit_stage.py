"""The silhouette fit as a named stage: what it is, how long it will take, and where its result is cached.

The fit runs once per sequence before nerfstudio's first step (minutes on a CPU), so nerfstudio's ETA
cannot account for it; a rerun finds it cached and takes seconds. Both are said here, in words.

The estimate counts Adam steps over person-frame-camera triples: the main fit takes
``iterations`` steps over every triple, the hypotheses stage ``swap_iterations`` steps over
``HYPOTHESES`` copies of every frame. `SECONDS_PER_UNIT` is one step over one triple, measured on
one CPU thread with the default settings (2 people x 4 frames x 4 cameras: 188 s of CPU time); a GPU is faster.
Kept out of `fitting/`, whose sources key the fit's cache: retuning the estimate keeps old fits valid.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from nerfstudio.utils.rich_utils import CONSOLE

from avatarpose_ns.fitting.silhouette_fit import SilhouetteFitConfig

HYPOTHESES = 4  # legs mirrored, arms mirrored, legs exchanged, restart from the neighbours
SECONDS_PER_UNIT = 4.5e-3  # one Adam step over one person x frame x camera, 1 thread (OMP_NUM_THREADS=1), vertex_stride 8
CLOTHING_LAYER_FACTOR = 1.3  # the layer's normals and smoothness term


def fit_units(people: int, frames: int, cameras: int, config: SilhouetteFitConfig) -> float:
    """Adam steps x people x frames x cameras that the fit will take (the hypotheses count once per copy)."""
    steps = config.iterations + HYPOTHESES * max(config.swap_iterations, 0)
    factor = CLOTHING_LAYER_FACTOR if config.clothing_layer else 1.0
    return float(people * frames * cameras * steps * factor * 8 / max(config.vertex_stride, 1))


def estimate_seconds(people: int, frames: int, cameras: int, config: SilhouetteFitConfig) -> float:
    """Rough wall time of the fit on two CPU cores."""
    return SECONDS_PER_UNIT * fit_units(people, frames, cameras, config)


def format_duration(seconds: float) -> str:
    """12 s, 3.5 min, 1.2 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass
class FitStage:
    """Announces the fit before it starts and reports its time after (a context manager)."""

    people: int
    frames: int
    cameras: int
    config: SilhouetteFitConfig
    cache_file: Path | None
    started: float = 0.0

    @property
    def estimate_s(self) -> float:
        return estimate_seconds(self.people, self.frames, self.cameras, self.config)

    def announce(self) -> str:
        swaps = f" + {HYPOTHESES} hypotheses x {self.config.swap_iterations}" if self.config.swap_iterations > 0 else ""
        where = f"; cached in {self.cache_file}" if self.cache_file is not None else " (no cache)"
        return (f"silhouette fit (one-off, before training): {self.people} people x {self.frames} frames x "
                f"{self.cameras} cameras, {self.config.iterations}{swaps} steps; about "
                f"{format_duration(self.estimate_s)} on one CPU thread{where}")

    def __enter__(self) -> FitStage:
        CONSOLE.print(f"[bold]{self.announce()}")
        self.started = time.perf_counter()
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            CONSOLE.print(f"[bold]silhouette fit done in {format_duration(self.elapsed_s)} "
                          f"(estimated {format_duration(self.estimate_s)})")

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started


def announce_cached(cache_file: Path) -> None:
    CONSOLE.print(f"[bold]silhouette fit: using the cached fit {cache_file} (delete it to fit again)")
