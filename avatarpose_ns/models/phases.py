"""Training phases of AvatarPose's alternating optimisation and what each one trains.

    avatar     fields and shape (poses fixed): learn the avatars
    pose       pose MLP, per-frame translation and orientation (fields fixed)
    pose_body  pose MLP only, with the collision loss (the released schedule's last phases)
    joint      everything at once (for comparison with alternation)

A schedule is a sequence of "phase:steps" entries, e.g. ("avatar:400", "pose:200", ...);
`PhaseSchedule` says which phase a global step is in and how far into it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from collections.abc import Sequence

Phase = Literal["avatar", "pose", "pose_body", "joint"]


@dataclass(frozen=True)
class PhaseSpec:
    """Everything a phase switches: the one place the model and the pipeline read it from."""

    trainable: frozenset[str]
    """parameter groups that get gradients (the rest are frozen)"""
    avatar_losses: bool
    """the avatar terms (colour, silhouette, layer entropy, hard surface, empty space)"""
    pose_losses: bool
    """the pose terms and priors"""
    pose_image_terms: bool
    """the pose colour and mask terms (off when the avatar terms already fit the images)"""
    collision: bool
    """render and penalise the overlap of people's fields"""
    ray_mix: Literal["avatar", "pose"]
    """which of the pipeline's ray mixes (inside the mask, edge band, anywhere) the sampler uses"""

    @property
    def fields_train(self) -> bool:
        """The fields change, so the occupancy grid must follow them."""
        return "fields" in self.trainable


PHASES: dict[str, PhaseSpec] = {
    "avatar": PhaseSpec(frozenset({"fields", "body_shape"}), avatar_losses=True, pose_losses=False,
                        pose_image_terms=False, collision=False, ray_mix="avatar"),
    "pose": PhaseSpec(frozenset({"pose_mlp", "transl_orient"}), avatar_losses=False, pose_losses=True,
                      pose_image_terms=True, collision=False, ray_mix="pose"),
    "pose_body": PhaseSpec(frozenset({"pose_mlp"}), avatar_losses=False, pose_losses=True,
                           pose_image_terms=True, collision=True, ray_mix="pose"),
    "joint": PhaseSpec(frozenset({"fields", "body_shape", "pose_mlp", "transl_orient"}), avatar_losses=True,
                       pose_losses=True, pose_image_terms=False, collision=True, ray_mix="pose"),
}


def phase_spec(phase: str) -> PhaseSpec:
    """The spec of a phase by name; a clear error for an unknown one."""
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}; choose one of {sorted(PHASES)}")
    return PHASES[phase]


@dataclass(frozen=True)
class PhaseSchedule:
    """Phases in order with their lengths in steps; after the last, the last phase continues."""

    phases: tuple[tuple[str, int], ...]

    @classmethod
    def parse(cls, entries: Sequence[str]) -> PhaseSchedule:
        """("avatar:400", "pose:200", ...) -> PhaseSchedule; a clear error for anything else."""
        phases = []
        for entry in entries:
            name, sep, steps = str(entry).partition(":")
            name = name.strip()
            if not sep or name not in PHASES:
                raise ValueError(f"schedule entry {entry!r}: expected '<phase>:<steps>' with phase one of "
                                 f"{sorted(PHASES)}")
            try:
                count = int(steps)
            except ValueError:
                raise ValueError(f"schedule entry {entry!r}: steps must be an integer") from None
            if count <= 0:
                raise ValueError(f"schedule entry {entry!r}: steps must be positive")
            phases.append((name, count))
        if not phases:
            raise ValueError("the phase schedule is empty")
        return cls(tuple(phases))

    @property
    def total_steps(self) -> int:
        return sum(steps for _, steps in self.phases)

    def locate(self, step: int) -> tuple[int, str, int, int]:
        """step -> (phase index, phase name, steps into the phase, phase length)."""
        start = 0
        for index, (name, length) in enumerate(self.phases):
            if step < start + length:
                return index, name, step - start, length
            start += length
        name, length = self.phases[-1]
        return len(self.phases) - 1, name, step - (start - length), length

    def scaled(self, total_steps: int) -> PhaseSchedule:
        """The same shape stretched or shrunk to `total_steps` (each phase at least 1 step)."""
        factor = total_steps / self.total_steps
        return PhaseSchedule(tuple((name, max(1, round(length * factor))) for name, length in self.phases))
