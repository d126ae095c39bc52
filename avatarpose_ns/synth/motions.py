"""Scripted close interactions of 2 to 4 people, solved into SMPL parameters.

An interaction is a script: where each person stands and faces over time, a base
body pose per frame (gait, sway, arm placement) and contacts (this hand on that
person's shoulder, these two hands together). A small solver then moves the
arms, spine and head of everyone at once so that the contacts hold, the capsule
proxies of different people do not overlap, joints stay within human limits
and the motion is smooth. Legs keep their scripted gait so feet stay planted.

World frame: metres, +z up, people stand on z = 0. SMPL's body frame is y up,
x to the body's left, z forward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from avatarpose_ns.body.body_model import BodyModel
from avatarpose_ns.body.skeleton import JOINT_INDEX as J
from avatarpose_ns.body.priors import angle_prior, temporal_smoothness
from avatarpose_ns.io.easymocap import SmplSequence
from avatarpose_ns.synth.capsules import capsule_overlap

INTERACTIONS = ("hug", "handshake", "shoulder_walk", "dance")

# body_pose columns of a joint's axis-angle: joint j (1..23) -> 3 * (j - 1) + axis
def _col(joint: str, axis: int) -> int:
    return 3 * (J[joint] - 1) + axis


# joints the solver may move, with how strongly each is held to its scripted pose;
# an arm that makes a contact is held only weakly (see _ARM_CHAIN)
_FREE_JOINTS = {
    "spine1": 2.0, "spine2": 2.0, "spine3": 2.0, "neck": 1.0, "head": 1.0,
    "left_collar": 2.0, "right_collar": 2.0, "left_shoulder": 2.0, "right_shoulder": 2.0,
    "left_elbow": 2.0, "right_elbow": 2.0, "left_wrist": 2.0, "right_wrist": 2.0,
    "left_hand": 2.0, "right_hand": 2.0,
}
_ARM_CHAIN = {"collar": 0.5, "shoulder": 0.05, "elbow": 0.05, "wrist": 0.5, "hand": 1.0}
# largest rotation (radians, axis-angle norm) each joint may reach
_JOINT_LIMITS = {
    "spine1": 0.5, "spine2": 0.4, "spine3": 0.4, "neck": 0.6, "head": 0.6,
    "left_collar": 0.4, "right_collar": 0.4, "left_shoulder": 2.3, "right_shoulder": 2.3,
    "left_elbow": 2.4, "right_elbow": 2.4, "left_wrist": 1.2, "right_wrist": 1.2,
    "left_hand": 0.5, "right_hand": 0.5, "left_hip": 1.6, "right_hip": 1.6,
    "left_knee": 2.3, "right_knee": 2.3, "left_ankle": 0.7, "right_ankle": 0.7,
    "left_foot": 0.4, "right_foot": 0.4,
}


@dataclass
class Contact:
    """Joint `joint` of person `person` should be at `anchor_joint` of `anchor_person`
    plus `offset` (metres, in the anchor person's body frame), with per-frame weight."""

    person: int
    joint: str
    anchor_person: int
    anchor_joint: str
    offset: tuple[float, float, float]
    weight: np.ndarray  # (F,)


@dataclass
class Script:
    """Everything an interaction decides before solving. F frames, K people."""

    position: np.ndarray  # (K, F, 2) pelvis position on the floor plane
    facing: np.ndarray  # (K, F) facing angle in the xy plane, radians
    body_pose: np.ndarray  # (K, F, 69) scripted pose
    contacts: list[Contact] = field(default_factory=list)
    hand_pump: np.ndarray | None = None  # (F,) up-down motion of person 0's right hand (handshake), metres


def smoothstep(t: np.ndarray, start: float, end: float) -> np.ndarray:
    x = np.clip((t - start) / (end - start), 0.0, 1.0)
    return x * x * (3 - 2 * x)


def facing_to_global_orient(facing: np.ndarray) -> np.ndarray:
    """SMPL global orientation (axis-angle) standing up in a z-up world, facing angle phi. (...) -> (..., 3)"""
    import cv2

    up = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # Rx(+90 deg): body y -> world z
    result = []
    for phi in np.asarray(facing).reshape(-1):
        yaw = phi + math.pi / 2  # body +z maps to world -y before the yaw
        rz = np.array([[math.cos(yaw), -math.sin(yaw), 0], [math.sin(yaw), math.cos(yaw), 0], [0, 0, 1]])
        result.append(cv2.Rodrigues(rz @ up)[0].reshape(3))
    return np.array(result).reshape(*np.shape(facing), 3)


# --------------------------------------------------------------------------- base poses
def relaxed_pose(rng: np.random.Generator, num_frames: int, t: np.ndarray) -> np.ndarray:
    """Arms down with a slight bend, breathing sway, small head motion. (F, 69)"""
    pose = np.zeros((num_frames, 69))
    pose[:, _col("left_shoulder", 2)] = -1.35 + rng.normal(0, 0.05)
    pose[:, _col("right_shoulder", 2)] = 1.35 + rng.normal(0, 0.05)
    pose[:, _col("left_elbow", 1)] = -0.25 + rng.normal(0, 0.05)
    pose[:, _col("right_elbow", 1)] = 0.25 + rng.normal(0, 0.05)
    phase = rng.uniform(0, 2 * math.pi)
    pose[:, _col("spine2", 0)] = 0.04 * np.sin(2 * math.pi * t + phase)
    pose[:, _col("head", 1)] = 0.15 * np.sin(2 * math.pi * 0.7 * t + phase)
    pose[:, _col("neck", 0)] = 0.1 + rng.normal(0, 0.03)
    return pose


def add_gait(pose: np.ndarray, phase: np.ndarray, amplitude: float = 0.35) -> None:
    """Walking legs and counter-swinging arms, in place. phase: (F,) radians."""
    swing = np.sin(phase)
    pose[:, _col("left_hip", 0)] += -amplitude * swing
    pose[:, _col("right_hip", 0)] += amplitude * swing
    pose[:, _col("left_knee", 0)] += 0.6 * amplitude * (1 + np.sin(phase - 1.2)) + 0.05
    pose[:, _col("right_knee", 0)] += 0.6 * amplitude * (1 + np.sin(phase + math.pi - 1.2)) + 0.05
    pose[:, _col("left_ankle", 0)] += 0.2 * amplitude * swing
    pose[:, _col("right_ankle", 0)] += -0.2 * amplitude * swing


def reach_forward_pose(pose: np.ndarray, side: str, lift: float, spread: float, bend: float) -> None:
    """Turn one arm from hanging to reaching forward. lift: down-rotation kept (rad), spread: forward swing."""
    sign = 1.0 if side == "left" else -1.0
    pose[:, _col(f"{side}_shoulder", 2)] = -sign * lift
    pose[:, _col(f"{side}_shoulder", 1)] = -sign * spread
    pose[:, _col(f"{side}_elbow", 1)] = -sign * bend


# --------------------------------------------------------------------------- scripts
def _script_hug(rng, k, f, t) -> Script:
    distance = 0.8 - 0.36 * smoothstep(t, 0.0, 0.6)
    position = np.zeros((k, f, 2))
    position[0, :, 0], position[1, :, 0] = -distance / 2, distance / 2
    facing = np.zeros((k, f))
    facing[1] = math.pi
    embrace = smoothstep(t, 0.15, 0.6)
    poses = np.stack([relaxed_pose(rng, f, t) for _ in range(k)])
    for person, lift in ((0, 0.2), (1, 0.75)):  # person 0 over the shoulders, person 1 under the arms
        hug_pose = poses[person].copy()
        for side in ("left", "right"):
            reach_forward_pose(hug_pose, side, lift=lift, spread=1.0, bend=1.2)
        hug_pose[:, _col("head", 1)] = 0.5 if person == 0 else 0.45  # heads turn the same way: cheek by cheek
        poses[person] = (1 - embrace[:, None]) * poses[person] + embrace[:, None] * hug_pose
    contacts = [
        Contact(0, "left_hand", 1, "spine3", (-0.10, 0.10, -0.16), embrace),
        Contact(0, "right_hand", 1, "spine3", (0.10, 0.10, -0.16), embrace),
        Contact(1, "left_hand", 0, "spine2", (-0.10, -0.02, -0.16), embrace),
        Contact(1, "right_hand", 0, "spine2", (0.10, -0.02, -0.16), embrace),
    ]
    return Script(position, facing, poses, contacts)


def _script_handshake(rng, k, f, t) -> Script:
    position = np.zeros((k, f, 2))
    position[0, :] = (-0.4, 0.1)
    position[1, :] = (0.4, -0.1)
    facing = np.zeros((k, f))
    facing[1] = math.pi
    shake = smoothstep(t, 0.0, 0.3)
    poses = np.stack([relaxed_pose(rng, f, t) for _ in range(k)])
    for person in (0, 1):
        reach = poses[person].copy()
        reach_forward_pose(reach, "right", lift=0.9, spread=0.9, bend=0.6)
        poses[person] = (1 - shake[:, None]) * poses[person] + shake[:, None] * reach
    pump = 0.04 * np.sin(2 * math.pi * 2.0 * t)
    # person 0's right hand meets person 1's right hand; the joined hands pump up and down
    contacts = [Contact(0, "right_hand", 1, "right_hand", (0.0, 0.0, 0.0), shake)]
    return Script(position, facing, poses, contacts, hand_pump=pump)


def _script_shoulder_walk(rng, k, f, t, duration) -> Script:
    spacing = 0.42
    speed = 0.7
    position = np.zeros((k, f, 2))
    for person in range(k):
        position[person, :, 0] = speed * duration * (t - 0.5)
        position[person, :, 1] = (k - 1) / 2 * spacing - person * spacing  # person 0 leftmost
    facing = np.zeros((k, f))
    poses = np.stack([relaxed_pose(rng, f, t) for _ in range(k)])
    phase = 2 * math.pi * 0.9 * duration * t
    contacts = []
    for person in range(k):  # arm in arm, everyone walks in step
        add_gait(poses[person], phase, amplitude=0.3)
    ones = np.ones(f)
    for person in range(k - 1):
        right = person + 1  # the neighbour on this person's right
        reach_forward_pose(poses[person], "right", lift=0.0, spread=0.3, bend=1.3)
        reach_forward_pose(poses[right], "left", lift=1.0, spread=0.5, bend=1.0)
        contacts.append(Contact(person, "right_hand", right, "right_shoulder", (0.0, 0.09, -0.02), ones))
        contacts.append(Contact(right, "left_hand", person, "spine1", (0.02, 0.0, -0.15), ones))
    return Script(position, facing, poses, contacts)


def _script_dance(rng, k, f, t, duration) -> Script:
    spin = 0.8 * duration * t + rng.uniform(0, 2 * math.pi)
    radius = 0.34 / math.sin(math.pi / k) if k > 2 else 0.38
    position = np.zeros((k, f, 2))
    facing = np.zeros((k, f))
    for person in range(k):
        angle = spin + 2 * math.pi * person / k
        position[person, :, 0] = radius * np.cos(angle)
        position[person, :, 1] = radius * np.sin(angle)
        facing[person] = angle + math.pi  # towards the centre
    poses = np.stack([relaxed_pose(rng, f, t) for _ in range(k)])
    step = 2 * math.pi * 1.2 * duration * t
    contacts = []
    for person in range(k):
        add_gait(poses[person], step + person * math.pi, amplitude=0.15)
        poses[person, :, _col("left_knee", 0)] += 0.15 * (1 + np.sin(2 * step))
        poses[person, :, _col("right_knee", 0)] += 0.15 * (1 + np.sin(2 * step))
        for side in ("left", "right"):
            reach_forward_pose(poses[person], side, lift=0.8, spread=0.6 if k == 2 else 0.2, bend=0.4)
    ones = np.ones(f)
    pairs = [(0, 1)] if k == 2 else [(p, (p + 1) % k) for p in range(k)]
    for person, neighbour in pairs:
        # facing the centre, the next person around the ring stands on one's left
        contacts.append(Contact(person, "left_hand", neighbour, "right_hand", (0.0, 0.0, 0.0), ones))
    if k == 2:
        contacts.append(Contact(0, "right_hand", 1, "left_hand", (0.0, 0.0, 0.0), ones))
    return Script(position, facing, poses, contacts)


def _add_bystanders(script: Script, rng, k: int, f: int, t: np.ndarray) -> None:
    """People beyond the interacting pair stand beside one of them with a hand on that person's shoulder."""
    for person in range(2, k):
        host = (person - 2) % 2
        side_sign = 1.0 if (person - 2) // 2 == 0 else -1.0
        phi = script.facing[host]
        left = np.stack([-np.sin(phi), np.cos(phi)], axis=-1)
        back = -np.stack([np.cos(phi), np.sin(phi)], axis=-1)
        script.position[person] = script.position[host] + side_sign * 0.5 * left + 0.2 * back
        script.facing[person] = phi
        pose = relaxed_pose(rng, f, t)
        hand_side = "right" if side_sign > 0 else "left"
        host_shoulder = "left_shoulder" if side_sign > 0 else "right_shoulder"
        reach_forward_pose(pose, hand_side, lift=0.6, spread=0.6, bend=0.6)
        script.body_pose[person] = pose
        script.contacts.append(Contact(person, f"{hand_side}_hand", host, host_shoulder, (0.0, 0.08, -0.03), np.ones(f)))


# --------------------------------------------------------------------------- solver
@dataclass
class MotionSolverConfig:
    iterations: int = 300
    learning_rate: float = 0.03
    contact_weight: float = 400.0
    collision_weight: float = 4000.0
    prior_weight: float = 1.0
    limit_weight: float = 100.0
    smooth_weight: float = 20.0


def _solve(body: BodyModel, betas: torch.Tensor, script: Script, orient: torch.Tensor, transl: torch.Tensor,
           config: MotionSolverConfig) -> torch.Tensor:
    """Adjust the free joints of everyone so contacts hold without overlap. Returns body_pose (K, F, 69)."""
    k, f, _ = script.body_pose.shape
    base = torch.tensor(script.body_pose, dtype=torch.float32)
    hold = torch.zeros(k, 1, 69)
    free = torch.zeros(69)
    for name, strength in _FREE_JOINTS.items():
        hold[..., 3 * (J[name] - 1): 3 * J[name]] = strength
        free[3 * (J[name] - 1): 3 * J[name]] = 1.0
    for contact in script.contacts:  # the arm that reaches is free to move
        side = contact.joint.split("_")[0]
        for part, strength in _ARM_CHAIN.items():
            j = J[f"{side}_{part}"]
            hold[contact.person, :, 3 * (j - 1): 3 * j] = strength
    limit_index = torch.tensor([J[n] - 1 for n in _JOINT_LIMITS])
    limit_value = torch.tensor(list(_JOINT_LIMITS.values()))
    delta = torch.zeros(k, f, 69, requires_grad=True)
    rotations = torch.stack([torch.tensor(_rotation(o), dtype=torch.float32) for o in orient.reshape(-1, 3)]).reshape(k, f, 3, 3)
    pump = None if script.hand_pump is None else torch.tensor(script.hand_pump, dtype=torch.float32)
    optimizer = torch.optim.Adam([delta], lr=config.learning_rate)
    for _ in range(config.iterations):
        optimizer.zero_grad(set_to_none=True)
        pose = base + delta * free
        joints = body.joints_only(
            betas.repeat_interleave(f, 0), pose.reshape(k * f, 69), orient.reshape(k * f, 3), transl.reshape(k * f, 3)
        ).reshape(k, f, 24, 3)
        loss = config.prior_weight * ((delta * free).pow(2) * hold).sum() / f
        norms = pose.reshape(k, f, 23, 3)[:, :, limit_index].norm(dim=-1)
        loss = loss + config.limit_weight * torch.relu(norms - limit_value).pow(2).sum() / f
        loss = loss + angle_prior(pose.reshape(-1, 69)).sum() / f * 0.1
        loss = loss + config.smooth_weight * sum(temporal_smoothness(pose[p]) for p in range(k))
        for c in script.contacts:
            offset = torch.tensor(c.offset, dtype=torch.float32)
            target = joints[c.anchor_person, :, J[c.anchor_joint]] + rotations[c.anchor_person] @ offset
            if c.anchor_joint == c.joint.replace("left", "right") or c.anchor_joint == c.joint:
                target = target.detach() * 0.5 + target * 0.5  # hand meets hand: both move
            error = joints[c.person, :, J[c.joint]] - target
            weight = torch.tensor(c.weight, dtype=torch.float32)
            loss = loss + config.contact_weight * (weight * error.pow(2).sum(-1)).sum() / f
        if pump is not None:  # handshake: the joined hands move up and down together
            hands = joints[0, :, J["right_hand"], 2]
            loss = loss + config.contact_weight * (hands - hands.mean().detach() - pump).pow(2).sum() / f
        for a in range(k):
            for b in range(a + 1, k):
                overlap = capsule_overlap(joints[a], joints[b], hands_may_touch=True)
                loss = loss + config.collision_weight * overlap.pow(2).sum() / f
        loss.backward()
        optimizer.step()
    return (base + delta.detach() * free)


def _rotation(axis_angle: torch.Tensor) -> np.ndarray:
    import cv2

    return cv2.Rodrigues(axis_angle.detach().double().numpy().reshape(3, 1))[0]


def generate_motion(
    body: BodyModel,
    interaction: str,
    num_people: int,
    num_frames: int,
    duration_s: float,
    rng: np.random.Generator,
    solver: MotionSolverConfig | None = None,
) -> dict[int, SmplSequence]:
    """Script and solve one interaction; returns person id -> SMPL parameters in the world frame."""
    if interaction not in INTERACTIONS:
        raise ValueError(f"unknown interaction '{interaction}', choose from {INTERACTIONS}")
    if not 2 <= num_people <= 4:
        raise ValueError(f"num_people must be 2 to 4, got {num_people}")
    k, f = num_people, num_frames
    t = np.linspace(0.0, 1.0, f) if f > 1 else np.zeros(1)
    betas = np.clip(rng.normal(0.0, 0.8, size=(k, body.num_betas)), -1.8, 1.8)
    if interaction in ("hug", "handshake"):
        script = _script_hug(rng, k, f, t) if interaction == "hug" else _script_handshake(rng, k, f, t)
        _add_bystanders(script, rng, k, f, t)
    elif interaction == "shoulder_walk":
        script = _script_shoulder_walk(rng, k, f, t, duration_s)
    else:
        script = _script_dance(rng, k, f, t, duration_s)

    betas_t = torch.tensor(betas, dtype=torch.float32)
    orient = torch.tensor(facing_to_global_orient(script.facing), dtype=torch.float32)  # (K, F, 3)
    root = body.rest_joints(betas_t)[:, 0].detach()  # (K, 3)
    transl = torch.zeros(k, f, 3)
    transl[..., :2] = torch.tensor(script.position, dtype=torch.float32) - root[:, None, :2]
    # stand on the floor: legs are scripted and never solved, so the lowest vertex is known now
    with torch.no_grad():
        for person in range(k):
            out = body(betas_t[person:person + 1], torch.tensor(script.body_pose[person], dtype=torch.float32),
                       orient[person], transl[person])
            transl[person, :, 2] -= out.vertices[..., 2].min(dim=1).values
    body_pose = _solve(body, betas_t, script, orient, transl, solver or MotionSolverConfig())
    frames = np.arange(f)
    return {
        person: SmplSequence(betas[person], body_pose[person].double().numpy(), orient[person].double().numpy(),
                             transl[person].double().numpy(), frames)
        for person in range(k)
    }
