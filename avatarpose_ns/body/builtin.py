"""The project's own SMPL-format body model, generated on first use.

The real SMPL files are licence-restricted, so the project builds a stand-in with
exactly SMPL's pickle fields (v_template, f, shapedirs, posedirs, J_regressor,
weights, kintree_table). It loads through `smplx.SMPL(model_path=...)` on the
ordinary code path, and a real `SMPL_NEUTRAL.pkl` can replace it unchanged.

Geometry. SMPL's conventions: metres, y up, the body's left is +x, the face looks
along +z, T-pose rest (arms along +-x, palms down, legs straight, slightly apart),
soles at y = -1.15, head top near y = +0.55 (1.70 m), pelvis joint at y = -0.225.
The surface is the zero level of a smooth signed distance field (smooth unions of
ellipsoids, tapered capsules and rounded boxes), meshed with marching cubes on a
1.3 cm grid, lightly Taubin-smoothed and made exactly left/right symmetric. Each
limb is blended smoothly into the trunk but only hard-unioned with the other
limbs, so the legs never fuse together. Vertices at smplx's default extra-joint
indices (nose, eyes, ears, toes, heels, finger tips) sit at those landmarks.

Skinning weights: each vertex starts one-hot on the joint whose primitive is
nearest (no bleeding across the gap between the legs or arm and trunk); the
weights are then diffused along mesh edges, which keeps them non-negative and
summing to one while blending them across each joint.

J_regressor: each row is a maximum-entropy convex combination of the surface
vertices around that joint whose mean is exactly the designed joint, so smplx's
joints reproduce the design and follow the surface under shape changes.

posedirs are zero (no pose-corrective blend shapes).

Shape directions (shapedirs[..., k]); one unit is about one standard deviation,
beta = +-2 a plausible extreme:

    0  overall size: uniform scaling about the soles, +7.2 cm of height per unit
    1  girth / weight: radial growth from the bone axes (trunk most), ~ +15 % volume
    2  leg length: legs stretched between hip and ankle height, +3.8 cm per unit
    3  arm length: arms stretched between shoulder and wrist, +2.4 cm per unit
    4  shoulder width: shoulders and arms move outwards, up to +1.5 cm a side per unit
    5  hip width: hips and legs move outwards, up to +1.2 cm a side per unit
    6  torso length: everything above the waist moves up, +2 cm per unit
    7  head size: head scaled by 5 % per unit about the top of the neck
    8  chest / belly depth: trunk depth in front of the spine, +15 % per unit
    9  limb thickness: radial growth of arms and legs only
"""

from __future__ import annotations

import os
import pickle
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.interpolate import PchipInterpolator
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from avatarpose_ns.body.skeleton import NUM_BETAS, NUM_JOINTS, SMPL_JOINT_NAMES, SMPL_PARENTS

BUILTIN_MODEL_VERSION = 1

NUM_SHAPE_DIRS = NUM_BETAS
NUM_POSE_DIRS = 207  # 23 joints x 9 rotation-matrix entries, SMPL's layout
GRID_SPACING = 0.013  # marching-cubes cell (m): ~1.3 cm vertex spacing
SOLE_Y = -1.15
_TORSO = -1  # primitive label: trunk, split into pelvis/spine bands by height

# --------------------------------------------------------------------------- joints

# designed rest joints of the centre line and the body's left side (+x); the right
# side is the mirror image. Arm joints share y and z: the arm is a straight line.
_ARM_Y, _ARM_Z = 0.225, -0.025
_DESIGN_JOINTS: dict[str, tuple[float, float, float]] = {
    "pelvis": (0.0, -0.225, 0.0),
    "left_hip": (0.085, -0.315, 0.0),
    "spine1": (0.0, -0.11, -0.015),
    "left_knee": (0.10, -0.705, 0.01),
    "spine2": (0.0, 0.02, -0.02),
    "left_ankle": (0.10, -1.075, -0.03),
    "spine3": (0.0, 0.11, -0.02),
    "left_foot": (0.11, -1.128, 0.09),
    "neck": (0.0, 0.275, -0.025),
    "left_collar": (0.08, 0.215, -0.025),
    "head": (0.0, 0.40, 0.01),
    "left_shoulder": (0.185, _ARM_Y, _ARM_Z),
    "left_elbow": (0.44, _ARM_Y, _ARM_Z),
    "left_wrist": (0.685, _ARM_Y, _ARM_Z),
    "left_hand": (0.78, _ARM_Y, _ARM_Z),
}

_MIRROR = np.array([-1.0, 1.0, 1.0])


def _mirror_joint_index(j: int) -> int:
    """Index of the joint on the other side (the joint itself on the centre line)."""
    name = SMPL_JOINT_NAMES[j]
    if name.startswith("left_"):
        return SMPL_JOINT_NAMES.index("right_" + name[5:])
    if name.startswith("right_"):
        return SMPL_JOINT_NAMES.index("left_" + name[6:])
    return j


JOINT_MIRROR = np.array([_mirror_joint_index(j) for j in range(NUM_JOINTS)])


def design_joints() -> np.ndarray:
    """The 24 designed rest-pose joints (24, 3), left/right symmetric."""
    joints = np.zeros((NUM_JOINTS, 3))
    for j, name in enumerate(SMPL_JOINT_NAMES):
        if name.startswith("right_"):
            joints[j] = np.array(_DESIGN_JOINTS["left_" + name[6:]]) * _MIRROR
        else:
            joints[j] = _DESIGN_JOINTS[name]
    return joints


# --------------------------------------------------------------------------- primitives


def _flip(p: tuple[float, float, float]) -> tuple[float, float, float]:
    return (-p[0], p[1], p[2])


@dataclass(frozen=True)
class _Prim:
    """One solid of the body's distance field.

    kind: "ellipsoid" (centre a, semi-axes r), "cone" (segment a-b, radii ra-rb),
    "box" (centre a, half extents r, corner rounding ra) or "loft" (a vertical solid
    whose elliptic cross-section at height y has half-width, half-depth and centre z
    interpolated smoothly through `keys` rows (y, half-width, half-depth, centre z)).
    `label` is the joint the surface moves with (_TORSO: decided by height), `group`
    the limb it belongs to, `blend` its smooth-union radius with the group so far.
    """

    kind: str
    label: int
    group: str
    blend: float
    a: tuple[float, float, float]
    r: tuple[float, float, float] = (0.0, 0.0, 0.0)
    b: tuple[float, float, float] = (0.0, 0.0, 0.0)
    ra: float = 0.0
    rb: float = 0.0
    keys: tuple[tuple[float, float, float, float], ...] = ()

    def mirrored(self) -> _Prim:
        """The same solid on the other side of the body (x -> -x)."""
        group = self.group[:-2] + "_r" if self.group.endswith("_l") else self.group
        label = int(JOINT_MIRROR[self.label]) if self.label >= 0 else self.label
        return replace(self, label=label, group=group, a=_flip(self.a), b=_flip(self.b))

    def sdf(self, p: np.ndarray) -> np.ndarray:
        """Signed distance at points p (..., 3); approximate for ellipsoids and the loft,
        which only matters for the fillet widths."""
        a = np.asarray(self.a)
        if self.kind == "ellipsoid":
            r = np.asarray(self.r)
            q = p - a
            k0 = np.linalg.norm(q / r, axis=-1)
            k1 = np.linalg.norm(q / (r * r), axis=-1)
            return k0 * (k0 - 1.0) / np.maximum(k1, 1e-12)
        if self.kind == "cone":
            b = np.asarray(self.b)
            ab = b - a
            t = np.clip(((p - a) @ ab) / (ab @ ab), 0.0, 1.0)
            closest = a + t[..., None] * ab
            return np.linalg.norm(p - closest, axis=-1) - (self.ra + t * (self.rb - self.ra))
        if self.kind == "box":
            q = np.abs(p - a) - np.asarray(self.r) + self.ra
            outside = np.linalg.norm(np.maximum(q, 0.0), axis=-1)
            return outside + np.minimum(q.max(axis=-1), 0.0) - self.ra
        if self.kind == "loft":
            return self._loft_sdf(p)
        raise ValueError(self.kind)

    def _loft_sdf(self, p: np.ndarray) -> np.ndarray:
        keys = np.asarray(self.keys)
        y = np.clip(p[..., 1], keys[0, 0], keys[-1, 0])
        half_w, half_d, centre_z = PchipInterpolator(keys[:, 0], keys[:, 1:], axis=0)(y).T
        qx, qz = p[..., 0], p[..., 2] - centre_z
        k0 = np.hypot(qx / half_w, qz / half_d)
        k1 = np.hypot(qx / half_w**2, qz / half_d**2)
        d = k0 * (k0 - 1.0) / np.maximum(k1, 1e-12)
        return np.maximum(d, np.maximum(keys[0, 0] - p[..., 1], p[..., 1] - keys[-1, 0]))


# trunk cross-sections: (y, half-width, half-depth, centre z)
_TRUNK_PROFILE: tuple[tuple[float, float, float, float], ...] = (
    (-0.34, 0.160, 0.100, -0.010),
    (-0.29, 0.168, 0.105, -0.010),
    (-0.20, 0.158, 0.100, -0.005),
    (-0.10, 0.140, 0.095, 0.000),
    (-0.03, 0.136, 0.095, 0.000),
    (0.05, 0.148, 0.102, 0.000),
    (0.13, 0.160, 0.110, -0.005),
    (0.20, 0.152, 0.098, -0.015),
    (0.25, 0.125, 0.080, -0.025),
    (0.285, 0.085, 0.065, -0.030),
)


def _left_and_core_primitives() -> list[_Prim]:
    """The trunk, head and the left limbs; the order fixes the smooth-union order."""
    E, C, B = "ellipsoid", "cone", "box"
    y, z = _ARM_Y, _ARM_Z
    return [
        # trunk
        _Prim("loft", _TORSO, "core", 0.0, a=(0.0, 0.0, 0.0), keys=_TRUNK_PROFILE),
        _Prim(E, _TORSO, "core", 0.05, a=(0.0, -0.28, -0.01), r=(0.155, 0.10, 0.10)),  # pelvis
        _Prim(E, 0, "core", 0.04, a=(0.07, -0.28, -0.05), r=(0.075, 0.085, 0.075)),  # buttock
        _Prim(C, 13, "core", 0.04, a=(0.05, 0.235, -0.03), b=(0.185, 0.23, z), ra=0.05, rb=0.05),  # collar
        _Prim(C, 12, "core", 0.03, a=(0.0, 0.25, -0.03), b=(0.0, 0.38, -0.005), ra=0.058, rb=0.052),  # neck
        # head
        _Prim(E, 15, "core", 0.02, a=(0.0, 0.44, 0.015), r=(0.077, 0.11, 0.097)),
        _Prim(E, 15, "core", 0.03, a=(0.0, 0.37, 0.04), r=(0.058, 0.055, 0.065)),  # jaw
        _Prim(E, 15, "core", 0.01, a=(0.0, 0.425, 0.108), r=(0.014, 0.024, 0.022)),  # nose
        _Prim(E, 15, "core", 0.008, a=(0.076, 0.43, 0.0), r=(0.014, 0.03, 0.02)),  # ear
        # left arm
        _Prim(E, 16, "arm_l", 0.0, a=(0.20, 0.232, z), r=(0.07, 0.058, 0.058)),  # deltoid
        _Prim(C, 16, "arm_l", 0.02, a=(0.185, y, z), b=(0.44, y, z), ra=0.048, rb=0.037),  # upper arm
        _Prim(C, 18, "arm_l", 0.015, a=(0.44, y, z), b=(0.685, y, z), ra=0.037, rb=0.026),  # forearm
        _Prim(E, 18, "arm_l", 0.02, a=(0.50, 0.228, z), r=(0.08, 0.038, 0.043)),  # forearm muscle
        _Prim(B, 20, "arm_l", 0.015, a=(0.735, y, z), r=(0.055, 0.016, 0.043), ra=0.014),  # palm
        _Prim(B, 22, "arm_l", 0.01, a=(0.825, 0.224, z), r=(0.05, 0.013, 0.04), ra=0.012),  # fingers
        _Prim(C, 22, "arm_l", 0.012, a=(0.705, 0.22, 0.005), b=(0.765, 0.215, 0.045), ra=0.015, rb=0.012),  # thumb
        # left leg
        _Prim(C, 1, "leg_l", 0.0, a=(0.085, -0.315, 0.0), b=(0.10, -0.705, 0.01), ra=0.08, rb=0.052),  # thigh
        _Prim(E, 1, "leg_l", 0.03, a=(0.092, -0.47, 0.015), r=(0.075, 0.16, 0.075)),  # thigh muscle
        _Prim(C, 4, "leg_l", 0.02, a=(0.10, -0.705, 0.01), b=(0.10, -1.075, -0.03), ra=0.05, rb=0.033),  # shin
        _Prim(E, 4, "leg_l", 0.03, a=(0.10, -0.83, -0.025), r=(0.05, 0.11, 0.05)),  # calf
        _Prim(B, 7, "leg_l", 0.03, a=(0.10, -1.125, 0.015), r=(0.042, 0.025, 0.085), ra=0.022),  # sole
        _Prim(E, 7, "leg_l", 0.03, a=(0.10, -1.105, 0.0), r=(0.042, 0.045, 0.11)),  # instep
        _Prim(B, 10, "leg_l", 0.02, a=(0.108, -1.13, 0.145), r=(0.045, 0.02, 0.055), ra=0.018),  # toes
    ]


def body_primitives() -> list[_Prim]:
    """All primitives: trunk, head, left limbs and their mirror images."""
    prims = _left_and_core_primitives()
    mirrored = [p.mirrored() for p in prims if p.group != "core"]
    mirrored += [p.mirrored() for p in prims if p.group == "core" and p.a[0] > 0.0]
    return prims + mirrored


def _smooth_min(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum: a union with a fillet of radius ~k."""
    if k <= 0.0:
        return np.minimum(a, b)
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.minimum(a, b) - h * h * k * 0.25


_LIMB_BLEND = 0.03  # fillet between a limb and the trunk


def body_sdf(points: np.ndarray) -> np.ndarray:
    """Distance field of the whole body at points (N, 3): negative inside.

    Primitives of one group are smoothly unioned in list order; an off-centre
    trunk primitive enters together with its mirror image (hard union), which
    keeps the field exactly symmetric. Each limb group is smoothly unioned with
    the trunk and the results are combined by a hard minimum, so two limbs only
    merge where they really overlap.
    """
    groups: dict[str, np.ndarray] = {}

    def add(group: str, d: np.ndarray, blend: float) -> None:
        groups[group] = d if group not in groups else _smooth_min(groups[group], d, blend)

    for prim in _left_and_core_primitives():
        d = prim.sdf(points)
        if prim.group == "core":
            if prim.a[0] != 0.0:
                d = np.minimum(d, prim.mirrored().sdf(points))
            add("core", d, prim.blend)
        else:
            add(prim.group, d, prim.blend)
            mirrored = prim.mirrored()
            add(mirrored.group, mirrored.sdf(points), prim.blend)
    core = groups.pop("core")
    result = core
    for name in sorted(groups):
        result = np.minimum(result, _smooth_min(core, groups[name], _LIMB_BLEND))
    return result


# --------------------------------------------------------------------------- surface


def _edges(faces: np.ndarray) -> np.ndarray:
    """Unique undirected edges (E, 2) of a triangle mesh."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    e = np.sort(e, axis=1)
    return np.unique(e, axis=0)


def _adjacency(faces: np.ndarray, num_vertices: int) -> sp.csr_matrix:
    e = _edges(faces)
    ones = np.ones(len(e))
    adj = sp.coo_matrix((ones, (e[:, 0], e[:, 1])), shape=(num_vertices, num_vertices))
    return (adj + adj.T).tocsr()


def _averaging_operator(faces: np.ndarray, num_vertices: int, keep_self: bool) -> sp.csr_matrix:
    """Row-stochastic neighbour averaging (optionally including the vertex itself)."""
    adj = _adjacency(faces, num_vertices)
    if keep_self:
        adj = adj + sp.identity(num_vertices, format="csr")
    deg = np.asarray(adj.sum(axis=1)).ravel()
    return (sp.diags(1.0 / deg) @ adj).tocsr()


def _largest_component(verts: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop every connected piece but the largest (stray bits of the level set)."""
    _, comp = connected_components(_adjacency(faces, len(verts)), directed=False)
    keep = comp == np.bincount(comp).argmax()
    new_index = np.cumsum(keep) - 1
    faces = faces[keep[faces[:, 0]]]
    return verts[keep], new_index[faces]


def _taubin(verts: np.ndarray, faces: np.ndarray, iterations: int = 8,
            lamb: float = 0.5, mu: float = -0.53) -> np.ndarray:
    """Taubin smoothing: removes marching-cubes terracing without shrinking."""
    avg = _averaging_operator(faces, len(verts), keep_self=False)
    v = verts.copy()
    for _ in range(iterations):
        v = v + lamb * (avg @ v - v)
        v = v + mu * (avg @ v - v)
    return v


def mirror_map(verts: np.ndarray, tol: float = 1e-4) -> np.ndarray:
    """Index of each vertex's mirror image (x -> -x); raises if the set is not symmetric."""
    dist, idx = cKDTree(verts).query(verts * _MIRROR)
    if dist.max() > tol or not np.array_equal(idx[idx], np.arange(len(verts))):
        raise RuntimeError(f"body surface is not mirror symmetric (max {dist.max():.2e} m)")
    return idx


def _grid_axis(lo: float, hi: float, h: float) -> np.ndarray:
    return lo + h * np.arange(int(np.ceil((hi - lo) / h)) + 1)


def _surface(h: float = GRID_SPACING) -> tuple[np.ndarray, np.ndarray]:
    """Closed, outward-oriented, mirror-symmetric triangle mesh of the body."""
    from skimage.measure import marching_cubes

    # grid symmetric about x = 0; origins off any round number so that no flat face
    # of a primitive lies on a grid plane (that would give coincident vertices)
    nx = int(np.ceil(0.92 / h))
    xs = h * (np.arange(-nx, nx) + 0.5)
    ys = _grid_axis(SOLE_Y - 0.0317, 0.59, h)
    zs = _grid_axis(-0.1713, 0.24, h)
    grid = np.stack(np.meshgrid(xs, ys, zs, indexing="ij"), axis=-1)
    field = body_sdf(grid.reshape(-1, 3)).reshape(grid.shape[:3])
    tiny = np.abs(field) < 1e-6 * h
    field[tiny] = np.where(field[tiny] < 0.0, -1e-6, 1e-6) * h
    verts, faces, _, _ = marching_cubes(-field, level=0.0, spacing=(h, h, h))
    verts = verts + np.array([xs[0], ys[0], zs[0]])
    faces = faces.astype(np.int64)
    verts, faces = _largest_component(verts, faces)
    if _signed_volume(verts, faces) < 0.0:
        faces = faces[:, ::-1].copy()
    mirror = mirror_map(verts)
    verts = _taubin(verts, faces)
    verts = 0.5 * (verts + verts[mirror] * _MIRROR)  # exact symmetry again
    return verts, faces


def _signed_volume(verts: np.ndarray, faces: np.ndarray) -> float:
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


# --------------------------------------------------------------------------- landmarks

# smplx's default extra joints ("smplh" vertex ids) and where they are on this body
_LANDMARKS_LEFT: dict[str, tuple[int, int, tuple[float, float, float]]] = {
    # name: (left vertex id, right vertex id, left position)
    "eye": (2800, 6260, (0.033, 0.45, 0.105)),
    "ear": (583, 4071, (0.092, 0.43, 0.0)),
    "big_toe": (3216, 6617, (0.09, -1.14, 0.20)),
    "small_toe": (3226, 6624, (0.145, -1.14, 0.17)),
    "heel": (3387, 6787, (0.10, -1.15, -0.075)),
    "thumb": (2746, 6191, (0.78, 0.215, 0.06)),
    "index": (2319, 5782, (0.875, 0.224, 0.0)),
    "middle": (2445, 5905, (0.875, 0.224, -0.02)),
    "ring": (2556, 6016, (0.875, 0.224, -0.04)),
    "pinky": (2673, 6133, (0.875, 0.224, -0.058)),
}
_NOSE = (332, (0.0, 0.425, 0.135))


def _landmark_targets() -> tuple[np.ndarray, np.ndarray]:
    """(vertex ids, positions) of all smplx extra-joint landmarks."""
    ids, pos = [_NOSE[0]], [_NOSE[1]]
    for left_id, right_id, p in _LANDMARKS_LEFT.values():
        ids += [left_id, right_id]
        pos += [p, tuple(np.array(p) * _MIRROR)]
    return np.array(ids), np.array(pos, dtype=float)


def _landmark_order(verts: np.ndarray) -> np.ndarray:
    """Vertex order (new index -> old index) putting the vertex nearest each landmark
    at smplx's vertex id for it; all other vertices keep their relative order."""
    ids, pos = _landmark_targets()
    _, nearest = cKDTree(verts).query(pos)
    if len(np.unique(nearest)) != len(nearest) or ids.max() >= len(verts):
        raise RuntimeError("landmark vertices collide")
    order = np.full(len(verts), -1)
    order[ids] = nearest
    rest = np.setdiff1d(np.arange(len(verts)), nearest)  # sorted: keeps the mesh order
    order[order < 0] = rest
    return order


def _reorder(verts: np.ndarray, faces: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return verts[order], inverse[faces]


# --------------------------------------------------------------------------- skinning


def _torso_band(y: np.ndarray) -> np.ndarray:
    """Trunk vertices follow the spine joint below them: pelvis, spine1, spine2, spine3."""
    j = design_joints()
    edges = [j[3, 1], j[6, 1], j[9, 1]]
    return np.array([0, 3, 6, 9])[np.searchsorted(edges, y)]


def part_labels(verts: np.ndarray, prims: list[_Prim] | None = None) -> np.ndarray:
    """Joint of the primitive nearest to each vertex (V,)."""
    prims = body_primitives() if prims is None else prims
    dists = np.stack([p.sdf(verts) for p in prims], axis=1)
    labels = np.array([p.label for p in prims])[dists.argmin(axis=1)]
    torso = labels == _TORSO
    labels[torso] = _torso_band(verts[torso, 1])
    return labels


def _symmetrize_weights(weights: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    return 0.5 * (weights + weights[mirror][:, JOINT_MIRROR])


def skinning_weights(verts: np.ndarray, faces: np.ndarray, mirror: np.ndarray,
                     iterations: int = 30) -> np.ndarray:
    """Smooth LBS weights (V, 24): one-hot part labels diffused along the mesh edges."""
    labels = part_labels(verts)
    weights = np.zeros((len(verts), NUM_JOINTS))
    weights[np.arange(len(verts)), labels] = 1.0
    avg = _averaging_operator(faces, len(verts), keep_self=True)
    for _ in range(iterations):
        weights = avg @ weights
    weights[weights < 1e-4] = 0.0  # sparse like SMPL's
    weights = _symmetrize_weights(weights, mirror)
    return weights / weights.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------- joint regressor


def _max_entropy_weights(points: np.ndarray, target: np.ndarray, prior: np.ndarray,
                         iterations: int = 100) -> np.ndarray:
    """Positive weights summing to one, closest to `prior` (in KL) among those whose
    weighted mean of `points` is `target`: exponential tilting w ~ prior * exp(q @ lam),
    lam minimising the convex log-sum-exp dual, by damped Newton steps."""
    q = points - target
    log_prior = np.log(prior)

    def dual(lam: np.ndarray) -> tuple[float, np.ndarray]:
        logits = log_prior + q @ lam
        top = logits.max()
        w = np.exp(logits - top)
        total = w.sum()
        return float(top + np.log(total)), w / total

    lam = np.zeros(3)
    value, w = dual(lam)
    for _ in range(iterations):
        mean = w @ q  # the dual's gradient
        if np.linalg.norm(mean) < 1e-10:
            break
        hessian = (q * w[:, None]).T @ q - np.outer(mean, mean)
        step = np.linalg.solve(hessian + 1e-12 * np.eye(3), mean)
        scale = 1.0
        while scale > 1e-8:
            new_value, new_w = dual(lam - scale * step)
            if new_value <= value - 1e-4 * scale * (mean @ step):
                break
            scale *= 0.5
        lam, value, w = lam - scale * step, new_value, new_w
    return w


def _fibonacci_sphere(n: int) -> np.ndarray:
    """n nearly uniform unit directions (n, 3)."""
    k = np.arange(n) + 0.5
    polar = np.arccos(1.0 - 2.0 * k / n)
    azimuth = np.pi * (1.0 + 5.0**0.5) * k
    return np.stack([np.cos(azimuth) * np.sin(polar), np.cos(polar), np.sin(azimuth) * np.sin(polar)], axis=1)


def _first_hits(mesh, origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where rays from a point inside the trimesh first leave it: (distance (R,),
    triangle (R,), barycentric coordinates (R, 3)), recomputed in float64."""
    verts, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    _, ray, tri = mesh.ray.intersects_location(np.tile(origin, (len(dirs), 1)), dirs, multiple_hits=False)
    if len(ray) != len(dirs):
        raise RuntimeError("a ray from a joint missed the body surface")
    tri = tri[np.argsort(ray)]
    a, b, c = (verts[faces[tri, i]] for i in range(3))
    e1, e2, s = b - a, c - a, origin - a  # Moller-Trumbore, exact in float64
    p = np.cross(dirs, e2)
    det = np.einsum("ij,ij->i", e1, p)
    u = np.einsum("ij,ij->i", s, p) / det
    q = np.cross(s, e1)
    v = np.einsum("ij,ij->i", dirs, q) / det
    t = np.einsum("ij,ij->i", e2, q) / det
    return t, tri, np.stack([1.0 - u - v, u, v], axis=1)


def joint_regressor(verts: np.ndarray, faces: np.ndarray, joints: np.ndarray, mirror: np.ndarray,
                    num_rays: int = 256) -> np.ndarray:
    """J_regressor (24, V), exact on the template.

    Rays from each joint in all directions give the surrounding surface points
    (barycentric combinations of vertices); the row is the maximum-entropy convex
    combination of them, with a prior favouring near hits (1 / distance^3), whose
    mean is the joint. The joint thus stays centred in its limb as the shape changes.
    """
    import trimesh

    mesh = trimesh.Trimesh(verts, faces, process=False)
    dirs = _fibonacci_sphere(num_rays)
    reg = np.zeros((NUM_JOINTS, len(verts)))
    for j in range(NUM_JOINTS):
        if SMPL_JOINT_NAMES[j].startswith("right_"):
            continue
        t, tri, bary = _first_hits(mesh, joints[j], dirs)
        points = joints[j] + t[:, None] * dirs
        prior = t ** -3.0
        alpha = _max_entropy_weights(points, joints[j], prior / prior.sum())
        np.add.at(reg[j], faces[tri].ravel(), (alpha[:, None] * bary).ravel())
    for j in range(NUM_JOINTS):
        m = JOINT_MIRROR[j]
        if m != j:
            if SMPL_JOINT_NAMES[j].startswith("right_"):
                reg[j] = reg[m][mirror]
        else:
            reg[j] = 0.5 * (reg[j] + reg[j][mirror])
    reg[reg < 1e-7] = 0.0
    return reg / reg.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------- shape space


def _smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _bone_segments(joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Axis segment (start, end) of the body part each joint drives, (24, 3) each."""
    child = {0: 3, 3: 6, 6: 9, 9: 12, 12: 15, 13: 16, 16: 18, 18: 20, 20: 22, 1: 4, 4: 7, 7: 10}
    tips = {15: (0.0, 0.52, 0.015), 22: (0.875, _ARM_Y, _ARM_Z), 10: (0.11, -1.13, 0.20)}
    end = joints.copy()
    for j, c in child.items():
        end[j], end[JOINT_MIRROR[j]] = joints[c], joints[JOINT_MIRROR[c]]
    for j, tip in tips.items():
        end[j], end[JOINT_MIRROR[j]] = tip, np.array(tip) * _MIRROR
    return joints.copy(), end


def _radial(verts: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """Offset (V, 24, 3) of each vertex from each part's axis; horizontal for the trunk."""
    start, end = _bone_segments(joints)
    ab = end - start  # (24, 3)
    rel = verts[:, None, :] - start[None]  # (V, 24, 3)
    t = np.clip(np.einsum("vjc,jc->vj", rel, ab) / np.maximum((ab * ab).sum(-1), 1e-12), 0.0, 1.0)
    radial = rel - t[..., None] * ab[None]
    trunk = [0, 3, 6, 9]
    radial[:, trunk] = rel[:, trunk] * np.array([1.0, 0.0, 1.0])  # from the vertical spine line
    return radial


def _radial_growth(verts: np.ndarray, weights: np.ndarray, radial: np.ndarray,
                   rate: dict[int, float]) -> np.ndarray:
    """Skinning-weighted radial growth, rate[j] = relative growth of part j per unit."""
    per_joint = np.zeros(NUM_JOINTS)
    for j, r in rate.items():
        per_joint[j] = per_joint[JOINT_MIRROR[j]] = r
    return np.einsum("vj,j,vjc->vc", weights, per_joint, radial)


def shape_directions(verts: np.ndarray, weights: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """shapedirs (V, 3, 10); see the module docstring for the meaning of each."""
    x, y, z = verts.T
    side = np.sign(x)
    radial = _radial(verts, joints)
    dirs = np.zeros((len(verts), 3, NUM_SHAPE_DIRS))
    # 0 overall size about the soles
    dirs[:, :, 0] = 0.042 * (verts - np.array([0.0, SOLE_Y, 0.0]))
    # 1 girth
    limb = {1: 0.08, 4: 0.08, 7: 0.03, 10: 0.03, 16: 0.08, 18: 0.08, 20: 0.03, 22: 0.03, 13: 0.06}
    dirs[:, :, 1] = _radial_growth(verts, weights, radial, {0: 0.10, 3: 0.11, 6: 0.10, 9: 0.08, 12: 0.06, **limb})
    # 2 leg length: stretch between hip and ankle height, feet carried along
    hip_y, ankle_y = joints[1, 1], joints[7, 1]
    dirs[:, 1, 2] = 0.05 * (np.clip(y, ankle_y, hip_y) - hip_y)
    # 3 arm length: stretch between shoulder and wrist, hands carried along
    sh_x, wr_x = joints[16, 0], joints[20, 0]
    dirs[:, 0, 3] = side * 0.05 * (np.clip(np.abs(x), sh_x, wr_x) - sh_x)
    # 4 shoulder width, away from head and neck
    head_neck = weights[:, 15] + weights[:, 12]
    dirs[:, 0, 4] = side * 0.015 * _smoothstep(np.abs(x), 0.05, 0.20) * _smoothstep(y, -0.02, 0.14) * (1 - head_neck)
    # 5 hip width
    dirs[:, 0, 5] = side * 0.012 * _smoothstep(np.abs(x), 0.0, 0.12) * (1.0 - _smoothstep(y, -0.25, -0.05))
    # 6 torso length: everything above the waist moves up
    dirs[:, 1, 6] = 0.02 * _smoothstep(y, -0.20, 0.16)
    # 7 head size about the top of the neck
    dirs[:, :, 7] = 0.05 * weights[:, 15:16] * (verts - np.array([0.0, 0.37, 0.0]))
    # 8 chest / belly depth: in front of the spine, a little behind it
    trunk_w = weights[:, [0, 3, 6, 9]].sum(axis=1)
    depth = z - joints[6, 2]
    dirs[:, 2, 8] = 0.15 * trunk_w * depth * np.where(depth > 0.0, 1.0, 0.3) * _smoothstep(y, -0.30, -0.15)
    # 9 limb thickness
    dirs[:, :, 9] = _radial_growth(verts, weights, radial, {1: 0.10, 4: 0.10, 16: 0.10, 18: 0.10,
                                                            7: 0.04, 10: 0.04, 20: 0.04, 22: 0.04})
    return dirs


# --------------------------------------------------------------------------- model


def _kintree_table() -> np.ndarray:
    parents = np.array(SMPL_PARENTS, dtype=np.int64)
    parents[0] = 4294967295  # SMPL stores the root's parent as uint32 -1
    return np.stack([parents, np.arange(NUM_JOINTS, dtype=np.int64)])


def build_builtin_model() -> dict:
    """Generate the body model: SMPL's fields as numpy arrays. Deterministic."""
    verts, faces = _surface()
    verts, faces = _reorder(verts, faces, _landmark_order(verts))
    mirror = mirror_map(verts)
    joints = design_joints()
    weights = skinning_weights(verts, faces, mirror)
    regressor = joint_regressor(verts, faces, joints, mirror)
    shapedirs = shape_directions(verts, weights, joints)
    return {
        "v_template": verts.astype(np.float64),
        "f": faces.astype(np.uint32),
        "shapedirs": shapedirs.astype(np.float64),
        "posedirs": np.zeros((len(verts), 3, NUM_POSE_DIRS), dtype=np.float32),
        "J_regressor": regressor,
        "weights": weights,
        "kintree_table": _kintree_table(),
        "vert_sym_idxs": mirror.astype(np.int64),
        "bs_type": "lrotmin",
        "bs_style": "lbs",
    }


def write_smpl_pickle(fields: dict, path: Path) -> None:
    """Write the fields as a pickle that `pickle.load(f, encoding="latin1")` reads (as smplx does)."""
    with open(path, "wb") as handle:
        pickle.dump(fields, handle, protocol=2)


def default_cache_dir() -> Path:
    return Path(os.environ.get("AVATARPOSE_CACHE", Path.home() / ".cache" / "avatarpose_ns"))


def builtin_model_path(cache_dir: Path | None = None) -> Path:
    """Path of the cached built-in SMPL pickle, generating it on first use (atomically)."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache_dir / "body" / f"SMPL_NEUTRAL_builtin_v{BUILTIN_MODEL_VERSION}.pkl"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = build_builtin_model()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        write_smpl_pickle(fields, Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is an ordinary file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
