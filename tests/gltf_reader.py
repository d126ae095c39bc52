"""A small independent glTF reader for the export tests: accessors as arrays, the node hierarchy posed
at one animation key, and glTF's linear blend skinning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pygltflib
from scipy.spatial.transform import Rotation


class Glb:
    """Arrays of a GLB by accessor, the node hierarchy posed by the animation at one key, and LBS."""

    def __init__(self, path: Path) -> None:
        self.gltf = pygltflib.GLTF2().load(str(path))
        self.blob = self.gltf.binary_blob()

    def array(self, index: int) -> np.ndarray:
        accessor = self.gltf.accessors[index]
        view = self.gltf.bufferViews[accessor.bufferView]
        dtype = {pygltflib.FLOAT: np.float32, pygltflib.UNSIGNED_BYTE: np.uint8,
                 pygltflib.UNSIGNED_SHORT: np.uint16, pygltflib.UNSIGNED_INT: np.uint32}[accessor.componentType]
        width = {"SCALAR": 1, "VEC3": 3, "VEC4": 4, "MAT4": 16}[accessor.type]
        start = (view.byteOffset or 0) + (accessor.byteOffset or 0)
        data = np.frombuffer(self.blob, dtype=dtype, count=accessor.count * width, offset=start)
        return data.reshape(accessor.count, width).astype(np.float64 if dtype == np.float32 else np.int64)

    def node_index(self, name: str) -> int:
        return next(i for i, node in enumerate(self.gltf.nodes) if node.name == name)

    def world_matrices(self, key: int | None) -> dict[int, np.ndarray]:
        """Every node's world matrix (4, 4) with the animation's values at keyframe ``key`` (None: the nodes'
        own TRS, the rest pose)."""
        trs = {i: {"translation": np.array(n.translation or [0, 0, 0], float),
                   "rotation": np.array(n.rotation or [0, 0, 0, 1], float)} for i, n in enumerate(self.gltf.nodes)}
        animation = self.gltf.animations[0]
        for channel in animation.channels if key is not None else []:
            sampler = animation.samplers[channel.sampler]
            trs[channel.target.node][channel.target.path] = self.array(sampler.output)[key]
        local = {}
        for i, values in trs.items():
            matrix = np.eye(4)
            matrix[:3, :3] = Rotation.from_quat(values["rotation"]).as_matrix()
            matrix[:3, 3] = values["translation"]
            local[i] = matrix
        world: dict[int, np.ndarray] = {}

        def visit(i: int, parent: np.ndarray) -> None:
            world[i] = parent @ local[i]
            for child in self.gltf.nodes[i].children or []:
                visit(child, world[i])

        for root in self.gltf.scenes[self.gltf.scene].nodes:
            visit(root, np.eye(4))
        return world

    def skinned_vertices(self, mesh_node: int, key: int) -> np.ndarray:
        """glTF's skinning: v = sum_i w_i (world(joint_i) @ inverse_bind_i) v_bind."""
        node = self.gltf.nodes[mesh_node]
        skin = self.gltf.skins[node.skin]
        primitive = self.gltf.meshes[node.mesh].primitives[0]
        positions = self.array(primitive.attributes.POSITION)
        joints = self.array(primitive.attributes.JOINTS_0)
        weights = self.array(primitive.attributes.WEIGHTS_0)
        inverse_bind = self.array(skin.inverseBindMatrices).reshape(-1, 4, 4).transpose(0, 2, 1)  # column-major
        world = self.world_matrices(key)
        joint_matrices = np.stack([world[j] for j in skin.joints]) @ inverse_bind  # (24, 4, 4)
        blended = np.einsum("vi,vimn->vmn", weights, joint_matrices[joints])
        return np.einsum("vmn,vn->vm", blended[:, :3, :3], positions) + blended[:, :3, 3]
