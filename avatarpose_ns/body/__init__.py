"""SMPL body model: the project's built-in SMPL-format model and a thin smplx layer."""
