"""How deep people's bodies pass into each other: the collision loss's effect, measured on meshes.

For every frame and ordered pair (a, b) of people, the vertices of a's mesh that lie inside
b's closed mesh, and their distance to b's surface (the penetration depth). trimesh does the
inside test (ray parity) and the closest-point query.
"""

from __future__ import annotations

import numpy as np
import trimesh
import trimesh.proximity


def penetration_depths(vertices_a: np.ndarray, mesh_b: trimesh.Trimesh) -> np.ndarray:
    """(V,) depth in metres of each vertex of a inside mesh b (0 outside)."""
    depths = np.zeros(len(vertices_a))
    lo, hi = mesh_b.bounds
    candidates = np.flatnonzero(np.all((vertices_a > lo) & (vertices_a < hi), axis=1))
    if len(candidates) == 0:
        return depths
    inside = candidates[mesh_b.contains(vertices_a[candidates])]
    if len(inside):
        _, distance, _ = trimesh.proximity.closest_point(mesh_b, vertices_a[inside])
        depths[inside] = distance
    return depths


def interpenetration(vertices: np.ndarray, faces: np.ndarray) -> dict[str, float]:
    """Interpenetration of K people over F frames.

    vertices (K, F, V, 3) posed meshes in metres, faces (T, 3) closed meshes. Returns
    inside_share: mean over frames and ordered pairs of the share of a's vertices inside b;
    mean_depth_m: mean depth of those inside vertices (0 when none);
    mean_vertex_depth_m: mean depth over all vertices (inside ones count their depth, the
    rest 0), the number that a collision term should lower;
    max_depth_m: the deepest vertex.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    if vertices.ndim != 4 or vertices.shape[-1] != 3:
        raise ValueError(f"vertices must be (K, F, V, 3), got {vertices.shape}")
    num_people, num_frames = vertices.shape[:2]
    shares, all_depths = [], []
    for frame in range(num_frames):
        for b in range(num_people):
            mesh_b = trimesh.Trimesh(vertices[b, frame], faces, process=False)
            for a in range(num_people):
                if a != b:
                    depths = penetration_depths(vertices[a, frame], mesh_b)
                    shares.append(float((depths > 0).mean()))
                    all_depths.append(depths)
    if not all_depths:
        return {"inside_share": 0.0, "mean_depth_m": 0.0, "mean_vertex_depth_m": 0.0, "max_depth_m": 0.0}
    depths = np.concatenate(all_depths)
    inside = depths[depths > 0]
    return {"inside_share": float(np.mean(shares)),
            "mean_depth_m": float(inside.mean()) if len(inside) else 0.0,
            "mean_vertex_depth_m": float(depths.mean()),
            "max_depth_m": float(depths.max())}


def smpl_interpenetration(body_model, people: dict) -> dict[str, float]:
    """`interpenetration` of SmplSequence-like people (betas, body_pose, global_orient, transl)
    posed with a BodyModel; frames in the order stored."""
    import torch

    meshes = []
    with torch.no_grad():
        for seq in people.values():
            num_frames = len(seq.transl)
            out = body_model(betas=torch.as_tensor(np.asarray(seq.betas), dtype=torch.float32).reshape(1, -1)
                             .expand(num_frames, -1),
                             body_pose=torch.as_tensor(np.asarray(seq.body_pose), dtype=torch.float32).reshape(num_frames, -1),
                             global_orient=torch.as_tensor(np.asarray(seq.global_orient), dtype=torch.float32).reshape(num_frames, 3),
                             transl=torch.as_tensor(np.asarray(seq.transl), dtype=torch.float32).reshape(num_frames, 3))
            meshes.append(out.vertices.numpy())
    return interpenetration(np.stack(meshes), body_model.faces_np)
