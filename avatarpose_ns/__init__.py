"""AvatarPose as a nerfstudio method plugin."""
