"""Checkpoints: tensors and plain values only, written atomically, rebuilt from the file alone.

A checkpoint holds everything eval.py, predict.py and compare.py need: the model's name and
constructor options, the class names, the image size and normalisation, the epoch and metrics,
the resolved training config and the split files (paths relative to the checkpoint). last.pth
also holds what resuming needs (optimizer, scheduler, RNG states, history). Loading uses
``torch.load(..., weights_only=True)``: it never runs code from the file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from model.files import atomic_path
from model.network import Detector, build_model

FORMAT = "cvpr-practical-detector"
VERSION = 1


class CheckpointError(Exception):
    """A checkpoint that is missing, not ours, or too new; the message is one line."""


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write to a temporary file in the same folder, then rename: never a half-written file."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, "version": VERSION, **payload}, tmp)


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint (train one with `python train.py`, or check the path)")
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:
        reason = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: not a checkpoint written by this toolkit's train.py ({reason})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a checkpoint written by this toolkit's train.py "
                              f"(a whole pickled model or a bare state dict?); retrain with `python train.py`")
    if checkpoint.get("version", 0) > VERSION:
        raise CheckpointError(f"{path}: written by a newer version of the toolkit (format {checkpoint['version']}, "
                              f"this one reads {VERSION}); update the toolkit")
    return checkpoint


def model_from_checkpoint(checkpoint: dict[str, Any], device: torch.device | str = "cpu") -> Detector:
    """The exact trained network, in eval mode on ``device``; no pretrained weights are fetched."""
    options = dict(checkpoint["model"]["options"])
    if checkpoint["model"]["name"] == "resnet":
        options["pretrained"] = False  # the checkpoint's own weights replace them
    model = build_model(checkpoint["model"]["name"], len(checkpoint["classes"]), **options)
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(device).eval()


def split_paths(checkpoint_path: Path, checkpoint: dict[str, Any]) -> dict[str, Path]:
    """Split name -> split file, resolved against the checkpoint's folder."""
    folder = Path(checkpoint_path).parent
    return {name: folder / relative for name, relative in checkpoint.get("splits", {}).items()}
