"""Clothing and hair as geometry: garments that stand off the SMPL body and move with it.

A bare SMPL surface explains every pixel of its own silhouette, so a fit of bare SMPL to the
masks of bare SMPL people is unbiased. Real people wear clothes: their silhouettes are larger
than the body underneath, in places by centimetres. Here each vertex of the posed body is lifted
along its normal by its garment's thickness (shirt, sleeves, trousers wider towards the ankles,
shoes, hair), smoothed over the mesh so that garments meet without steps, and some people wear
a skirt: an open cone hanging from the waist, which does not follow the legs. The ground truth
stays the SMPL body underneath; only the images and masks see the clothes.

Thicknesses are in metres, along the posed vertex normals, so the clothed surface encloses the
body (up to the mesh's discretisation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh

from avatarpose_ns.synth.appearance import REGIONS

CLOTHING_LEVELS = ("none", "tight", "loose")
# SMPL joints: pelvis, left and right hip, spine1, left and right knee
PELVIS, LEFT_HIP, RIGHT_HIP, SPINE1, LEFT_KNEE, RIGHT_KNEE = 0, 1, 2, 3, 4, 5


@dataclass(frozen=True)
class ClothingConfig:
    """Garment thicknesses (metres off the skin) and how often a skirt is worn."""

    shirt_m: float = 0.0
    sleeve_m: float = 0.0
    thigh_m: float = 0.0
    """trousers over the thighs"""
    shin_m: float = 0.0
    """trousers over the shins (wide trousers flare)"""
    shoes_m: float = 0.0
    hair_m: float = 0.0
    skirt_share: float = 0.0
    """chance that a person wears a skirt over the trousers"""
    skirt_length_m: float = 0.45
    """from the waist down, along the pelvis's axis"""
    skirt_flare_m: float = 0.10
    """how much wider the hem is than the waist (radius)"""
    smoothing_rounds: int = 4
    """rounds of neighbour averaging of the thickness over the mesh"""

    @property
    def active(self) -> bool:
        return any((self.shirt_m, self.sleeve_m, self.thigh_m, self.shin_m, self.shoes_m, self.hair_m,
                    self.skirt_share))


CLOTHING_PRESETS: dict[str, ClothingConfig] = {
    "none": ClothingConfig(),
    "tight": ClothingConfig(shirt_m=0.006, sleeve_m=0.005, thigh_m=0.006, shin_m=0.006, shoes_m=0.01, hair_m=0.01),
    "loose": ClothingConfig(shirt_m=0.03, sleeve_m=0.025, thigh_m=0.022, shin_m=0.035, shoes_m=0.015, hair_m=0.03,
                            skirt_share=0.5),
}


def clothing_config(level: str) -> ClothingConfig:
    if level not in CLOTHING_PRESETS:
        raise ValueError(f"clothing must be one of {CLOTHING_LEVELS}, got '{level}'")
    return CLOTHING_PRESETS[level]


def garment_thickness(regions: np.ndarray, dominant_joint: np.ndarray, faces: np.ndarray,
                      config: ClothingConfig) -> np.ndarray:
    """(V,) metres each vertex is lifted: its region's thickness (`appearance.vertex_regions`;
    trousers by thigh or shin), averaged with its mesh neighbours `smoothing_rounds` times so that
    the garments blend into each other and into the skin."""
    thickness = np.zeros(len(regions), dtype=np.float64)
    for name, value in (("shirt", config.shirt_m), ("sleeve", config.sleeve_m), ("shoes", config.shoes_m),
                        ("hair", config.hair_m)):
        thickness[regions == REGIONS.index(name)] = value
    trousers = regions == REGIONS.index("trousers")
    shin = np.isin(dominant_joint, (LEFT_KNEE, RIGHT_KNEE))
    thickness[trousers & ~shin] = config.thigh_m
    thickness[trousers & shin] = config.shin_m
    if config.smoothing_rounds and thickness.any():
        edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
        edges = np.concatenate([edges, edges[:, ::-1]])
        degree = np.bincount(edges[:, 0], minlength=len(thickness)).astype(np.float64)
        for _ in range(config.smoothing_rounds):
            summed = np.bincount(edges[:, 0], weights=thickness[edges[:, 1]], minlength=len(thickness))
            thickness = (thickness + summed) / (1.0 + degree)
    return thickness


@dataclass
class Skirt:
    """An open cone in the pelvis's frame: rings from the waist (radius per angle) to the hem."""

    waist_radius: np.ndarray  # (A,) metres, per angle around the pelvis axis
    length_m: float
    flare_m: float
    drop_m: float  # the waist ring sits this far below the pelvis joint (negative: above)
    rings: int = 6

    def mesh(self, joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vertices (rings * A, 3) and faces of the skirt on a posed body (joints (24, 3), world)."""
        down = joints[PELVIS] - joints[SPINE1]
        down /= np.linalg.norm(down)
        side = joints[LEFT_HIP] - joints[RIGHT_HIP]
        side -= down * (side @ down)
        side /= np.linalg.norm(side)
        front = np.cross(down, side)
        angles = np.linspace(0.0, 2 * np.pi, len(self.waist_radius), endpoint=False)
        ring_dirs = np.cos(angles)[:, None] * side + np.sin(angles)[:, None] * front  # (A, 3)
        heights = np.linspace(0.0, 1.0, self.rings)
        radius = self.waist_radius[None, :] + self.flare_m * heights[:, None]  # (rings, A)
        centre = joints[PELVIS] + down * (self.drop_m + self.length_m * heights[:, None])  # (rings, 3)
        vertices = centre[:, None, :] + radius[..., None] * ring_dirs[None]
        count = len(angles)
        r, a = np.meshgrid(np.arange(self.rings - 1), np.arange(count), indexing="ij")
        v00, v01 = r * count + a, r * count + (a + 1) % count
        v10, v11 = v00 + count, v01 + count
        faces = np.concatenate([np.stack([v00, v10, v11], -1).reshape(-1, 3),
                                np.stack([v00, v11, v01], -1).reshape(-1, 3)])
        return vertices.reshape(-1, 3), faces


def fit_skirt(rest_vertices: np.ndarray, rest_joints: np.ndarray, config: ClothingConfig,
              angles: int = 32) -> Skirt:
    """A skirt that just clears the rest body's hips: per angle around the pelvis's vertical axis, the
    largest radius of the body's vertices within 4 cm of the waist ring's height, plus the shirt's
    thickness and 1 cm."""
    drop = 0.02
    centre = rest_joints[PELVIS]
    rel = rest_vertices - centre
    band = np.abs(rel[:, 1] + drop) < 0.04
    # only the trunk: the hands hanging at the hips in some poses are not the waist
    band &= np.hypot(rel[:, 0], rel[:, 2]) < 0.3
    theta = np.arctan2(rel[band, 2], rel[band, 0]) % (2 * np.pi)
    radius = np.hypot(rel[band, 0], rel[band, 2])
    bins = np.minimum((theta / (2 * np.pi) * angles).astype(np.int64), angles - 1)
    waist = np.zeros(angles)
    np.maximum.at(waist, bins, radius)
    waist = np.where(waist > 0, waist, waist.max())
    # the cone's angle 0 is the body's left (+x), angle 90 degrees its front (+z): as in `Skirt.mesh`
    return Skirt(waist + config.shirt_m + 0.01, config.skirt_length_m, config.skirt_flare_m, drop)


@dataclass
class Outfit:
    """One person's clothes: the per-vertex thickness and an optional skirt, with their colours."""

    thickness: np.ndarray  # (V,)
    skirt: Skirt | None = None
    skirt_color: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def dress(self, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray,
              joints: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The clothed mesh (vertices, faces, colours) of a posed body (vertices (V, 3), joints (24, 3))."""
        if self.thickness.any():
            mesh = trimesh.Trimesh(vertices, faces, process=False)
            outward = 1.0 if mesh.volume >= 0 else -1.0  # faces wound inwards give inward normals
            vertices = vertices + outward * self.thickness[:, None] * mesh.vertex_normals
        if self.skirt is None:
            return vertices, faces, colors
        skirt_vertices, skirt_faces = self.skirt.mesh(joints)
        skirt_colors = np.tile(np.asarray(self.skirt_color, dtype=np.float64), (len(skirt_vertices), 1))
        return (np.concatenate([vertices, skirt_vertices]), np.concatenate([faces, skirt_faces + len(vertices)]),
                np.concatenate([colors, skirt_colors]))
