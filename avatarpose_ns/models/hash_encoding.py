"""Multiresolution hash encoding (Instant-NGP), with a fast pure-torch path.

`HashGridEncoding` maps points in the unit cube to the concatenated, trilinearly
interpolated features of ``num_levels`` grids of growing resolution.  It uses
tinycudann's ``HashGrid`` when that package imports and the input lives on a
CUDA device, and otherwise a vectorised torch implementation that works on any
device (CPU included) without compilers.

The torch path follows tinycudann's grid definition, so that one parameter
tensor serves both back-ends (a checkpoint trained with tinycudann on a GPU
loads and evaluates on a CPU, and the other way round; the parameter count is
checked when the tinycudann module is built):

* level ``l`` has scale ``s_l = base_resolution * per_level_scale**l - 1`` and
  resolution ``r_l = ceil(s_l) + 1``; a point ``x`` sits at ``x * s_l + 0.5``
  in grid units;
* level ``l`` owns ``min(next_multiple_of_8(r_l**3), 2**log2_hashmap_size)``
  rows of the table; a level whose ``r_l**3`` grid fits in its rows is indexed
  densely (``i + j r + k r^2``, no collisions), the finer ones are hashed with
  Instant-NGP's primes ``(1, 2654435761, 805459861)`` combined by xor; either
  index is taken modulo the level's row count;
* the parameters are one flat vector laid out level after level, row-major
  ``(rows, features_per_level)``, as in tinycudann's ``Encoding.params``.

The torch path computes all levels at once (levels as the leading batch
dimension, corners before points so elementwise work runs along long
contiguous rows), builds the 8 corner indices per level from per-axis terms by
broadcasting, and does the gather-and-blend in one ``embedding_bag`` call.  The
backward is written by hand: the table gradient is accumulated with a single
``index_add_`` (two features are packed into one complex number when
``features_per_level == 2`` so each corner is one scattered add), and the
gradient with respect to the input positions is computed analytically from
the per-axis interpolation weights.  ``d output / d x`` is exact (the
interpolation is piecewise trilinear), which pose optimisation relies on: it
moves canonical points through the deformer.  Inputs outside the unit cube
are clamped onto it, with ``torch.clamp``'s gradient (zero outside the open
cube).  Second derivatives are not supported.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

try:  # optional fused CUDA kernels
    import tinycudann as _tcnn  # type: ignore
except Exception:  # ImportError, or a broken CUDA install
    _tcnn = None

HASH_PRIMES: tuple[int, int, int] = (1, 2654435761, 805459861)

__all__ = ["HashGridEncoding", "hash_grid_levels", "tcnn_available", "HASH_PRIMES"]


def tcnn_available() -> bool:
    """True when tinycudann imported (it is only used for CUDA inputs)."""
    return _tcnn is not None


def hash_grid_levels(
    num_levels: int,
    log2_hashmap_size: int,
    base_resolution: int,
    per_level_scale: float,
) -> list[dict]:
    """Per-level geometry of the grid, with tinycudann's formulas (float32 scales).

    Returns one dict per level: ``scale`` (float), ``resolution`` (int),
    ``offset`` (first row in the table), ``size`` (rows), ``dense`` (bool).
    """
    if per_level_scale < 1.0:
        raise ValueError("per_level_scale must be >= 1")
    table_size = 1 << int(log2_hashmap_size)
    log2_scale = np.float32(np.log2(np.float32(per_level_scale)))
    levels = []
    offset = 0
    for level in range(num_levels):
        growth = np.float32(np.exp2(np.float32(level) * log2_scale))
        scale = float(growth * np.float32(base_resolution) - np.float32(1.0))
        resolution = int(math.ceil(scale)) + 1
        dense_rows = resolution**3
        size = min(((dense_rows + 7) // 8) * 8, table_size)
        levels.append(
            dict(scale=scale, resolution=resolution, offset=offset, size=size, dense=dense_rows <= size)
        )
        offset += size
    return levels


class _HashGridFunction(torch.autograd.Function):
    """Encoding of x (N, 3) with table (R, F) -> (L, N, F), with a hand-written backward.

    Table gradient: out[l, n] = sum_c w[l, c, n] table[idx[l, c, n]], so
    d table[idx] += w * grad_out, one scattered add per corner.  Position
    gradient: w is a product of per-axis weights (1 - t, t) with t the
    fractional position in the cell, so d out / d t_axis is a difference of
    corner features weighted by the other two axes; d t / d x = level scale.
    """

    @staticmethod
    def forward(ctx, x: Tensor, table: Tensor, enc: HashGridEncoding) -> Tensor:  # type: ignore[override]
        L, n, F = enc.num_levels, x.shape[0], table.shape[1]
        # Same position-gradient mask as torch.clamp(x, 0, 1): zero outside and on the faces.
        inside = ((x > 0.0) & (x < 1.0)) if ctx.needs_input_grad[0] else None
        idx, wf = enc.corner_indices_and_axis_weights(x.clamp(0.0, 1.0))
        w = _corner_weights(wf)  # (L, 8, N)
        bags = idx.transpose(1, 2).reshape(L * n, 8)
        bag_w = w.transpose(1, 2).reshape(L * n, 8)
        out = torch.nn.functional.embedding_bag(bags, table, per_sample_weights=bag_w, mode="sum")
        # The corner weights are recomputed from the per-axis ones in the backward (less memory held).
        ctx.save_for_backward(table, idx, wf, enc._scales, inside)
        return out.view(L, n, F)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        table, idx, wf, scales, inside = ctx.saved_tensors
        rows, feats = table.shape
        L, _, n = idx.shape
        g = grad_out.contiguous()  # (L, N, F)
        grad_x = grad_table = None
        # Two features pack into one complex number: one scattered add / gather per corner.
        pack = feats == 2 and table.device.type == "cpu"
        # Work through the levels in chunks: the temporaries stay small (cache-friendly, and
        # reused by the allocator instead of fresh pages every step).
        step = max(1, _CHUNK_ELEMENTS // max(1, 8 * n * feats))
        chunks = [(lo, min(L, lo + step)) for lo in range(0, L, step)]

        if ctx.needs_input_grad[1]:
            if pack:
                grad_c = torch.zeros(rows, dtype=_complex_of(table.dtype), device=table.device)
            else:
                grad_flat = torch.zeros(rows * feats, dtype=table.dtype, device=table.device)
            for lo, hi in chunks:
                w_c, g_c, idx_c = _corner_weights(wf[lo:hi]), g[lo:hi], idx[lo:hi]
                contrib = torch.empty((hi - lo, 8, n, feats), dtype=table.dtype, device=table.device)
                for f in range(feats):
                    torch.mul(w_c, g_c[:, None, :, f], out=contrib[..., f])
                if pack:
                    grad_c.index_add_(0, idx_c.reshape(-1), torch.view_as_complex(contrib).reshape(-1))
                else:
                    flat = idx_c.to(torch.int64).unsqueeze(-1) * feats + torch.arange(feats, device=idx.device)
                    grad_flat.index_add_(0, flat.reshape(-1), contrib.reshape(-1))
            grad_table = torch.view_as_real(grad_c) if pack else grad_flat.view(rows, feats)

        if ctx.needs_input_grad[0]:
            grad_t = torch.empty((L, 3, n), dtype=table.dtype, device=table.device)
            for lo, hi in chunks:
                flat_idx = idx[lo:hi].reshape(-1)
                if pack:
                    corner = torch.view_as_real(torch.view_as_complex(table).index_select(0, flat_idx))
                else:
                    corner = table.index_select(0, flat_idx)
                corner = corner.view(hi - lo, 8, n, feats)
                g_c = g[lo:hi, None]  # (Lc, 1, N, F)
                # G[l, c, n] = <grad_out[l, n], feature of corner c>, as (Lc, bx, by, bz, N).
                G = corner[..., 0] * g_c[..., 0]
                for f in range(1, feats):
                    G.addcmul_(corner[..., f], g_c[..., f])
                G = G.view(hi - lo, 2, 2, 2, n)
                wx, wy, wz = wf[lo:hi, 0], wf[lo:hi, 1], wf[lo:hi, 2]  # (Lc, 2, N) each
                dz = G[:, :, :, 1] - G[:, :, :, 0]  # (Lc, bx, by, N)
                torch.sum(dz * (wx[:, :, None] * wy[:, None, :]), (1, 2), out=grad_t[lo:hi, 2])
                Gz = (G * wz[:, None, None]).sum(3)  # (Lc, bx, by, N)
                torch.sum((Gz[:, 1] - Gz[:, 0]) * wy, 1, out=grad_t[lo:hi, 0])
                torch.sum((Gz[:, :, 1] - Gz[:, :, 0]) * wx, 1, out=grad_t[lo:hi, 1])
            grad_x = (grad_t * scales.to(grad_t.dtype).view(L, 1, 1)).sum(0).t()
            grad_x = grad_x * inside
        return grad_x, grad_table, None


_CHUNK_ELEMENTS = 1 << 22  # elements of the largest backward temporary (16 MB in float32)


def _corner_weights(wf: Tensor) -> Tensor:
    """Per-axis weights (L, 3, 2, N) -> trilinear corner weights (L, 8, N), corner = 4 bx + 2 by + bz."""
    L, _, _, n = wf.shape
    w = (wf[:, 0, :, None, :] * wf[:, 1, None, :, :]).unsqueeze(3) * wf[:, 2, None, None, :, :]
    return w.reshape(L, 8, n)


def _complex_of(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


class HashGridEncoding(nn.Module):
    """Multiresolution hash encoding: (N, 3) in [0, 1] -> (N, num_levels * features_per_level).

    Args:
        num_levels, features_per_level, log2_hashmap_size, base_resolution,
        per_level_scale: grid configuration (Instant-NGP / tinycudann names).
        init_scale: the table is initialised uniformly in [-init_scale, init_scale].
        implementation: "auto" uses tinycudann for CUDA inputs when it imports,
            "torch" never does, "tcnn" requires it (error otherwise).

    Inputs outside the unit cube are clamped onto it (zero gradient there).
    The parameter ``params`` is the flat table (tinycudann's layout); ``table``
    is its (rows, features_per_level) view.
    """

    def __init__(
        self,
        num_levels: int = 16,
        features_per_level: int = 2,
        log2_hashmap_size: int = 19,
        base_resolution: int = 16,
        per_level_scale: float = 1.5,
        init_scale: float = 1e-4,
        implementation: Literal["auto", "torch", "tcnn"] = "auto",
    ) -> None:
        super().__init__()
        self.num_levels = int(num_levels)
        self.features_per_level = int(features_per_level)
        self.log2_hashmap_size = int(log2_hashmap_size)
        self.base_resolution = int(base_resolution)
        self.per_level_scale = float(per_level_scale)
        self.implementation = implementation
        self.levels = hash_grid_levels(num_levels, log2_hashmap_size, base_resolution, per_level_scale)
        self.num_rows = sum(lv["size"] for lv in self.levels)
        # Dense levels are the coarse ones, so they form a prefix.
        self.num_dense_levels = sum(lv["dense"] for lv in self.levels)
        assert all(lv["dense"] for lv in self.levels[: self.num_dense_levels])

        params = (torch.rand(self.num_rows * self.features_per_level) * 2.0 - 1.0) * init_scale
        self.params = nn.Parameter(params)

        L, Ld = self.num_levels, self.num_dense_levels
        self.register_buffer(
            "_scales", torch.tensor([lv["scale"] for lv in self.levels], dtype=torch.float32), persistent=False
        )
        self.register_buffer(
            "_offsets", torch.tensor([lv["offset"] for lv in self.levels], dtype=torch.int64), persistent=False
        )
        dense_strides = [[1, lv["resolution"], lv["resolution"] ** 2] for lv in self.levels[:Ld]]
        self.register_buffer(
            "_dense_strides", torch.tensor(dense_strides, dtype=torch.int64).view(Ld, 3, 1), persistent=False
        )
        # int32 indices halve the memory traffic of the index arithmetic and gathers.
        self._index_dtype = torch.int32 if self.num_rows < 2**31 else torch.int64
        self.register_buffer(
            "_dense_sizes",
            torch.tensor([lv["size"] for lv in self.levels[:Ld]], dtype=self._index_dtype).view(Ld, 1, 1, 1, 1),
            persistent=False,
        )
        self.register_buffer(
            "_dense_ends",
            torch.tensor([lv["offset"] + lv["size"] for lv in self.levels[:Ld]], dtype=self._index_dtype).view(
                Ld, 1, 1, 1, 1
            ),
            persistent=False,
        )
        self.register_buffer("_primes", torch.tensor(HASH_PRIMES, dtype=torch.int64).view(1, 3, 1), persistent=False)
        self._hash_mask = (1 << self.log2_hashmap_size) - 1
        self._num_hashed = L - Ld

        # The tinycudann module is kept out of the module tree (object.__setattr__), so that
        # state_dict, .to() and optimisers only ever see ``self.params``.
        object.__setattr__(self, "_tcnn_module", None)
        if implementation == "tcnn" and _tcnn is None:
            raise ImportError("implementation='tcnn' requested but tinycudann does not import")
        if implementation in ("auto", "tcnn") and _tcnn is not None and torch.cuda.is_available():
            object.__setattr__(self, "_tcnn_module", self._make_tcnn())

    # ------------------------------------------------------------------ info
    @property
    def n_output_dims(self) -> int:
        return self.num_levels * self.features_per_level

    @property
    def table(self) -> Tensor:
        """The parameters as a (rows, features_per_level) view."""
        return self.params.view(self.num_rows, self.features_per_level)

    def tcnn_config(self) -> dict:
        return {
            "otype": "HashGrid",
            "n_levels": self.num_levels,
            "n_features_per_level": self.features_per_level,
            "log2_hashmap_size": self.log2_hashmap_size,
            "base_resolution": self.base_resolution,
            "per_level_scale": self.per_level_scale,
            "interpolation": "Linear",
        }

    def extra_repr(self) -> str:
        return (
            f"levels={self.num_levels}x{self.features_per_level}, table=2^{self.log2_hashmap_size}, "
            f"base={self.base_resolution}, scale={self.per_level_scale}, dense_levels={self.num_dense_levels}, "
            f"rows={self.num_rows}, tcnn={self._tcnn_module is not None}"
        )

    # ------------------------------------------------------------------ tcnn
    def _make_tcnn(self):
        try:
            # float32: the position gradient (pose optimisation) is too coarse in half precision.
            module = _tcnn.Encoding(n_input_dims=3, encoding_config=self.tcnn_config(), dtype=torch.float32)
        except Exception as exc:  # no usable CUDA device / unsupported build
            if self.implementation == "tcnn":
                raise
            warnings.warn(f"tinycudann HashGrid unavailable ({exc}); using the torch hash grid")
            return None
        if module.params.numel() != self.params.numel():
            message = (
                f"tinycudann HashGrid has {module.params.numel()} parameters, the torch layout "
                f"{self.params.numel()} (different tinycudann version?)"
            )
            if self.implementation == "tcnn":
                raise RuntimeError(message)
            warnings.warn(message + "; using the torch hash grid")
            return None
        return module

    def _tcnn_forward(self, x: Tensor) -> Tensor:
        module = self._tcnn_module
        module.params = self.params  # share the one parameter tensor
        return module(x).to(torch.float32)

    # ------------------------------------------------------------------ torch
    def corner_indices_and_weights(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Table rows (L, 8, N) (int32, or int64 for huge tables) and trilinear weights (L, 8, N).

        x: (N, 3) in [0, 1].  Corner c = 4 * bx + 2 * by + bz (b* in {0, 1}).
        """
        idx, wf = self.corner_indices_and_axis_weights(x)
        return idx, _corner_weights(wf)

    @torch.no_grad()
    def corner_indices_and_axis_weights(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Table rows (L, 8, N) and per-axis weights (L, 3, 2, N): (1 - t, t), t the position in the cell."""
        L, Ld, Lh = self.num_levels, self.num_dense_levels, self._num_hashed
        n = x.shape[0]
        itype = self._index_dtype
        scales = self._scales.to(x.dtype).view(L, 1, 1)
        pos = torch.addcmul(torch.full((), 0.5, dtype=x.dtype, device=x.device), x.t().unsqueeze(0), scales)
        cell = pos.floor()  # (L, 3, N)
        wf = torch.empty((L, 3, 2, n), dtype=x.dtype, device=x.device)
        torch.sub(pos, cell, out=wf[:, :, 1])  # t, the position in the cell
        torch.sub(torch.ones((), dtype=x.dtype, device=x.device), wf[:, :, 1], out=wf[:, :, 0])  # 1 - t

        idx = torch.empty((L, 2, 2, 2, n), dtype=itype, device=x.device)
        if Ld > 0:
            # Per-axis terms of i + j r + k r^2 for the low and high corner: (Ld, 3, 2, N).
            # r^3 <= 2^log2_hashmap_size, so these fit the index type.
            stride = self._dense_strides.to(itype)
            axis = torch.empty((Ld, 3, 2, n), dtype=itype, device=x.device)
            torch.mul(cell[:Ld].to(itype), stride, out=axis[:, :, 0])
            torch.add(axis[:, :, 0], stride, out=axis[:, :, 1])
            axis[:, 0] += self._offsets[:Ld].view(Ld, 1, 1).to(itype)
            dense = idx[:Ld]
            xy = axis[:, 0, :, None, :] + axis[:, 1, None, :, :]  # (Ld, 2, 2, N)
            torch.add(xy.unsqueeze(3), axis[:, 2, None, None, :, :], out=dense)
            # A corner one past the last row/column spills into the next one,
            # or past the level's rows: wrap as tinycudann does (index % size).
            dense -= (dense >= self._dense_ends).to(itype) * self._dense_sizes
        if Lh > 0:
            # Instant-NGP's hash, in int64 (no overflow) and reduced to the table size (a power of 2).
            axis = torch.empty((Lh, 3, 2, n), dtype=torch.int64, device=x.device)
            torch.mul(cell[Ld:].to(torch.int64), self._primes, out=axis[:, :, 0])
            torch.add(axis[:, :, 0], self._primes, out=axis[:, :, 1])
            axis &= self._hash_mask
            axis = axis.to(itype)
            hashed = idx[Ld:]
            xy = axis[:, 0, :, None, :] ^ axis[:, 1, None, :, :]
            torch.bitwise_xor(xy.unsqueeze(3), axis[:, 2, None, None, :, :], out=hashed)
            hashed += self._offsets[Ld:].view(Lh, 1, 1, 1, 1).to(itype)
        return idx.view(L, 8, n), wf

    def torch_forward(self, x: Tensor) -> Tensor:
        L, F = self.num_levels, self.features_per_level
        n = x.shape[0]
        table = self.table
        out = _HashGridFunction.apply(x.to(table.dtype), table, self)  # (L, N, F)
        return out.permute(1, 0, 2).reshape(n, L * F)

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        x = x.reshape(-1, 3)
        if self._tcnn_module is not None and x.is_cuda and self.params.is_cuda:
            out = self._tcnn_forward(x.clamp(0.0, 1.0))
        else:
            out = self.torch_forward(x)
        return out.view(*lead, self.n_output_dims)
