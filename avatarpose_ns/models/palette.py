"""One colour per person, shared by the instance map the model renders and the viewer's overlays.

Person k is the k-th entry of the model's ``person_ids`` (not the id itself); the
palette repeats after its last colour. Torch and numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

# matplotlib's tab10 without its grey: distinct on white and on dark backgrounds
PERSON_COLOURS: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (188, 189, 34), (23, 190, 207),
)
GROUND_TRUTH_COLOUR: tuple[int, int, int] = (128, 128, 128)


def person_colour(index: int) -> tuple[int, int, int]:
    """RGB (0-255) of the person at position `index` of the model's person list."""
    return PERSON_COLOURS[index % len(PERSON_COLOURS)]


def person_colours(num_people: int) -> np.ndarray:
    """(L, 3) float colours in [0, 1]."""
    return np.asarray([person_colour(i) for i in range(num_people)], dtype=np.float32) / 255.0


def colour_instances(instance: torch.Tensor, num_people: int, background: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """Instance ids (...) long (-1: nobody) -> (..., 3) colours in [0, 1], background where -1."""
    palette = torch.as_tensor(person_colours(num_people), device=instance.device)
    background = torch.as_tensor(background, dtype=palette.dtype, device=instance.device).reshape(1, 3)
    table = torch.cat([palette, background])  # index -1 picks the last row
    return table[instance.clamp(min=-1)]
