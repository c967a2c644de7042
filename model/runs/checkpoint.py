"""The checkpoint format: the one module that builds, validates and reads checkpoint files.

A checkpoint holds tensors and plain values only, so ``torch.load(path, weights_only=True)`` loads
it and loading one never runs code. Every checkpoint carries the model's name and constructor
options, the class names, the image size and normalisation, the run's options and facts and its
split files: eval.py, predict.py and compare.py need nothing but its path. ``last.pth`` adds what
resuming needs (optimizer, learning-rate schedule, random states, history, best so far).

    checkpoint = Checkpoint.load("output/best.pth")
    model = checkpoint.build_model(device)
    checkpoint.classes, checkpoint.image_size, checkpoint.split_paths()["test"]
"""

from __future__ import annotations

import io
import pickle
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from model import config
from model.core.errors import UserError, first_line
from model.core.lazy import LazyModule
from model.core.owned import file_sha256
from model.experiment.options import TrainOptions
from model.network import NETWORKS, build_model

if TYPE_CHECKING:  # torch is imported when a checkpoint is first read or written: a status check needs little
    import torch

    from model.detector import Detector
else:
    torch = LazyModule("torch")

FORMAT = "cvpr-practical-detector"
VERSION = 2  # 2: the options and the run's facts apart ("options", "run"); 1 had both in "config"


class CheckpointError(UserError):
    """A checkpoint that is missing, not ours, too new, or not the kind asked for."""


@dataclass(frozen=True)
class RunRecord:
    """What every checkpoint of a run records besides its weights: enough to rebuild and use the model."""

    model_name: str
    model_options: dict[str, Any]  # constructor options (TrainOptions.network_options; model/network.py)
    classes: list[str]  # sorted labels; index = class index
    image_size: int
    options: dict[str, Any]  # the run's TrainOptions as plain values (config.json)
    facts: dict[str, Any]  # dataset, device, versions, host, Slurm job, command, start time (run.json)
    mean: Sequence[float] = config.IMAGENET_MEAN  # normalisation of the network's input
    std: Sequence[float] = config.IMAGENET_STD


@dataclass
class Progress:
    """Where training stands after an epoch: with the states below, what resumes it exactly."""

    epoch: int  # last finished epoch (0 before the first)
    history: list[dict[str, float]] = field(default_factory=list)  # history.csv rows
    best: dict[str, float] | None = None  # epoch, val_accuracy, val_loss of the best epoch
    stale_epochs: int = 0  # epochs since the best one (early stopping)


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


def checkpoint_bytes(payload: dict[str, Any]) -> bytes:
    """The file's bytes (written by the caller, whole, through a run's writer): the payload, the format
    tag and version, and an id of this save, which evaluations record to know what they scored."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, "saved_id": uuid.uuid4().hex, **payload}, buffer)
    return buffer.getvalue()


def model_payload(record: RunRecord, model: torch.nn.Module, epoch: int, metrics: dict[str, float]) -> dict[str, Any]:
    """best.pth: the model of ``epoch`` with its run record and that epoch's figures."""
    return {
        "model": {"name": record.model_name, "options": record.model_options},
        "classes": list(record.classes),
        "image_size": record.image_size,
        "normalization": {"mean": list(record.mean), "std": list(record.std)},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "epoch": epoch,
        "metrics": metrics,
        "options": record.options,
        "run": record.facts,
        "splits": dict(config.SPLIT_FILES),
    }


def training_payload(
    record: RunRecord,
    model: torch.nn.Module,
    progress: Progress,
    metrics: dict[str, float],
    states: dict[str, Stateful],
    generator: torch.Generator,
) -> dict[str, Any]:
    """last.pth: the model payload plus everything needed to go on after ``progress.epoch`` exactly as
    if never stopped: ``states`` (optimizer, schedule, ...) and every random state training draws from."""
    payload = model_payload(record, model, progress.epoch, metrics)
    payload.update({name: state.state_dict() for name, state in states.items()})
    payload.update(
        rng=_rng_state(generator), history=progress.history, best=progress.best, stale_epochs=progress.stale_epochs
    )
    return payload


def _rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Dropout draws from the global generators, the batch order from ``generator``."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "batches": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"].cpu())
    generator.set_state(state["batches"].cpu())
    if "cuda" in state and torch.cuda.is_available():  # as many GPUs as this node has (it may have fewer)
        for index, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state.cpu(), index)


class Checkpoint:
    """A checkpoint file's contents, read through typed accessors."""

    def __init__(self, data: dict[str, Any], path: Path):
        self._data, self.path = data, Path(path)

    @classmethod
    def load(cls, path: Path, mmap: bool = False) -> Checkpoint:
        """Read ``path`` (tensors on the CPU; ``mmap``: paged in only when used, for a quick look at its
        record); CheckpointError names what is wrong with it."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: no such checkpoint (train one with `python train.py`, or check the path)")
        try:
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except Exception as error:  # torch raises many kinds for a file that is not, or no longer, whole
            with open(path, "rb") as handle:
                zipped = handle.read(4) == b"PK\x03\x04"  # what torch.save writes
            if not zipped:
                raise CheckpointError(
                    f"{path}: not a checkpoint written by this toolkit's train.py (not a PyTorch file); check the path"
                ) from None
            if isinstance(error, pickle.UnpicklingError) and "Weights only load failed" in str(error):
                raise CheckpointError(
                    f"{path}: not a checkpoint written by this toolkit's train.py (a whole pickled model, as the "
                    "course "
                    f"template saves? loading it would run its code); retrain with `python train.py`"
                ) from None
            raise CheckpointError(
                f"{path}: a damaged or truncated checkpoint ({first_line(error, 120)}); copy it again, or retrain"
            ) from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CheckpointError(
                f"{path}: not a checkpoint written by this toolkit's train.py "
                f"(a whole pickled model or a bare state dict?); retrain with `python train.py`"
            )
        if data.get("version", 0) > VERSION:
            raise CheckpointError(
                f"{path}: written by a newer version of the toolkit (format {data['version']}, "
                f"this one reads {VERSION}); update the toolkit"
            )
        checkpoint = cls(data, path)
        checkpoint._check()
        return checkpoint

    def _check(self) -> None:
        """Every part a checkpoint must have, of the right kind."""
        data = self._data
        model = data.get("model")
        fine = (
            isinstance(model, dict)
            and model.get("name") in NETWORKS
            and isinstance(model.get("options"), dict)
            and isinstance(data.get("classes"), list)
            and len(data["classes"]) >= 2
            and all(isinstance(c, str) for c in data["classes"])
            and isinstance(data.get("state_dict"), dict)
        )
        if not fine:
            raise CheckpointError(
                f"{self.path}: an incomplete or altered checkpoint (its model, classes or weights are missing); "
                "retrain "
                f"it with `python train.py`"
            )
        try:
            self.options  # noqa: B018  (the recorded options must make a valid run)
        except UserError as error:
            raise CheckpointError(f"{self.path}: its recorded options are not valid ({error}); retrain it") from None

    # What the model is
    @property
    def record(self) -> RunRecord:
        norm = self._data.get("normalization", {})
        return RunRecord(
            self.model_name,
            dict(self._data["model"]["options"]),
            list(self._data["classes"]),
            int(self._data.get("image_size", config.IMAGE_SIZE)),
            self._options_dict(),
            self.facts,
            tuple(norm.get("mean", config.IMAGENET_MEAN)),
            tuple(norm.get("std", config.IMAGENET_STD)),
        )

    @property
    def model_name(self) -> str:
        return str(self._data["model"]["name"])

    @property
    def classes(self) -> list[str]:
        return list(self._data["classes"])

    @property
    def image_size(self) -> int:
        return self.record.image_size

    @property
    def mean(self) -> tuple[float, ...]:
        return tuple(self.record.mean)

    @property
    def std(self) -> tuple[float, ...]:
        return tuple(self.record.std)

    def build_model(self, device: torch.device | str = "cpu") -> Detector:
        """The exact trained network, in eval mode on ``device``; no pretrained weights are fetched. A
        CheckpointError when its weights do not fit the network it names."""
        try:
            model = build_model(
                self.model_name, len(self.classes), load_weights=False, **self._data["model"]["options"]
            )
            model.load_state_dict(self._data["state_dict"])
        except (RuntimeError, TypeError, ValueError, KeyError) as error:
            raise CheckpointError(
                f"{self.path}: its weights do not fit the {self.model_name} network it names "
                f"({first_line(error, 120)}): "
                f"an altered checkpoint? retrain it"
            ) from None
        return model.to(device).eval()

    @property
    def identity(self) -> str:
        """What tells this save of the checkpoint from any other (evaluations record it)."""
        return str(self._data.get("saved_id") or file_sha256(self.path))

    # What the run was
    @property
    def epoch(self) -> int:
        return int(self._data.get("epoch", 0))

    @property
    def metrics(self) -> dict[str, float]:
        return dict(self._data.get("metrics", {}))

    def _options_dict(self) -> dict[str, Any]:
        if "options" in self._data:
            return dict(self._data["options"])
        return {k: v for k, v in self._data.get("config", {}).items() if k != "run"}  # format 1

    @property
    def options(self) -> TrainOptions:
        return TrainOptions.from_dict(self._options_dict())

    @property
    def facts(self) -> dict[str, Any]:
        return dict(self._data.get("run", self._data.get("config", {}).get("run", {})))

    @property
    def dataset(self) -> Path | None:
        """The dataset the model was trained on, as the run saw it."""
        dataset = self.facts.get("dataset")
        return Path(dataset) if dataset else None

    def split_paths(self) -> dict[str, Path]:
        """Split name -> split file, resolved against the checkpoint's folder."""
        return {name: self.path.parent / relative for name, relative in self._data.get("splits", {}).items()}

    # Going on with it
    @property
    def stale_epochs(self) -> int:
        """Epochs since the best one, when the checkpoint was written (last.pth)."""
        return int(self._data.get("stale_epochs", 0))

    @property
    def is_resumable(self) -> bool:
        return "optimizer" in self._data and "rng" in self._data

    def resume_into(self, model: torch.nn.Module, states: dict[str, Stateful], generator: torch.Generator) -> Progress:
        """Load the weights and the training ``states`` (those the checkpoint has) and the random
        states; returns where training stands."""
        if not self.is_resumable:
            raise CheckpointError(
                f"--resume {self.path}: holds no training state (a best.pth?); resume from the run's last.pth"
            )
        model.load_state_dict(self._data["state_dict"])
        for name, state in states.items():
            if self._data.get(name):  # (an fp32 run's scaler state is empty: a new scaler starts afresh)
                state.load_state_dict(self._data[name])
        _restore_rng(self._data["rng"], generator)
        return Progress(self.epoch, list(self._data["history"]), self._data["best"], int(self._data["stale_epochs"]))
