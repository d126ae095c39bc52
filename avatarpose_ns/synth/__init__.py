"""Synthetic multi-view, multi-person sequences with exact ground truth."""
