"""The checkpoint format: the one module that builds, checks and reads checkpoint files.

A checkpoint holds tensors and plain values only (``torch.load(weights_only=True)`` never runs code): the
network's name and constructor arguments, the classes, the image size and normalisation, the run's options and
facts. last.pth adds what resuming needs (optimizer, schedule, random states, history, best so far), so that
eval.py, predict.py and compare.py need nothing but a checkpoint's path.
"""

from __future__ import annotations

import io
import pickle
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from model import config
from model.errors import UserError, first_line
from model.files import file_sha256
from model.network import NETWORKS, Detector, build_model
from model.options import TrainOptions

FORMAT, VERSION = "cvpr-practical-detector", 2


class CheckpointError(UserError):
    """A checkpoint that is missing, not ours, too new, damaged, or not the kind asked for."""


# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunRecord:
    """What every checkpoint of a run records besides its weights: enough to rebuild and use the model."""

    model_name: str
    model_options: dict[str, Any]  # constructor arguments (TrainOptions.network_options)
    classes: list[str]  # sorted labels; index = class index
    image_size: int
    options: dict[str, Any]  # the run's options as config.json records them
    facts: dict[str, Any]  # run.json: dataset, its fingerprint, device, versions, host, Slurm job, command


def checkpoint_bytes(record: RunRecord, model: torch.nn.Module, epoch: int, metrics: dict, **training: Any) -> bytes:
    """best.pth (the model of ``epoch``), or with ``training`` (optimizer, schedule, rng, history, best, ...) the
    last.pth that resumes it exactly; a fresh id of this save, which evaluations record to know what they scored."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "saved_id": uuid.uuid4().hex,
        "model": {"name": record.model_name, "options": record.model_options},
        "classes": list(record.classes),
        "image_size": record.image_size,
        "normalization": {"mean": list(config.IMAGENET_MEAN), "std": list(config.IMAGENET_STD)},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "epoch": epoch,
        "metrics": metrics,
        "options": record.options,
        "run": record.facts,
        "splits": dict(config.SPLIT_FILES),
        **training,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


class Checkpoint:
    """A checkpoint file, read and checked once: every field eval, predict and compare read is there, of its kind."""

    def __init__(self, path: Path, mmap: bool = False):
        """``mmap``: its tensors paged in only when used (a quick look at its record)."""
        self.path = path = Path(path)
        if path.is_dir():
            raise CheckpointError(f"{path}: a folder; give a checkpoint in it, e.g. {path / config.BEST_CHECKPOINT}")
        if not path.is_file():
            raise CheckpointError(f"{path}: no such checkpoint (train one with `python train.py`, or check the path)")
        try:
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except Exception as error:  # torch raises many kinds for a file that is not, or no longer, whole
            with open(path, "rb") as handle:
                zipped = handle.read(4) == b"PK\x03\x04"  # what torch.save writes
            if not zipped:
                reason = "not a PyTorch file; check the path"
            elif isinstance(error, pickle.UnpicklingError) and "Weights only load failed" in str(error):
                reason = "a whole pickled model, as the course template saves? loading it would run its code"
            else:
                raise CheckpointError(
                    f"{path}: a damaged or truncated checkpoint ({first_line(error, 120)}); copy it again, or retrain"
                ) from None
            raise CheckpointError(f"{path}: not a checkpoint written by this toolkit's train.py ({reason})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CheckpointError(
                f"{path}: not a checkpoint written by this toolkit's train.py (a whole pickled model or a bare state "
                "dict?); retrain with `python train.py`"
            )
        if not isinstance(data.get("version"), int) or data["version"] > VERSION:
            raise CheckpointError(f"{path}: written by a newer version of the toolkit; update the toolkit")
        self.data, model = data, data.get("model")
        # every part a checkpoint must have, of the right kind (a hand-edited one is refused in one line)
        fine = (
            isinstance(model, dict)
            and model.get("name") in NETWORKS
            and isinstance(model.get("options"), dict)
            and isinstance(data.get("classes"), list)
            and len(data["classes"]) >= 2
            and all(isinstance(c, str) for c in data["classes"])
            and isinstance(data.get("state_dict"), dict)
            and isinstance(data.get("image_size"), int)
            and isinstance(data.get("epoch", 0), int)
            and isinstance(data.get("run", {}), dict)
            and all(isinstance(v, list) and len(v) == 3 for v in data.get("normalization", {}).values())
        )
        if not fine:
            raise CheckpointError(
                f"{self.path}: an incomplete or altered checkpoint (its model, classes, image size, normalisation or "
                "weights are missing or of the wrong kind); retrain it with `python train.py`"
            )
        smallest = NETWORKS[self.model_name].min_image_size
        if self.image_size < smallest:
            raise CheckpointError(
                f"{self.path}: an altered checkpoint (image size {self.image_size} is below {self.model_name}'s "
                f"{smallest}); retrain it"
            )
        self.options = TrainOptions.from_dict(data.get("options", {}), f"{self.path}: its recorded options")

    @property
    def record(self) -> RunRecord:
        options = dict(self.data["model"]["options"])
        return RunRecord(self.model_name, options, self.classes, self.image_size, self.options.recorded(), self.facts)

    model_name = property(lambda self: str(self.data["model"]["name"]))
    classes = property(lambda self: list(self.data["classes"]))
    image_size = property(lambda self: int(self.data["image_size"]))
    mean = property(lambda self: tuple(self.data.get("normalization", {}).get("mean", config.IMAGENET_MEAN)))
    std = property(lambda self: tuple(self.data.get("normalization", {}).get("std", config.IMAGENET_STD)))
    epoch = property(lambda self: int(self.data.get("epoch", 0)))
    facts = property(lambda self: dict(self.data.get("run", {})))
    stale_epochs = property(lambda self: int(self.data.get("stale_epochs", 0)))
    is_resumable = property(lambda self: "optimizer" in self.data and "rng" in self.data)

    @property
    def dataset(self) -> Path | None:
        """The dataset the model was trained on, as the run saw it."""
        return Path(self.facts["dataset"]) if self.facts.get("dataset") else None

    @property
    def identity(self) -> str:
        """What tells this save from any other (evaluations record it)."""
        return str(self.data.get("saved_id") or file_sha256(self.path))

    def build_model(self, device: torch.device | str = "cpu") -> Detector:
        """The trained network, in eval mode on ``device`` (no pretrained weights fetched)."""
        try:
            model = build_model(self.model_name, len(self.classes), load_weights=False, **self.data["model"]["options"])
            model.load_state_dict(self.data["state_dict"])
        except (RuntimeError, TypeError, ValueError, KeyError, UserError) as error:
            raise CheckpointError(
                f"{self.path}: its weights do not fit the {self.model_name} network it names "
                f"({first_line(error, 120)}): an altered checkpoint? retrain it"
            ) from None
        return model.to(device).eval()
