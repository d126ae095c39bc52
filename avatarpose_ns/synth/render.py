"""Exact ray-cast renderer for the synthetic sequences (no neural rendering involved).

One ray per pixel centre, cast from the camera's undistorted pixel rays (so lens
distortion comes out exactly as cv2.projectPoints predicts) against all people
at once with embree; the first hit gives the pixel's person, depth and colour
(barycentric interpolation of vertex colours, Lambertian shading with
interpolated vertex normals).
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Sequence

import numpy as np
import trimesh
import trimesh.triangles

from avatarpose_ns.io.cameras import CameraCalib, pixel_rays

try:  # embree backend (package embreex)
    from trimesh.ray.ray_pyembree import RayMeshIntersector as _Intersector

    HAS_EMBREE = True
except Exception:  # pragma: no cover - only without embreex
    from trimesh.ray.ray_triangle import RayMeshIntersector as _Intersector

    HAS_EMBREE = False

DEFAULT_BACKGROUND = (0.5, 0.5, 0.5)


@dataclass
class MeshLayer:
    """One person, posed, in world coordinates."""

    vertices: np.ndarray  # (V, 3) float
    faces: np.ndarray  # (F, 3) int
    vertex_colors: np.ndarray  # (V, 3) float in [0, 1]


@dataclass
class RenderResult:
    rgb: np.ndarray  # (H, W, 3) uint8
    person_index: np.ndarray  # (H, W) int16: -1 background, else index into the layers list
    depth: np.ndarray  # (H, W) float32: camera z of the hit, inf for background


def _scene(layers: Sequence[MeshLayer]):
    """Concatenate layers into one mesh; return it, its vertex colours and each face's layer."""
    verts, faces, colors, owner = [], [], [], []
    offset = 0
    for i, layer in enumerate(layers):
        v = np.asarray(layer.vertices, dtype=np.float64).reshape(-1, 3)
        f = np.asarray(layer.faces, dtype=np.int64).reshape(-1, 3)
        c = np.asarray(layer.vertex_colors, dtype=np.float64).reshape(-1, 3)
        if c.shape[0] != v.shape[0]:
            raise ValueError(f"layer {i}: {c.shape[0]} vertex colours for {v.shape[0]} vertices")
        if f.size and (f.min() < 0 or f.max() >= v.shape[0]):
            raise ValueError(f"layer {i}: face indices out of range")
        if not np.all(np.isfinite(v)):
            raise ValueError(f"layer {i}: non-finite vertices")
        verts.append(v)
        faces.append(f + offset)
        colors.append(c)
        owner.append(np.full(len(f), i, dtype=np.int16))
        offset += len(v)
    if offset == 0 or sum(len(f) for f in faces) == 0:
        return None, None, None
    mesh = trimesh.Trimesh(
        vertices=np.concatenate(verts), faces=np.concatenate(faces), process=False, validate=False
    )
    return mesh, np.concatenate(colors), np.concatenate(owner)


def point_lights_diffuse(points: np.ndarray, normals: np.ndarray, lights: np.ndarray) -> np.ndarray:
    """(N,) Lambertian term in [0, 1] of point lights at (K, 3) `lights`, all on at once, on surface
    points (N, 3) with unit normals (N, 3). A surface faces about half of a ring of lights, so the
    mean over the lights is doubled to keep the images about as bright as with a headlight. No
    shadows are cast."""
    to_light = lights[None, :, :] - points[:, None, :]
    to_light /= np.maximum(np.linalg.norm(to_light, axis=-1, keepdims=True), 1e-12)
    cosines = np.clip(np.einsum("nd,nkd->nk", normals, to_light), 0.0, 1.0)
    return np.minimum(2.0 * cosines.mean(axis=1), 1.0)


def render_view(
    layers: list[MeshLayer],
    cam: CameraCalib,
    background: Sequence[float] = DEFAULT_BACKGROUND,
    light_dir: Sequence[float] | None = None,
    light_positions: np.ndarray | None = None,
    ambient: float = 0.35,
    noise_std: float = 0.0,
    rng: np.random.Generator | None = None,
    rays: tuple[np.ndarray, np.ndarray] | None = None,
) -> RenderResult:
    """Render ``layers`` as seen by ``cam`` (image size ``cam.width`` x ``cam.height``).

    background: RGB floats in [0, 1] for pixels that hit nothing.
    light_dir: world direction from the surface towards a key light; None uses a
        headlight (light from the camera).  With a key light, 40 % of the diffuse
        term still comes from the headlight so every visible side is lit.
    light_positions: (K, 3) world positions of point lights that are all on at once (e.g. one
        at every camera of the rig; `point_lights_diffuse`).  Unlike the headlight this
        shading is the same in every view, as in a real synchronised capture.  Overrides
        ``light_dir``.
    ambient: fraction of the albedo that is always present (0..1).
    noise_std: standard deviation of additive Gaussian sensor noise, in [0, 1]
        intensity units (applied to every pixel, background included).
    rays: ``pixel_rays(cam)`` computed once and reused across frames of a
        static camera (it costs about as much as the ray casting itself).
    """
    H, W = int(cam.height), int(cam.width)
    origins, dirs = pixel_rays(cam) if rays is None else rays
    if origins.shape != (H * W, 3) or dirs.shape != (H * W, 3):
        raise ValueError(f"rays must be two ({H * W}, 3) arrays for camera {cam.name}")
    bg = np.asarray(background, dtype=np.float64).reshape(3)
    image = np.tile(bg, (H * W, 1))
    person = np.full(H * W, -1, dtype=np.int16)
    depth = np.full(H * W, np.inf, dtype=np.float32)

    mesh, colors, owner = _scene(layers)
    if mesh is not None:
        intersector = _Intersector(mesh)
        locations, index_ray, index_tri = intersector.intersects_location(origins, dirs, multiple_hits=False)
        if len(index_ray):
            # keep one hit per ray (the nearest), should the backend report more
            o, d = origins[index_ray], dirs[index_ray]
            t_hit = np.einsum("ij,ij->i", locations - o, d)
            order = np.lexsort((t_hit, index_ray))
            index_ray, index_tri = index_ray[order], index_tri[order]
            first = np.ones(len(index_ray), dtype=bool)
            first[1:] = index_ray[1:] != index_ray[:-1]
            index_ray, index_tri = index_ray[first], index_tri[first]
            o, d = origins[index_ray], dirs[index_ray]

            # exact (float64) hit on the hit triangle's plane: embree works in float32
            tri = mesh.triangles[index_tri]
            fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
            denom = np.einsum("ij,ij->i", fn, d)
            ok = np.abs(denom) > 1e-18
            t = np.where(ok, np.einsum("ij,ij->i", fn, tri[:, 0] - o) / np.where(ok, denom, 1.0), 0.0)
            t_embree = np.einsum("ij,ij->i", locations[order][first] - o, d)
            t = np.where(ok & (np.abs(t - t_embree) < 1e-3 + 1e-4 * np.abs(t_embree)), t, t_embree)
            points = o + t[:, None] * d

            bary = trimesh.triangles.points_to_barycentric(tri, points)
            bad = ~np.all(np.isfinite(bary), axis=1)
            bary[bad] = 1.0 / 3.0
            bary = np.clip(bary, 0.0, None)
            bary /= np.maximum(bary.sum(axis=1, keepdims=True), 1e-12)

            fv = mesh.faces[index_tri]
            albedo = np.einsum("ij,ijk->ik", bary, colors[fv])
            normals = np.einsum("ij,ijk->ik", bary, mesh.vertex_normals[fv])
            nlen = np.linalg.norm(normals, axis=1, keepdims=True)
            face_n = fn / np.maximum(np.linalg.norm(fn, axis=1, keepdims=True), 1e-30)
            normals = np.where(nlen > 1e-9, normals / np.maximum(nlen, 1e-30), face_n)
            # two-sided: shade the side facing the camera
            flip = np.einsum("ij,ij->i", normals, d) > 0
            normals[flip] *= -1.0

            diffuse = np.clip(-np.einsum("ij,ij->i", normals, d), 0.0, 1.0)  # headlight
            if light_positions is not None:
                diffuse = point_lights_diffuse(points, normals, np.asarray(light_positions, dtype=np.float64))
            elif light_dir is not None:
                L = np.asarray(light_dir, dtype=np.float64).reshape(3)
                L = L / np.linalg.norm(L)
                key = np.clip(normals @ L, 0.0, 1.0)
                diffuse = 0.6 * key + 0.4 * diffuse
            shade = ambient + (1.0 - ambient) * diffuse
            image[index_ray] = albedo * shade[:, None]
            person[index_ray] = owner[index_tri]
            # camera z = t * (direction's camera-frame z)
            dz = d @ cam.R[2]
            depth[index_ray] = (t * dz).astype(np.float32)

    if noise_std > 0:
        rng = rng if rng is not None else np.random.default_rng()
        image = image + rng.normal(0.0, noise_std, size=image.shape)
    rgb = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8).reshape(H, W, 3)
    return RenderResult(rgb=rgb, person_index=person.reshape(H, W), depth=depth.reshape(H, W))
