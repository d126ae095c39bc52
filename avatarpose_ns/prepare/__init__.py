"""`avatarpose-prepare`: calibrated multi-view videos to the EasyMocap / AvatarPose sequence layout.

Calibration readers, frame extraction, 2D detection (mediapipe, in a venv of its own),
cross-view association, robust triangulation, tracking, SMPL initialisation, masks and previews.
"""
