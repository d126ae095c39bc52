"""Render avatarpose-export animation's files in Blender, headless: the GLB and the BVHs imported by Blender's
own importers, one frame, Cycles on the CPU, to a PNG (the picture in the README).

The skinned bodies come from the GLB; beside them (shifted by ``--skeleton-shift`` metres along the
camera's right) the BVH skeletons are drawn as sticks between the imported armature's joints. The script
also prints how far each BVH joint is from the same joint of the GLB's armature at that frame (Blender's
evaluation of both files), a check that they agree in a real importer.

Needs Blender as a Python module (``pip install bpy``; wheels exist for Python 3.11, about 370 MB), kept out
of the project's environment:

    python3.11 -m venv /tmp/bpy && /tmp/bpy/bin/pip install bpy
    /tmp/bpy/bin/python scripts/render_animation_blender.py --glb export/animation/everyone.glb \\
        --bvh export/animation/person0.bvh export/animation/person1.bvh --fps 30 --frame 7 \\
        --output docs/animation_blender.png
"""

from __future__ import annotations

import argparse
import math
import sys

import bpy
import numpy as np
from mathutils import Vector


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--glb", required=True)
    parser.add_argument("--bvh", nargs="*", default=[])
    parser.add_argument("--fps", type=float, default=30.0, help="the export's --fps")
    parser.add_argument("--frame", type=int, default=0, help="position in the exported frames (0: the first)")
    parser.add_argument("--output", required=True)
    parser.add_argument("--size", default="1000x640")
    parser.add_argument("--samples", type=int, default=24)
    parser.add_argument("--skeleton-shift", type=float, default=None,
                        help="metres between the bodies and the BVH skeletons (default: the group's width + 0.4)")
    return parser.parse_args(argv)


def material(name: str, rgb: tuple[float, float, float]) -> bpy.types.Material:
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (*rgb, 1.0)
    bsdf.inputs["Roughness"].default_value = 0.6
    return mat


def joint_positions(armature: bpy.types.Object) -> dict[str, Vector]:
    """World position of each bone's head (= the joint) at the current frame."""
    return {bone.name: armature.matrix_world @ bone.head for bone in armature.pose.bones}


def stick(a: Vector, b: Vector, radius: float, mat: bpy.types.Material) -> None:
    """A cylinder from a to b (a bone of the drawn skeleton) and a sphere at b (its joint)."""
    direction = b - a
    if direction.length > 1e-6:
        bpy.ops.mesh.primitive_cylinder_add(radius=radius, depth=direction.length, vertices=12,
                                            location=(a + b) / 2)
        cylinder = bpy.context.object
        cylinder.rotation_mode = "QUATERNION"
        cylinder.rotation_quaternion = direction.to_track_quat("Z", "Y")
        cylinder.data.materials.append(mat)
    bpy.ops.mesh.primitive_uv_sphere_add(radius=radius * 1.8, location=b, segments=12, ring_count=8)
    bpy.context.object.data.materials.append(mat)


def main(argv: list[str]) -> None:
    args = parse(argv)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps = round(args.fps)
    scene.render.fps_base = round(args.fps) / args.fps

    bpy.ops.import_scene.gltf(filepath=args.glb)
    glb_armatures = [o for o in scene.objects if o.type == "ARMATURE"]
    # the skinned meshes (the importer also adds an icosphere as its bones' display shape)
    bodies = [o for o in scene.objects if o.type == "MESH" and any(m.type == "ARMATURE" for m in o.modifiers)]
    # the GLB keys its frames at (frame number - first) / fps seconds, which the importer puts at that * fps
    keys = sorted({round(k.co[0]) for action in bpy.data.actions for fc in _fcurves(action)
                   for k in fc.keyframe_points}) or [0]
    glb_frame = keys[min(args.frame, len(keys) - 1)]

    bvh_armatures = []
    for path in args.bvh:
        before = set(scene.objects)
        bpy.ops.import_anim.bvh(filepath=path, frame_start=1, use_fps_scale=False)
        bvh_armatures += [o for o in scene.objects if o not in before and o.type == "ARMATURE"]
    scene.frame_set(glb_frame)
    glb_joints = [joint_positions(a) for a in glb_armatures]

    # BVH frame k + 1 is the export's frame k (one BVH frame per exported frame, from frame 1)
    scene.frame_set(args.frame + 1)
    bvh_joints = [joint_positions(a) for a in bvh_armatures]
    for armature, joints in zip(bvh_armatures, bvh_joints):
        prefix = armature.name.split(".")[0] + "_"
        for reference in glb_joints:
            names = {name.removeprefix(prefix) if name.startswith(prefix) else name: p for name, p in reference.items()}
            if set(joints) <= set(names):
                error = max((joints[n] - names[n]).length for n in joints)
                print(f"{armature.name}: BVH joints vs the GLB's at frame {args.frame}: max {error * 1000:.3f} mm")
    scene.frame_set(glb_frame)

    depsgraph = bpy.context.evaluated_depsgraph_get()
    points = np.concatenate([np.array([o.matrix_world @ v.co for v in o.evaluated_get(depsgraph).data.vertices])
                             for o in bodies])
    low, high = points.min(axis=0), points.max(axis=0)
    centre = Vector(((low + high) / 2).tolist())
    pelvises = [j.get("pelvis") or next(v for k, v in j.items() if k.endswith("pelvis")) for j in glb_joints]
    across = (pelvises[-1] - pelvises[0]) if len(pelvises) > 1 else Vector((1.0, 0.0, 0.0))
    across.z = 0.0
    right = across.normalized() if across.length > 1e-3 else Vector((1.0, 0.0, 0.0))
    forward = right.cross(Vector((0.0, 0.0, 1.0))).normalized()  # the camera looks along -forward: right is right
    shift = args.skeleton_shift if args.skeleton_shift is not None else float(np.ptp(points @ np.array(right), 0)) + 0.4

    sticks = material("bvh_skeleton", (0.08, 0.08, 0.08))
    for armature, joints in zip(bvh_armatures, bvh_joints):
        for bone in armature.pose.bones:
            if bone.parent is not None:
                stick(joints[bone.parent.name] + shift * right, joints[bone.name] + shift * right, 0.012, sticks)
    for body in bodies:  # the glTF importer's materials use the GLB's colour (or its vertex colours)
        if not body.data.materials:
            body.data.materials.append(material("body", (0.6, 0.6, 0.6)))

    width_px, height_px = (int(v) for v in args.size.split("x"))
    scene.render.resolution_x, scene.render.resolution_y = width_px, height_px
    height = float(high[2] - low[2])
    target = centre + 0.5 * shift * right
    width = float(np.ptp(points @ np.array(right), 0)) + shift
    camera_data = bpy.data.cameras.new("camera")
    camera_data.lens = 50
    fov_x = camera_data.angle_x  # the sensor fits the image's width
    fov_y = 2 * math.atan(math.tan(fov_x / 2) * height_px / width_px)
    distance = 1.15 * max(width / (2 * math.tan(fov_x / 2)), height / (2 * math.tan(fov_y / 2))) + 0.5
    camera = bpy.data.objects.new("camera", camera_data)
    scene.collection.objects.link(camera)
    camera.location = target + distance * (math.cos(0.2) * forward + Vector((0.0, 0.0, math.sin(0.2))))
    camera.rotation_euler = (target - camera.location).to_track_quat("-Z", "Y").to_euler()
    scene.camera = camera

    sun = bpy.data.objects.new("sun", bpy.data.lights.new("sun", "SUN"))
    sun.data.energy = 3.0
    sun.rotation_euler = (math.radians(40), math.radians(10), math.radians(30))
    scene.collection.objects.link(sun)
    world = bpy.data.worlds.new("world")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.85, 0.87, 0.9, 1.0)
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.8
    scene.world = world
    bpy.ops.mesh.primitive_plane_add(size=40, location=(centre.x, centre.y, float(low[2])))
    bpy.context.object.data.materials.append(material("floor", (0.75, 0.75, 0.72)))

    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = args.samples
    scene.cycles.use_denoising = True
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.render.filepath = args.output
    bpy.ops.render.render(write_still=True)
    print(f"wrote {args.output} (Blender {bpy.app.version_string}, frame {glb_frame} of the GLB's clip)")


def _fcurves(action):
    """An action's F-curves (Blender 4.4+ keeps them in layered channel bags)."""
    if hasattr(action, "fcurves") and len(getattr(action, "fcurves", [])):
        return list(action.fcurves)
    curves = []
    for layer in getattr(action, "layers", []):
        for strip in layer.strips:
            for bag in getattr(strip, "channelbags", []):
                curves += list(bag.fcurves)
    return curves


if __name__ == "__main__":
    main(sys.argv[1:])
