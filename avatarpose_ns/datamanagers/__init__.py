"""Ray batches for the avatars: one frame per step, pixels drawn around the people."""
