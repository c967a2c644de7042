"""Detectors, data and training helpers for the CVPR practical 1 (airplane / face / motorcycle)."""
