"""Which triangulated people belong to the capture: inside a given box, or in the common field of view.

A bystander at the edge of the room is seen by a few cameras only; without a box, a person counts
when its centre (the median of its joints) projects inside the image of at least ``min_views``
cameras (default: all but one, at least two), in front of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from avatarpose_ns.io.cameras import CameraCalib, project_points


def person_centre(points: np.ndarray) -> np.ndarray | None:
    finite = np.isfinite(points).all(-1)
    return np.median(points[finite], axis=0) if finite.any() else None


def views_seeing(point: np.ndarray, cams: Sequence[CameraCalib]) -> int:
    count = 0
    for cam in cams:
        if cam.world_to_camera(point[None])[0, 2] <= 0.1:
            continue
        u, v = project_points(point[None], cam)[0]
        if 0 <= u < cam.width and 0 <= v < cam.height:
            count += 1
    return count


def default_min_views(num_cameras: int) -> int:
    return max(2, num_cameras - 1)


def in_capture(points: np.ndarray, cams: Sequence[CameraCalib], box: Sequence[float] | None = None,
               min_views: int | None = None) -> bool:
    """box: (xmin, xmax, ymin, ymax, zmin, zmax) in metres, world frame; None: the common field of view."""
    centre = person_centre(points)
    if centre is None:
        return False
    if box is not None:
        lo, hi = np.asarray(box[0::2], dtype=float), np.asarray(box[1::2], dtype=float)
        return bool(np.all(centre >= lo) and np.all(centre <= hi))
    return views_seeing(centre, cams) >= (default_min_views(len(cams)) if min_views is None else min_views)
