"""The trainer of the avatarpose methods (nerfstudio's, with checkpoints an interrupt cannot lose)."""
