"""nerfstudio viewer additions: pose overlays and their GUI."""
