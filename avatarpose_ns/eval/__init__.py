"""Evaluation: multi-person 3D pose metrics and the `avatarpose-eval` command."""
