"""nerfstudio dataparsers for multi-view, multi-person sequences (EasyMocap/AvatarPose layout, Hi4D)."""
