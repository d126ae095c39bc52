"""Clothing and skin colours for the synthetic people.

Colours are painted per vertex in the body's canonical rest pose (SMPL's T-pose:
metres, y up, the body's left = +x, facing +z), by the joint that dominates each
vertex's skinning weights, so they stick to the body whatever the pose.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

Color = tuple[float, float, float]

# SMPL joint indices (order of avatarpose_ns.body.skeleton.SMPL_JOINT_NAMES)
PELVIS, NECK, HEAD = 0, 12, 15
SHIRT_JOINTS = (0, 3, 6, 9, 13, 14, 16, 17)
NECK_JOINTS = (12,)
HEAD_JOINTS = (15,)
FOREARM_JOINTS = (18, 19)
HAND_JOINTS = (20, 21, 22, 23)
LEG_JOINTS = (1, 2, 4, 5)
FOOT_JOINTS = (7, 8, 10, 11)

# well separated shirt hue families (HSV hue in [0, 1)): red, blue, green,
# yellow-orange, purple, cyan, then pink and lime for larger crowds
_SHIRT_HUES = (0.0, 0.62, 0.33, 0.11, 0.78, 0.5, 0.92, 0.22)
_PATTERNS = ("stripes", "checks", "plain")
# trousers: dark blue jeans, khaki, charcoal, brown, olive, light grey
_TROUSERS: tuple[Color, ...] = (
    (0.12, 0.18, 0.42),
    (0.72, 0.62, 0.42),
    (0.16, 0.16, 0.18),
    (0.42, 0.26, 0.14),
    (0.33, 0.38, 0.18),
    (0.68, 0.68, 0.70),
)
_SHOES: tuple[Color, ...] = ((0.08, 0.08, 0.08), (0.92, 0.92, 0.90), (0.45, 0.25, 0.12), (0.75, 0.12, 0.10))
_SKINS: tuple[Color, ...] = (
    (0.96, 0.80, 0.69),
    (0.88, 0.68, 0.54),
    (0.76, 0.56, 0.42),
    (0.58, 0.40, 0.28),
    (0.40, 0.27, 0.18),
)
_HAIRS: tuple[Color, ...] = ((0.06, 0.05, 0.05), (0.30, 0.18, 0.08), (0.85, 0.70, 0.38), (0.62, 0.24, 0.10))


@dataclass
class PersonStyle:
    """Colours (RGB floats in [0, 1]) and garment pattern of one person."""

    skin: Color
    hair: Color
    shirt: Color
    shirt_secondary: Color
    pattern: str  # "stripes" | "checks" | "plain"
    trousers: Color
    shoes: Color
    stripe_period_m: float = 0.08  # full period of stripes / checks, in metres
    long_sleeves: bool = False  # forearms in the shirt colour instead of skin
    waist_offset_m: float = 0.04  # trousers start this far above the pelvis joint

    def __post_init__(self) -> None:
        if self.pattern not in _PATTERNS:
            raise ValueError(f"unknown pattern {self.pattern!r}, expected one of {_PATTERNS}")
        if self.stripe_period_m <= 0:
            raise ValueError("stripe_period_m must be positive")


def _hsv(h: float, s: float, v: float) -> Color:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1)))
    return (r, g, b)


def sample_style(rng: np.random.Generator, person_index: int) -> PersonStyle:
    """A style that differs clearly between person indices.

    The shirt hue family, the pattern and the trousers are chosen by
    ``person_index`` (so people 0..5 never share a shirt hue family and
    consecutive people never share a pattern); ``rng`` only varies shades,
    skin, hair, sleeves and the pattern period.
    """
    i = int(person_index)
    hue = _SHIRT_HUES[i % len(_SHIRT_HUES)] + rng.uniform(-0.02, 0.02)
    shirt = _hsv(hue, rng.uniform(0.75, 0.95), rng.uniform(0.75, 0.92))
    pattern = _PATTERNS[i % len(_PATTERNS)]
    # secondary colour: a light tint of the same family for stripes, a dark one
    # for checks, so the garment keeps its family's hue at any distance
    if pattern == "stripes":
        secondary = _hsv(hue, 0.12, 0.97)
    else:
        secondary = _hsv(hue, 0.9, 0.35)
    trousers = _TROUSERS[i % len(_TROUSERS)]
    trousers = tuple(float(np.clip(c * rng.uniform(0.92, 1.08), 0, 1)) for c in trousers)
    shoes = _SHOES[int(rng.integers(len(_SHOES)))]
    skin = _SKINS[int(rng.integers(len(_SKINS)))]
    skin = tuple(float(np.clip(c * rng.uniform(0.96, 1.04), 0, 1)) for c in skin)
    hair = _HAIRS[int(rng.integers(len(_HAIRS)))]
    return PersonStyle(
        skin=skin,
        hair=hair,
        shirt=shirt,
        shirt_secondary=secondary,
        pattern=pattern,
        trousers=trousers,
        shoes=shoes,
        stripe_period_m=float(rng.uniform(0.06, 0.10)),
        long_sleeves=bool(rng.random() < 0.5),
    )


def _shirt_colors(xyz: np.ndarray, style: PersonStyle) -> np.ndarray:
    """Shirt colour with the pattern evaluated at canonical positions (N, 3)."""
    p = style.stripe_period_m
    base = np.asarray(style.shirt, dtype=np.float64)
    second = np.asarray(style.shirt_secondary, dtype=np.float64)
    if style.pattern == "plain":
        sel = np.zeros(len(xyz), dtype=bool)
    elif style.pattern == "stripes":  # bands stacked along the height
        sel = np.floor(xyz[:, 1] / (0.5 * p)).astype(np.int64) % 2 == 1
    else:  # checks in x and y
        cx = np.floor(xyz[:, 0] / (0.5 * p)).astype(np.int64)
        cy = np.floor(xyz[:, 1] / (0.5 * p)).astype(np.int64)
        sel = (cx + cy) % 2 == 1
    return np.where(sel[:, None], second[None], base[None])


REGIONS = ("shirt", "sleeve", "skin", "trousers", "shoes", "hair")
"""what covers each vertex: the colours paint them and the clothing geometry (`synth.clothing`) lifts them"""


def vertex_regions(
    canonical_vertices: np.ndarray,
    skinning_weights: np.ndarray,
    joints: np.ndarray,
    style: PersonStyle,
) -> np.ndarray:
    """(V,) index into `REGIONS` per vertex of a body in its canonical rest pose.

    canonical_vertices (V, 3), skinning_weights (V, 24), joints (24, 3) rest-pose SMPL
    joints.  Each vertex goes by its dominant skinning joint: torso, shoulders and upper
    arms shirt; forearms sleeve (long sleeves) or skin; neck and hands skin; legs trousers
    (and the part of the pelvis region below the waist line); feet shoes; head skin with
    hair over the top, the sides above the ears and the back.
    """
    verts = np.asarray(canonical_vertices, dtype=np.float64)
    weights = np.asarray(skinning_weights, dtype=np.float64)
    joints = np.asarray(joints, dtype=np.float64)
    if verts.ndim != 2 or verts.shape[1] != 3:
        raise ValueError(f"canonical_vertices must be (V, 3), got {verts.shape}")
    if weights.shape != (verts.shape[0], 24):
        raise ValueError(f"skinning_weights must be ({verts.shape[0]}, 24), got {weights.shape}")
    if joints.shape != (24, 3):
        raise ValueError(f"joints must be (24, 3), got {joints.shape}")

    code = {name: index for index, name in enumerate(REGIONS)}
    dominant = np.argmax(weights, axis=1)
    regions = np.full(len(verts), code["shirt"], dtype=np.int64)

    def paint(joint_ids, region: str) -> np.ndarray:
        mask = np.isin(dominant, joint_ids)
        regions[mask] = code[region]
        return mask

    below_waist = (dominant == PELVIS) & (verts[:, 1] < joints[PELVIS, 1] + style.waist_offset_m)
    regions[below_waist] = code["trousers"]
    paint(NECK_JOINTS, "skin")
    paint(FOREARM_JOINTS, "sleeve" if style.long_sleeves else "skin")
    paint(HAND_JOINTS, "skin")
    paint(LEG_JOINTS, "trousers")
    paint(FOOT_JOINTS, "shoes")

    head = paint(HEAD_JOINTS, "skin")
    if np.any(head):
        rel = verts[head] - joints[HEAD]
        y_top = rel[:, 1].max()
        y_bottom = min(rel[:, 1].min(), 0.0)
        height = max(y_top - y_bottom, 1e-6)
        y_rel = (rel[:, 1] - y_bottom) / height  # 0 at the chin/neck, 1 at the crown
        # the back of the head: behind the head joint (the face looks along +z)
        z_front = rel[:, 2].max()
        back = rel[:, 2] < min(0.0, z_front - 0.1)
        top = y_rel > 0.78
        # the hairline sits higher over the face than behind the ears
        sides = (y_rel > 0.62) & (rel[:, 2] < z_front - 0.05)
        hair = top | sides | (back & (y_rel > 0.25))
        head_regions = regions[head]
        head_regions[hair] = code["hair"]
        regions[head] = head_regions
    return regions


def vertex_colors(
    canonical_vertices: np.ndarray,
    skinning_weights: np.ndarray,
    joints: np.ndarray,
    style: PersonStyle,
) -> np.ndarray:
    """Per-vertex RGB in [0, 1] for a body in its canonical rest pose: each `vertex_regions`
    region in the style's colour, the shirt (and long sleeves) with its pattern."""
    verts = np.asarray(canonical_vertices, dtype=np.float64)
    regions = vertex_regions(verts, skinning_weights, joints, style)
    colors = np.zeros((len(verts), 3), dtype=np.float64)
    for name, color in (("skin", style.skin), ("trousers", style.trousers), ("shoes", style.shoes),
                        ("hair", style.hair)):
        colors[regions == REGIONS.index(name)] = np.asarray(color, dtype=np.float64)
    patterned = np.isin(regions, (REGIONS.index("shirt"), REGIONS.index("sleeve")))
    colors[patterned] = _shirt_colors(verts[patterned], style)
    return np.clip(colors, 0.0, 1.0)
