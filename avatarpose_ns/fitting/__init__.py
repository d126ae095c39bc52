"""Fitting SMPL to observations (3D keypoints) to initialise the avatars' poses."""
