"""Skinned, animated glTF 2.0 binaries (GLB) of `Rig`s, written through pygltflib.

Per rig: one mesh (bind pose, the shaped T-pose; normals; vertex colours where the rig has
them, else one colour per person), a skin over its 24 joint nodes with inverse bind
matrices ``T(-J_j)`` (the bind pose has every joint unrotated at its rest position
``J_j``), and in the file's one animation ("motion") a rotation channel per joint and a
translation channel for the root, keyed at the rig's frame times, LINEAR. The frame is
y-up (see `rig`: the input world's rotation to y-up sits in the root's keys).

glTF skins a vertex by at most 4 joints (``JOINTS_0`` / ``WEIGHTS_0``): each vertex keeps its
4 largest SMPL weights, renormalised to sum to 1 (`four_influences`).

Joint nodes are named as SMPL names the joints (``pelvis``, ``left_hip``, ...); in a file
with several people they are prefixed ``person<pid>_`` so that every node name is unique.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pygltflib as gl

from avatarpose_ns.export.rig import Rig

INFLUENCES = 4  # joints per vertex in glTF's JOINTS_0 / WEIGHTS_0


def four_influences(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(V, 24) skinning weights -> joints (V, 4) uint8 and weights (V, 4) float32: each vertex's 4
    largest weights in decreasing order, renormalised to sum to 1; unused slots get joint 0, weight 0."""
    weights = np.asarray(weights, dtype=np.float64)
    order = np.argsort(-weights, axis=1, kind="stable")[:, :INFLUENCES]
    kept = np.take_along_axis(weights, order, axis=1).clip(min=0.0)
    kept /= kept.sum(axis=1, keepdims=True)
    kept = kept.astype(np.float32)
    joints = np.where(kept > 0, order, 0).astype(np.uint8)
    # renormalise once more in float32, the largest weight absorbing the rounding
    kept[:, 0] += np.float32(1.0) - kept.sum(axis=1, dtype=np.float32)
    return joints, kept


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (V, 3) float32 (a vertex in no face gets +y)."""
    v0, v1, v2 = (vertices[faces[:, k]] for k in range(3))
    face_normals = np.cross(v1 - v0, v2 - v0)
    normals = np.zeros_like(vertices, dtype=np.float64)
    for k in range(3):
        np.add.at(normals, faces[:, k], face_normals)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = np.where(length > 0, normals / np.maximum(length, 1e-30), [0.0, 1.0, 0.0])
    return normals.astype(np.float32)


class _Binary:
    """The file's one buffer: each array appended as its own 4-byte-aligned buffer view and accessor."""

    def __init__(self, gltf: gl.GLTF2) -> None:
        self.gltf = gltf
        self.chunks: list[bytes] = []
        self.length = 0

    def add(self, array: np.ndarray, kind: str, target: int | None = None, normalized: bool = False,
            bounds: bool = False) -> int:
        """Append ``array`` (count, components) as an accessor of type ``kind``; returns its index."""
        component = {np.dtype(np.float32): gl.FLOAT, np.dtype(np.uint8): gl.UNSIGNED_BYTE,
                     np.dtype(np.uint32): gl.UNSIGNED_INT}[array.dtype]
        data = np.ascontiguousarray(array).tobytes()
        self.gltf.bufferViews.append(gl.BufferView(buffer=0, byteOffset=self.length, byteLength=len(data),
                                                   target=target))
        padding = (-len(data)) % 4
        self.chunks.append(data + b"\0" * padding)
        self.length += len(data) + padding
        flat = array.reshape(len(array), -1)
        self.gltf.accessors.append(gl.Accessor(
            bufferView=len(self.gltf.bufferViews) - 1, componentType=component, normalized=normalized or None,
            count=len(array), type=kind,
            min=flat.min(axis=0).tolist() if bounds else None, max=flat.max(axis=0).tolist() if bounds else None))
        return len(self.gltf.accessors) - 1

    def blob(self) -> bytes:
        return b"".join(self.chunks)


def _material(gltf: gl.GLTF2, name: str, colour: Sequence[float]) -> int:
    gltf.materials.append(gl.Material(name=name, doubleSided=False, pbrMetallicRoughness=gl.PbrMetallicRoughness(
        baseColorFactor=[*map(float, colour), 1.0], metallicFactor=0.0, roughnessFactor=0.8)))
    return len(gltf.materials) - 1


def _add_rig(gltf: gl.GLTF2, binary: _Binary, rig: Rig, colour: Sequence[float], prefix: str,
             times_accessor: dict[bytes, int]) -> None:
    """Mesh, joint nodes, skin and animation channels of one rig; its root nodes join the scene."""
    mesh = rig.mesh
    positions = mesh.vertices.astype(np.float32)
    joints4, weights4 = four_influences(mesh.weights)
    attributes = gl.Attributes(
        POSITION=binary.add(positions, gl.VEC3, gl.ARRAY_BUFFER, bounds=True),
        NORMAL=binary.add(vertex_normals(mesh.vertices, mesh.faces), gl.VEC3, gl.ARRAY_BUFFER),
        JOINTS_0=binary.add(joints4, gl.VEC4, gl.ARRAY_BUFFER),
        WEIGHTS_0=binary.add(weights4, gl.VEC4, gl.ARRAY_BUFFER))
    if mesh.colors is not None:
        rgba = np.concatenate([np.round(np.clip(mesh.colors, 0, 1) * 255), np.full((len(mesh.colors), 1), 255)], 1)
        attributes.COLOR_0 = binary.add(rgba.astype(np.uint8), gl.VEC4, gl.ARRAY_BUFFER, normalized=True)
        colour = (1.0, 1.0, 1.0)  # the vertex colours carry the avatar's appearance
    indices = binary.add(mesh.faces.astype(np.uint32).reshape(-1, 1), gl.SCALAR, gl.ELEMENT_ARRAY_BUFFER)
    gltf.meshes.append(gl.Mesh(name=f"{rig.name}_body", primitives=[gl.Primitive(
        attributes=attributes, indices=indices, material=_material(gltf, f"{rig.name}_skin", colour))]))

    first = len(gltf.nodes)  # joint j is node first + j
    offsets = rig.offsets
    for j, name in enumerate(rig.joint_names):
        children = [first + c for c in np.flatnonzero(rig.parents == j).tolist()]
        gltf.nodes.append(gl.Node(name=prefix + name, translation=offsets[j].tolist(), children=children or None))
    inverse_bind = np.tile(np.eye(4, dtype=np.float32), (len(rig.joint_names), 1, 1))
    inverse_bind[:, :3, 3] = -rig.rest_joints
    gltf.skins.append(gl.Skin(
        name=f"{rig.name}_skeleton", skeleton=first, joints=list(range(first, first + len(rig.joint_names))),
        inverseBindMatrices=binary.add(inverse_bind.transpose(0, 2, 1).copy(), gl.MAT4)))  # column-major
    gltf.nodes.append(gl.Node(name=f"{rig.name}_body", mesh=len(gltf.meshes) - 1, skin=len(gltf.skins) - 1,
                              extras={"person_id": rig.person_id, "frames": rig.frames.tolist()}))
    gltf.scenes[0].nodes += [len(gltf.nodes) - 1, first]

    times = rig.times.astype(np.float32).reshape(-1, 1)
    key = times.tobytes()
    if key not in times_accessor:
        times_accessor[key] = binary.add(times, gl.SCALAR, bounds=True)
    animation = gltf.animations[0]

    def channel(node: int, path: str, values: np.ndarray, kind: str) -> None:
        animation.samplers.append(gl.AnimationSampler(input=times_accessor[key], output=binary.add(
            values.astype(np.float32), kind), interpolation=gl.ANIM_LINEAR))
        animation.channels.append(gl.AnimationChannel(sampler=len(animation.samplers) - 1,
                                                      target=gl.AnimationChannelTarget(node=node, path=path)))

    channel(first, "translation", rig.root_translation, gl.VEC3)
    for j in range(len(rig.joint_names)):
        channel(first + j, "rotation", rig.rotations[:, j], gl.VEC4)


def write_glb(path: Path, rigs: Sequence[Rig], colours: Sequence[Sequence[float]],
              extras: dict | None = None) -> Path:
    """One GLB holding ``rigs`` (their meshes coloured ``colours`` (L, 3) in [0, 1] where they have no
    vertex colours), one animation with all of them; ``extras`` go into the scene's extras."""
    if not rigs:
        raise ValueError("no rigs to write")
    gltf = gl.GLTF2(asset=gl.Asset(version="2.0", generator="avatarpose-export animation (pygltflib)"),
                    scene=0, scenes=[gl.Scene(name="avatarpose", nodes=[], extras=extras or {})],
                    animations=[gl.Animation(name="motion", samplers=[], channels=[])])
    binary = _Binary(gltf)
    times_accessor: dict[bytes, int] = {}
    for rig, colour in zip(rigs, colours, strict=True):
        _add_rig(gltf, binary, rig, colour, f"{rig.name}_" if len(rigs) > 1 else "", times_accessor)
    blob = binary.blob()
    gltf.buffers = [gl.Buffer(byteLength=len(blob))]
    gltf.set_binary_blob(blob)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    gltf.save_binary(str(path))
    return path
