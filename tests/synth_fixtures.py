"""The tiny generated sequence's settings, shared by the synth tests and the session fixture."""

TINY_SYNTH_ARGS = dict(seed=3, num_people=2, num_cameras=3, num_frames=3, resolution="128x128")
