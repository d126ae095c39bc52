"""A `Rig`'s skeleton and motion as BVH (Biovision hierarchy), the format Blender's importer and most
retargeting tools read.

Layout, in the rig's y-up output frame and the input's metres:

* ``ROOT pelvis`` with ``OFFSET 0 0 0`` and ``CHANNELS 6 Xposition Yposition Zposition
  Zrotation Yrotation Xrotation``: the position channels are the pelvis's position itself
  (with a zero offset the readers that add the offset and those that do not agree);
* every other joint ``OFFSET`` = its shaped rest position minus its parent's, ``CHANNELS 3
  Zrotation Yrotation Xrotation``; each leaf (feet, head, hands) ends in an ``End Site``
  half its own offset further on, so viewers draw its bone with a length;
* rotations in degrees; the channel order means ``R = Rz(z) @ Ry(y) @ Rx(x)`` (intrinsic ZYX);
  per joint each frame takes, of the two equivalent angle triples, the one nearest the
  previous frame's, then angles are unwrapped, so curves are continuous;
* ``Frame Time`` = the rig's frame spacing (frame step / fps); BVH has one frame time, so
  the frames must be evenly spaced.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from avatarpose_ns.export.rig import Rig

CHANNEL_ORDER = "ZYX"  # intrinsic: R = Rz @ Ry @ Rx, written Zrotation Yrotation Xrotation
END_SITE_FRACTION = 0.5


def continuous_euler(quaternions: np.ndarray) -> np.ndarray:
    """(F, 4) unit quaternions (x, y, z, w) -> (F, 3) intrinsic ZYX angles in degrees, continuous over frames.

    Every rotation has two ZYX triples, (z, y, x) and (z + 180, 180 - y, x + 180); each frame takes the one
    nearer the previous frame's (modulo 360), and np.unwrap then removes the 360-degree jumps. At y = +-90
    degrees (gimbal lock) scipy sets x to 0 and puts the whole turn into z: still exactly the rotation."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Gimbal lock detected")
        angles = Rotation.from_quat(quaternions).as_euler(CHANNEL_ORDER, degrees=True)  # (F, 3) z, y, x
    for i in range(1, len(angles)):
        other = angles[i] + np.array([180.0, 0.0, 180.0])
        other[1] = 180.0 - angles[i, 1]

        def distance(a: np.ndarray) -> float:
            return float(np.abs((a - angles[i - 1] + 180.0) % 360.0 - 180.0).sum())

        if distance(other) < distance(angles[i]):
            angles[i] = other
    return np.degrees(np.unwrap(np.radians(angles), axis=0))


def frame_time(rig: Rig) -> float:
    """Seconds between the rig's frames; ValueError unless they are evenly spaced."""
    if rig.num_frames < 2:
        return 1.0 / rig.fps
    steps = np.diff(rig.times)
    if np.any(steps <= 0) or np.ptp(steps) > 1e-9 * max(1.0, float(steps.max())):
        raise ValueError(f"{rig.name}: BVH needs evenly spaced frames, got frames {rig.frames.tolist()}")
    return float(steps.mean())


def hierarchy_order(parents: np.ndarray) -> list[int]:
    """Joints depth first from the root, children in index order: the order of BVH's blocks and channels."""
    children = {j: np.flatnonzero(parents == j).tolist() for j in range(len(parents))}
    order: list[int] = []
    stack = [int(np.flatnonzero(parents < 0)[0])]
    while stack:
        joint = stack.pop()
        order.append(joint)
        stack.extend(reversed(children[joint]))
    return order


def _hierarchy(rig: Rig) -> list[str]:
    offsets = rig.offsets
    lines: list[str] = ["HIERARCHY"]

    def block(joint: int, depth: int) -> None:
        pad = "  " * depth
        is_root = rig.parents[joint] < 0
        offset = np.zeros(3) if is_root else offsets[joint]
        lines.append(f"{pad}{'ROOT' if is_root else 'JOINT'} {rig.joint_names[joint]}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}  OFFSET {offset[0]:.6f} {offset[1]:.6f} {offset[2]:.6f}")
        rotation = "Zrotation Yrotation Xrotation"
        lines.append(f"{pad}  CHANNELS 6 Xposition Yposition Zposition {rotation}" if is_root
                     else f"{pad}  CHANNELS 3 {rotation}")
        children = np.flatnonzero(rig.parents == joint).tolist()
        for child in children:
            block(child, depth + 1)
        if not children:
            end = END_SITE_FRACTION * offset
            lines.extend([f"{pad}  End Site", f"{pad}  {{",
                          f"{pad}    OFFSET {end[0]:.6f} {end[1]:.6f} {end[2]:.6f}", f"{pad}  }}"])
        lines.append(f"{pad}}}")

    block(hierarchy_order(rig.parents)[0], 0)
    return lines


def write_bvh(path: Path, rig: Rig) -> Path:
    """Write ``rig`` as BVH (see the module docstring); returns the path."""
    order = hierarchy_order(rig.parents)
    euler = np.stack([continuous_euler(rig.rotations[:, j]) for j in order], axis=1)  # (F, 24, 3) z, y, x
    values = np.concatenate([rig.root_translation, euler.reshape(rig.num_frames, -1)], axis=1)
    lines = _hierarchy(rig) + ["MOTION", f"Frames: {rig.num_frames}", f"Frame Time: {frame_time(rig):.8f}"]
    lines += [" ".join(f"{v:.6f}" for v in row) for row in values]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
