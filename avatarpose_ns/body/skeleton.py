"""SMPL's 24-joint kinematic tree: names, parents and the groups used by metrics."""

from __future__ import annotations

SMPL_JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee",
    "spine2", "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot",
    "neck", "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hand", "right_hand",
)
NUM_JOINTS = 24
NUM_BODY_JOINTS = 23  # all but the pelvis: body_pose has 23 * 3 = 69 numbers
NUM_BETAS = 10

# parent of each joint (-1 for the root), SMPL's kintree_table[0]
SMPL_PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21,
)

JOINT_INDEX = {name: i for i, name in enumerate(SMPL_JOINT_NAMES)}

# limbs (parent, child) scored by PCP3D
SMPL_LIMBS: tuple[tuple[int, int], ...] = (
    (1, 4), (4, 7), (2, 5), (5, 8),          # thighs, shins
    (16, 18), (18, 20), (17, 19), (19, 21),  # upper arms, forearms
    (12, 15), (0, 9),                        # neck-head, torso
)

# joint groups reported separately by the metrics table
SMPL_JOINT_GROUPS: dict[str, tuple[int, ...]] = {
    "torso": (0, 3, 6, 9, 12, 13, 14, 15),
    "legs": (1, 2, 4, 5, 7, 8, 10, 11),
    "arms": (16, 17, 18, 19),
    "hands": (20, 21, 22, 23),
}

# the 19-joint AvatarPose skeleton: rows of a BODY25 regression picked in this order
BODY25_TO_AVATARPOSE19: tuple[int, ...] = (8, 1, 9, 12, 0, 2, 5, 10, 13, 17, 18, 3, 6, 11, 14, 4, 7, 19, 22)
