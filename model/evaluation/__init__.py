"""Scoring trained detectors: per-image results and their figures, batched inference, classic baselines, robustness."""
