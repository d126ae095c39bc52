"""Readers and writers for the formats of the field (EasyMocap / AvatarPose)."""
