"""One person's points through a per-person grid query that takes every person at once.

The occupancy grid and the body shell both answer ``query(points (L, K, 3))`` with person l's
points in row l; asking about one person pads the other rows, here in one place.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


@torch.no_grad()
def query_one_person(query: Callable[[torch.Tensor], torch.Tensor], num_people: int, points: torch.Tensor,
                     person: int) -> torch.Tensor:
    """points (K, 3) of person ``person`` -> (K,) bool: ``query`` of the padded (L, K, 3) batch, row ``person``."""
    padded = points.new_zeros(num_people, points.shape[0], 3)
    padded[person] = points
    return query(padded)[person]
