"""Per-person radiance fields in canonical SMPL space.

Each person has a `CanonicalField`: a multiresolution hash grid over a cube
around that person's canonical SMPL mesh, a density MLP (raw sigma + geometry
features) and a colour MLP (geometry features -> rgb, no view direction), as in
AvatarPose's released configuration (docs/design.md#sizes).  `MultiPersonFields`
holds one field per person.

Optionally (``direction_sh_degree > 0``) the colour MLP also sees the viewing
direction in canonical space, encoded by real spherical harmonics, as nerfacto's
colour head does.  Shading that follows the camera (a light near the lens, a
sheen) is then a function of the canonical point and direction; without it the
field can only learn each point's average colour over the training views.

Units: canonical points are in metres and the returned density is per metre, so
a renderer multiplies it by sample spacings in metres (inverse skinning is
close to rigid locally, so posed-space spacings can be used).

Density activation: truncated exponential (exp forward, gradient computed with
the argument clamped to [-15, 15]), as in Instant-NGP, nerfacto and the
InstantAvatar-style networks AvatarPose builds on.  The exponential lets a
one-unit change of the raw output scale density by e, so empty space and hard
surfaces are both reached in few steps (the hard-surface and alpha losses push
toward exactly that), and the clamped backward keeps the gradient finite for
large raw values.  ``density_activation="softplus"`` is available for a gentler,
linear-growth alternative.

Only torch is needed here: the MLPs are plain ``nn.Sequential`` stacks of
``Linear``/``ReLU`` so a checkpoint trained on a GPU evaluates on a CPU and the
other way round; the hash grid uses tinycudann on CUDA when available, with an
identical parameter layout (see `hash_encoding`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from avatarpose_ns.models.hash_encoding import HashGridEncoding
from avatarpose_ns.models.occupancy import canonical_bounding_cube

__all__ = [
    "CanonicalFieldConfig",
    "CanonicalField",
    "MultiPersonFields",
    "spherical_harmonics",
    "trunc_exp",
]

# Real spherical harmonics constants (orthonormal on the unit sphere), degrees 0 to 3.
_SH_C0 = 0.28209479177387814
_SH_C1 = 0.4886025119029199
_SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
_SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
          -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


def spherical_harmonics(directions: Tensor, degree: int) -> Tensor:
    """Real spherical harmonics of unit ``directions`` (..., 3) up to ``degree`` (0 to 3).

    Returns (..., (degree + 1)**2), ordered by degree l, then m = -l..l; each
    function has unit L2 norm over the sphere."""
    if not 0 <= degree <= 3:
        raise ValueError(f"spherical harmonics degree must be 0 to 3, got {degree}")
    x, y, z = directions.unbind(-1)
    out = [torch.full_like(x, _SH_C0)]
    if degree >= 1:
        out += [-_SH_C1 * y, _SH_C1 * z, -_SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [_SH_C2[0] * x * y, _SH_C2[1] * y * z, _SH_C2[2] * (2.0 * zz - xx - yy), _SH_C2[3] * x * z,
                _SH_C2[4] * (xx - yy)]
    if degree >= 3:
        out += [_SH_C3[0] * y * (3.0 * xx - yy), _SH_C3[1] * x * y * z, _SH_C3[2] * y * (4.0 * zz - xx - yy),
                _SH_C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy), _SH_C3[4] * x * (4.0 * zz - xx - yy),
                _SH_C3[5] * z * (xx - yy), _SH_C3[6] * x * (xx - 3.0 * yy)]
    return torch.stack(out, dim=-1)


class _TruncExp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, g: Tensor) -> Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return g * torch.exp(x.clamp(-15.0, 15.0))


def trunc_exp(x: Tensor) -> Tensor:
    """exp(x) whose gradient uses exp(clamp(x, -15, 15))."""
    return _TruncExp.apply(x)


@dataclass
class CanonicalFieldConfig:
    """Sizes of one person's canonical field.

    Defaults: AvatarPose's released sizes (16 levels x 2, table 2^19, base 16, scale 1.5, MLPs 64 wide).
    """

    num_levels: int = 16
    """Hash grid levels."""
    features_per_level: int = 2
    """Features per level."""
    log2_hashmap_size: int = 19
    """Rows per (hashed) level: 2**log2_hashmap_size."""
    base_resolution: int = 16
    """Coarsest grid resolution."""
    per_level_scale: float = 1.5
    """Resolution growth factor between levels."""
    hash_init_scale: float = 1e-4
    """Table initialised uniformly in +-hash_init_scale."""
    hidden_dim: int = 64
    """Width of the density MLP."""
    num_density_layers: int = 1
    """Hidden layers of the density MLP."""
    geo_feat_dim: int = 15
    """Geometry features passed to the colour MLP (the density MLP outputs 1 + geo_feat_dim)."""
    hidden_dim_color: int = 64
    """Width of the colour MLP."""
    num_color_layers: int = 2
    """Hidden layers of the colour MLP."""
    direction_sh_degree: int = 0
    """0: colour from geometry features only (released). 1 to 3: the colour MLP also
    gets the canonical viewing direction as real spherical harmonics of this degree."""
    density_activation: Literal["trunc_exp", "softplus"] = "trunc_exp"
    """Maps the raw density output to a density >= 0 (per metre)."""
    density_bias: float = 0.0
    """Added to the raw density before the activation."""
    implementation: Literal["auto", "torch", "tcnn"] = "auto"
    """Hash grid back-end: tinycudann for CUDA inputs when it imports ("auto"), or always torch."""

    @classmethod
    def small(cls) -> CanonicalFieldConfig:
        """CPU ("lite") preset: 8 levels x 2, table 2^16, base 16, scale 1.5, MLPs 32 wide.

        The finest level has resolution 16 * 1.5**7 - 1 -> 274, i.e. about 8 mm
        cells across a 2.2 m canonical cube.  The three coarsest levels are dense.
        A table of 2^16 rather than 2^14 costs little on a CPU (the per-point
        work does not depend on it; gradient zeroing and Adam touch 0.8 M
        instead of 0.23 M parameters) but keeps the five hashed levels from
        colliding heavily across a whole body.
        """
        return cls(
            num_levels=8,
            features_per_level=2,
            log2_hashmap_size=16,
            base_resolution=16,
            per_level_scale=1.5,
            hidden_dim=32,
            num_density_layers=1,
            geo_feat_dim=15,
            hidden_dim_color=32,
            num_color_layers=2,
        )


def _as_float32(value) -> Tensor:
    if isinstance(value, Tensor):
        return value.detach().to(torch.float32)
    return torch.as_tensor(np.asarray(value, dtype=np.float32))


def _mlp(in_dim: int, hidden: int, num_hidden: int, out_dim: int) -> nn.Sequential:
    layers = []
    d = in_dim
    for _ in range(num_hidden):
        layers += [nn.Linear(d, hidden), nn.ReLU(inplace=True)]
        d = hidden
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


class CanonicalField(nn.Module):
    """One person's canonical radiance field.

    Args:
        config: sizes (defaults to the released configuration).
        centre, half_size: the canonical bounding cube (see `canonical_bounding_cube`), metres.

    ``forward(points (..., 3))`` returns ``density (...)`` >= 0 (zero outside the
    cube) and ``rgb (..., 3)`` in [0, 1] (zero outside the cube).  Both are
    differentiable with respect to the points (pose optimisation moves them).
    """

    def __init__(
        self,
        config: CanonicalFieldConfig | None = None,
        centre: Tensor | Sequence[float] | None = None,
        half_size: Tensor | float | None = None,
    ) -> None:
        super().__init__()
        self.config = config = config if config is not None else CanonicalFieldConfig()
        centre_t = torch.zeros(3) if centre is None else _as_float32(centre).reshape(3)
        half_t = torch.tensor(1.0) if half_size is None else _as_float32(half_size).reshape(())
        self.register_buffer("bbox_centre", centre_t.clone())
        self.register_buffer("bbox_half_size", half_t.clone())
        self.encoding = HashGridEncoding(
            num_levels=config.num_levels,
            features_per_level=config.features_per_level,
            log2_hashmap_size=config.log2_hashmap_size,
            base_resolution=config.base_resolution,
            per_level_scale=config.per_level_scale,
            init_scale=config.hash_init_scale,
            implementation=config.implementation,
        )
        self.density_mlp = _mlp(
            self.encoding.n_output_dims, config.hidden_dim, config.num_density_layers, 1 + config.geo_feat_dim
        )
        if not 0 <= config.direction_sh_degree <= 3:
            raise ValueError(f"direction_sh_degree must be 0 to 3, got {config.direction_sh_degree}")
        self.num_direction_features = (config.direction_sh_degree + 1) ** 2 if config.direction_sh_degree > 0 else 0
        self.color_mlp = _mlp(config.geo_feat_dim + self.num_direction_features, config.hidden_dim_color,
                              config.num_color_layers, 3)

    # ------------------------------------------------------------------ box
    def normalize(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """Points (N, 3) in metres -> coordinates in the unit cube (N, 3) and inside-cube mask (N,)."""
        centre = self.bbox_centre.to(points.dtype)
        half = self.bbox_half_size.to(points.dtype)
        u = (points - centre) / (2.0 * half) + 0.5
        inside = ((u >= 0.0) & (u <= 1.0)).all(dim=-1)
        return u, inside

    # ------------------------------------------------------------------ evaluation
    def _density_from_raw(self, raw: Tensor) -> Tensor:
        raw = raw + self.config.density_bias
        if self.config.density_activation == "softplus":
            return torch.nn.functional.softplus(raw)
        return trunc_exp(raw)

    def _direction_features(self, directions: Tensor | None, num: int, like: Tensor) -> Tensor | None:
        """(num, D) colour-MLP inputs for unit directions (num, 3); None when the field has none.

        Without directions (mesh colouring, viewer previews) only the constant harmonic is
        set, i.e. the input the MLP sees for a direction-averaged colour."""
        if self.num_direction_features == 0:
            return None
        if directions is None:
            features = like.new_zeros(num, self.num_direction_features)
            features[:, 0] = _SH_C0
            return features
        return spherical_harmonics(directions.to(like.dtype), self.config.direction_sh_degree)

    def _evaluate_unit(self, u: Tensor, with_rgb: bool,
                       direction_features: Tensor | None = None) -> tuple[Tensor, Tensor | None, Tensor]:
        """u (M, 3) in the unit cube -> density (M,), rgb (M, 3) or None, geometry features (M, G)."""
        h = self.density_mlp(self.encoding(u))
        density = self._density_from_raw(h[:, 0])
        geo = h[:, 1:]
        rgb = None
        if with_rgb:
            colour_in = geo if direction_features is None else torch.cat([geo, direction_features], dim=-1)
            rgb = torch.sigmoid(self.color_mlp(colour_in))
        return density, rgb, geo

    def query(
        self, points: Tensor, with_rgb: bool = True, with_features: bool = False,
        directions: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Density (...), rgb (..., 3) or None, geometry features (..., G) or None.

        directions (..., 3): unit canonical viewing directions, used only by a field with
        ``direction_sh_degree > 0`` (see `_direction_features` for None)."""
        lead = points.shape[:-1]
        dtype = self.encoding.params.dtype
        p = points.reshape(-1, 3).to(dtype)
        n = p.shape[0]
        u, inside = self.normalize(p)
        G = self.config.geo_feat_dim
        dirs = None if directions is None else directions.reshape(-1, 3)
        if dirs is not None and dirs.shape[0] != n:
            raise ValueError(f"directions {tuple(directions.shape)} do not match points {tuple(points.shape)}")
        if n > 0 and bool(inside.all()):
            dir_features = self._direction_features(dirs, n, p) if with_rgb else None
            density, rgb, geo = self._evaluate_unit(u, with_rgb, dir_features)
        else:
            sel = inside.nonzero().squeeze(1)
            dir_features = None
            if with_rgb:
                dir_features = self._direction_features(None if dirs is None else dirs.index_select(0, sel),
                                                        sel.shape[0], p)
            d_in, rgb_in, geo_in = self._evaluate_unit(u.index_select(0, sel), with_rgb, dir_features)
            density = p.new_zeros(n).index_copy(0, sel, d_in)
            rgb = p.new_zeros(n, 3).index_copy(0, sel, rgb_in) if with_rgb else None
            geo = p.new_zeros(n, G).index_copy(0, sel, geo_in) if with_features else None
        density = density.view(lead)
        rgb = rgb.view(*lead, 3) if rgb is not None else None
        geo = geo.view(*lead, G) if with_features else None
        return density, rgb, geo

    def forward(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """points (..., 3) canonical, metres -> density (...) >= 0, rgb (..., 3) in [0, 1]."""
        density, rgb, _ = self.query(points, with_rgb=True)
        return density, rgb

    def density(self, points: Tensor) -> Tensor:
        """Density only (skips the colour MLP), e.g. for occupancy-grid updates."""
        return self.query(points, with_rgb=False)[0]


class MultiPersonFields(nn.Module):
    """One `CanonicalField` per person.

    Args:
        bboxes: per person (centre (3,), half_size) canonical cubes.
        config: shared sizes (or one config per person).
    """

    def __init__(
        self,
        bboxes: Sequence[tuple[Tensor | Sequence[float], Tensor | float]],
        config: CanonicalFieldConfig | Sequence[CanonicalFieldConfig] | None = None,
    ) -> None:
        super().__init__()
        if config is None or isinstance(config, CanonicalFieldConfig):
            configs = [config] * len(bboxes)
        else:
            configs = list(config)
            if len(configs) != len(bboxes):
                raise ValueError("one config per person expected")
        self.fields = nn.ModuleList(
            [CanonicalField(cfg, centre, half) for cfg, (centre, half) in zip(configs, bboxes)]
        )

    @classmethod
    def from_canonical_vertices(
        cls,
        vertices: Sequence[Tensor | np.ndarray],
        config: CanonicalFieldConfig | Sequence[CanonicalFieldConfig] | None = None,
        scale: float = 1.2,
    ) -> MultiPersonFields:
        """Fields with cubes around each person's canonical mesh (V, 3)."""
        return cls([canonical_bounding_cube(v, scale) for v in vertices], config)

    @property
    def num_people(self) -> int:
        return len(self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def __getitem__(self, person: int) -> CanonicalField:
        return self.fields[person]

    def forward_person(self, person: int, points: Tensor) -> tuple[Tensor, Tensor]:
        """Person ``person``'s field at its canonical points (..., 3) -> density (...), rgb (..., 3)."""
        return self.fields[person](points)

    def forward_all(
        self, points: Tensor, valid: Tensor | None = None, with_rgb: bool = True,
        directions: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Padded evaluation: points (L, N, 3) -> density (L, N), rgb (L, N, 3).

        ``valid`` (L, N) bool marks real entries; padded entries are not
        evaluated and get density 0 and rgb 0.  ``directions`` (L, N, 3): canonical
        unit viewing directions for fields that use them.
        """
        L = len(self.fields)
        if points.shape[0] != L or points.shape[-1] != 3 or points.dim() != 3:
            raise ValueError(f"expected points of shape ({L}, N, 3), got {tuple(points.shape)}")
        densities, rgbs = [], []
        for person, field in enumerate(self.fields):
            p = points[person]
            dirs = None if directions is None else directions[person]
            if valid is None:
                d, rgb, _ = field.query(p, with_rgb=with_rgb, directions=dirs)
            else:
                sel = valid[person].nonzero().squeeze(1)
                d_sel, rgb_sel, _ = field.query(p.index_select(0, sel), with_rgb=with_rgb,
                                                directions=None if dirs is None else dirs.index_select(0, sel))
                d = d_sel.new_zeros(p.shape[0]).index_copy(0, sel, d_sel)
                rgb = d_sel.new_zeros(p.shape[0], 3).index_copy(0, sel, rgb_sel) if with_rgb else None
            densities.append(d)
            rgbs.append(rgb)
        density = torch.stack(densities, 0)
        rgb = torch.stack(rgbs, 0) if with_rgb else None
        return density, rgb

    def forward(self, points: Tensor, valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
        density, rgb = self.forward_all(points, valid)
        assert rgb is not None
        return density, rgb

    def density_all(self, points: Tensor, valid: Tensor | None = None) -> Tensor:
        """Density only, padded (L, N, 3) -> (L, N)."""
        return self.forward_all(points, valid, with_rgb=False)[0]
