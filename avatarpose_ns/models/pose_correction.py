"""Every person's SMPL parameters as the initialisation plus learned corrections (AvatarPose eq. 8).

    body_pose   = Theta0 + MLP_l(Theta0)       one MLP per person, shared by all frames
    betas       = beta0 + delta_beta_l         shared by all frames
    global_orient = phi0 + delta_phi_{l,t}     per frame (axis-angle, added)
    transl      = tau0 + delta_tau_{l,t}        per frame

The MLP (69 -> 128 -> 128 -> 128 -> 69, ReLU) has its last layer initialised in
U(+-1e-5), so training starts at the initialisation; sharing it over frames lets
evidence from one frame correct similar poses in others. The initial values are
buffers (saved in checkpoints, never optimised); each kind of correction is its own
parameter group (`parameter_groups`) so phases can freeze them separately.

Torch only. Shapes: L people, F frames.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

NUM_BODY_POSE = 69


def pose_mlp(hidden: int = 128, num_hidden: int = 3, last_init: float = 1e-5) -> nn.Sequential:
    """69 -> hidden (x num_hidden, ReLU) -> 69, last layer ~U(+-last_init) so the output starts near 0."""
    layers: list[nn.Module] = []
    width = NUM_BODY_POSE
    for _ in range(num_hidden):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    last = nn.Linear(width, NUM_BODY_POSE)
    nn.init.uniform_(last.weight, -last_init, last_init)
    nn.init.uniform_(last.bias, -last_init, last_init)
    layers.append(last)
    return nn.Sequential(*layers)


class SmplState(nn.Module):
    """Per-person, per-frame SMPL parameters: the dataparser's initialisation plus corrections."""

    def __init__(self, people: Mapping[int, Mapping[str, np.ndarray]], hidden: int = 128,
                 num_hidden: int = 3) -> None:
        super().__init__()
        self.person_ids = [int(p) for p in people]
        stack = lambda key: torch.tensor(np.stack([np.asarray(people[p][key], dtype=np.float32) for p in people]))
        init = {"betas": stack("betas").reshape(len(people), -1), "body_pose": stack("body_pose"),
                "global_orient": stack("global_orient"), "transl": stack("transl")}
        for name, value in init.items():
            if not torch.isfinite(value).all():
                raise ValueError(f"SMPL initialisation: '{name}' contains NaN or infinite values")
        if init["body_pose"].shape[-1] != NUM_BODY_POSE:
            raise ValueError(f"SMPL initialisation: body_pose has {init['body_pose'].shape[-1]} values per frame, "
                             f"expected {NUM_BODY_POSE}")
        for name, value in init.items():
            self.register_buffer(f"{name}_init", value)
        num_people, num_frames = init["transl"].shape[:2]
        self.pose_mlps = nn.ModuleList([pose_mlp(hidden, num_hidden) for _ in range(num_people)])
        self.delta_betas = nn.Parameter(torch.zeros_like(init["betas"]))
        self.delta_orient = nn.Parameter(torch.zeros(num_people, num_frames, 3))
        self.delta_transl = nn.Parameter(torch.zeros(num_people, num_frames, 3))

    # ------------------------------------------------------------------ sizes and groups
    @property
    def num_people(self) -> int:
        return int(self.betas_init.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.transl_init.shape[1])

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """body_shape (delta betas), pose_mlp (the MLPs), transl_orient (per-frame deltas)."""
        return {"body_shape": [self.delta_betas], "pose_mlp": list(self.pose_mlps.parameters()),
                "transl_orient": [self.delta_orient, self.delta_transl]}

    def set_trainable(self, groups: Mapping[str, bool]) -> None:
        """requires_grad per group name; groups not named keep their setting."""
        for name, parameters in self.parameter_groups().items():
            if name in groups:
                for parameter in parameters:
                    parameter.requires_grad_(bool(groups[name]))

    def set_pose_trainable(self, trainable: bool) -> None:
        """Pose, orientation and translation corrections on or off (shape is separate)."""
        self.set_trainable({"pose_mlp": trainable, "transl_orient": trainable})

    # ------------------------------------------------------------------ parameters
    @property
    def betas(self) -> torch.Tensor:
        """(L, 10)"""
        return self.betas_init + self.delta_betas

    def body_pose_all(self) -> torch.Tensor:
        """(L, F, 69) corrected body poses of every frame."""
        return torch.stack([self.body_pose_init[p] + mlp(self.body_pose_init[p])
                            for p, mlp in enumerate(self.pose_mlps)])

    def global_orient_all(self) -> torch.Tensor:
        """(L, F, 3)"""
        return self.global_orient_init + self.delta_orient

    def transl_all(self) -> torch.Tensor:
        """(L, F, 3)"""
        return self.transl_init + self.delta_transl

    def frame(self, position: int) -> dict[str, torch.Tensor]:
        """Parameters of every person at one frame position: betas (L, 10), body_pose (L, 69),
        global_orient (L, 3), transl (L, 3)."""
        pose0 = self.body_pose_init[:, position]
        body_pose = torch.stack([pose0[p] + mlp(pose0[p]) for p, mlp in enumerate(self.pose_mlps)])
        return {"betas": self.betas, "body_pose": body_pose,
                "global_orient": self.global_orient_init[:, position] + self.delta_orient[:, position],
                "transl": self.transl_init[:, position] + self.delta_transl[:, position]}

    @torch.no_grad()
    def export(self) -> dict[str, torch.Tensor]:
        """All current parameters: betas (L, 10), body_pose (L, F, 69), global_orient (L, F, 3), transl (L, F, 3)."""
        return {"betas": self.betas.clone(), "body_pose": self.body_pose_all(),
                "global_orient": self.global_orient_all(), "transl": self.transl_all()}
