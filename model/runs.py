"""A run's folder and its files: checkpoints, history, status, stored evaluations, and its one writer.

    run = Run(Path("output/vgg"))
    run.status()                  missing | partial (epochs done of planned) | finished: the one rule
    run.checkpoint("best")        best.pth, checked: what eval, predict and compare need is in it
    with run.writer("train.py", new=True) as writer:     the folder's lock; a new run is written aside until
        writer.save("last.pth", checkpoint_bytes(...))   its first epoch, then put in place (``commit``)

The folder's manifest (manifest.json) lists the toolkit's files: --overwrite replaces those, never a user's.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from model import config, env
from model.checkpoint import Checkpoint, CheckpointError
from model.device import usable_cpus
from model.engine import EpochStats
from model.errors import UserError
from model.files import Folder, Staging, data_folder_around, read_json
from model.lock import FolderLock
from model.network import count_parameters
from model.options import TrainOptions, flag

EVALUATIONS = "evaluations"  # a run's evaluations (eval.py, the report)
HISTORY_COLUMNS = (
    "epoch",
    # the practical's training figures: measured in evaluation mode (dropout off), as eval.py measures them, on
    # the training split or a fixed sample of it (--train-eval); NaN with --train-eval off; then the validation
    # figures, and the running figures of the training pass itself (dropout on, the weights changing as it goes)
    *(f"{s}_{k}" for s in ("train", "val", "running") for k in ("loss", "class_loss", "box_loss", "accuracy", "iou")),
    "train_images_evaluated",  # how many training images the evaluation-mode figures are measured on
    "seconds",  # the training and validation passes
    "train_eval_seconds",  # the evaluation-mode pass over the training images
    "cpu_seconds",  # process CPU time of the epoch (against wall time: a sign of CPU contention)
    "lr",
)
CLOCK_COLUMNS = ("seconds", "train_eval_seconds", "cpu_seconds")  # what differs between two runs of one seed


class RunError(UserError):
    """A run folder that cannot be used as asked: taken, damaged, held, moved, or in the wrong place."""


# ----------------------------------------------------------------------------------------------
# History
# ----------------------------------------------------------------------------------------------
def _number(text: str | None) -> float:
    if text is None:
        raise ValueError("a row with fewer values than columns")
    return math.nan if text.strip() in ("", "nan") else float(text)


def history_bytes(history: Sequence[dict[str, float]]) -> bytes:
    """history.csv: one row per epoch, every number in full (repr), NaN as nan."""

    def shown(value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "nan"
        return repr(float(value)) if isinstance(value, float) else str(value)

    out, rows = io.StringIO(), ([shown(row.get(column)) for column in HISTORY_COLUMNS] for row in history)
    csv.writer(out, lineterminator="\n").writerows([HISTORY_COLUMNS, *rows])
    return out.getvalue().encode()


def training_figures(history: Sequence[dict[str, float]]) -> tuple[str, str]:
    """Which columns hold a history's training figures, and what they are: the evaluation-mode ones
    (``train_*``), or, with --train-eval off, the running figures of the training pass."""
    if history and math.isnan(history[0]["train_loss"]):
        return "running", "train (running, dropout on)"
    return "train", "train (evaluation mode)"


def improves(accuracy: float, loss: float, best: dict[str, float] | None) -> bool:
    """Best = the highest validation accuracy; at equal accuracy, the lower validation loss (Part 1 Q6)."""
    same = best is not None and accuracy == best["val_accuracy"]
    return best is None or accuracy > best["val_accuracy"] or (same and loss < best["val_loss"])


def best_epoch(history: Sequence[dict[str, float]]) -> int | None:
    """The epoch best.pth holds."""
    best: dict[str, float] | None = None
    for row in history:
        best = row if improves(row["val_accuracy"], row["val_loss"], best) else best
    return int(best["epoch"]) if best is not None else None


# ----------------------------------------------------------------------------------------------
# The folder
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunStatus:
    state: str  # missing | partial | finished
    epoch: int = 0
    planned: int = 0

    def describe(self) -> str:
        if self.state == "partial":
            return f"partly trained: {self.epoch} of {self.planned} epochs"
        return f"finished: {self.epoch} epochs" if self.state == "finished" else "missing"


class Run:
    """A run's folder: ``output/`` or ``output/NAME/``."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.files = Folder(self.folder, "train.py", "--name or --output-dir", manifest="manifest.json", hashes=False)

    def checkpoint_path(self, which: str) -> Path:
        return self.folder / {"best": config.BEST_CHECKPOINT, "last": config.LAST_CHECKPOINT}[which]

    def split_path(self, split: str) -> Path:
        return self.folder / config.SPLIT_FILES[split]

    has_run = property(lambda self: any(self.checkpoint_path(w).exists() for w in ("best", "last")))

    def checkpoint(self, which: str = "best", mmap: bool = False) -> Checkpoint:
        return Checkpoint(self.checkpoint_path(which), mmap=mmap)

    def history(self) -> list[dict[str, float]]:
        """history.csv as rows of floats; [] when there is none."""
        path = self.folder / config.HISTORY_FILE
        if not path.exists():
            return []
        try:
            with open(path, newline="", encoding="utf-8") as handle:
                return [{str(k): _number(v) for k, v in row.items()} for row in csv.DictReader(handle)]
        except (OSError, ValueError, TypeError, csv.Error) as error:
            raise RunError(f"{path}: not a readable history.csv ({error}); move the run away to retrain it") from None

    def facts(self) -> dict[str, Any]:
        """run.json: the dataset and its fingerprint, device, versions, host, Slurm job (and each resumption)."""
        path = self.folder / config.RUN_FILE
        facts = read_json(path, missing={})
        if not isinstance(facts, dict):
            raise RunError(f"{path}: damaged (not the JSON object train.py wrote); move the run away to retrain it")
        return facts

    def status(self) -> RunStatus:
        """Missing without a checkpoint; else last.pth says how far it went: finished when it holds all its
        planned epochs (or stopped early, --patience), partly trained otherwise."""
        if not self.checkpoint_path("last").exists():
            if self.checkpoint_path("best").exists():
                raise RunError(f"{self.folder}: holds a best.pth but no last.pth (an incomplete copy?); move it away")
            return RunStatus("missing")
        try:
            last = self.checkpoint("last", mmap=True)
        except CheckpointError as error:
            raise RunError(f"{error}; move {self.folder} away to retrain it") from None
        planned, patience = last.options.epochs, last.options.patience
        stopped_early = bool(patience) and last.epoch > 0 and last.stale_epochs >= patience
        return RunStatus("finished" if last.epoch >= planned or stopped_early else "partial", last.epoch, planned)

    def options(self) -> TrainOptions:
        return self.checkpoint("last" if self.checkpoint_path("last").exists() else "best", mmap=True).options

    def held_by(self) -> str | None:
        """Who writes the folder now (a running train.py), or None."""
        return FolderLock(self.folder, "").holder()

    def evaluation_path(self, which: str, set_id: str) -> Path:
        return self.folder / EVALUATIONS / f"{which}.{set_id}.json"

    def evaluation(self, which: str, set_id: str, identity: dict[str, str]) -> dict[str, Any] | None:
        """The stored evaluation of checkpoint ``which`` on set ``set_id`` while it is true of the files there
        (``identity``: the checkpoint's save and the rows' content); None otherwise."""
        stored = read_json(self.evaluation_path(which, set_id))
        return stored if isinstance(stored, dict) and stored.get("identity") == identity else None

    def check_place(self, output_dir: Path | None = None) -> None:
        """A new run goes into a folder of its own: not into data, not the current folder, not outside
        --output-dir."""
        data = next((f"{name}/" for name in ("images", "annotations") if (self.folder / name).is_dir()), None)
        around = data_folder_around(self.folder)
        own = "a run goes into a folder of its own"
        if data is not None or around is not None:
            shown = f"{self.folder} holds data ({data})" if data else f"{self.folder} lies in the data folder {around}"
            raise RunError(f"{shown} that train.py did not write: {own}; choose another --output-dir or --name")
        if self.folder.resolve() == Path.cwd().resolve():
            raise RunError(
                f"--output-dir {self.folder}: that is the current folder; {own} (pass --name NAME, or --output-dir "
                f"{config.OUTPUT_DIR})"
            )
        if output_dir is not None and not self.folder.resolve().is_relative_to(Path(output_dir).resolve()):
            raise RunError(f"{self.folder} lies outside --output-dir {output_dir}; choose a --name inside it")
        self.files.check_place()

    @contextmanager
    def writer(self, purpose: str, new: bool = False, replace: bool = False) -> Iterator[RunWriter]:
        """The folder held for writing; a folder this made is removed again when nothing was put in it."""
        created = not self.folder.exists()
        try:
            with FolderLock(self.folder, purpose):
                writer = RunWriter(self, new, replace)
                try:
                    yield writer
                finally:
                    if writer.staging is not None:
                        writer.staging.discard()
        finally:
            if created:
                with suppress(OSError):
                    self.folder.rmdir()


@dataclass
class RunWriter:
    """The one process writing a run's folder. A new run's files go to a staging folder until ``commit`` (after
    its first epoch), which replaces the toolkit's files of the run there before, and only those; every write
    first checks that the folder is still the one it holds (not removed or moved away during training)."""

    run: Run
    new: bool
    replace: bool
    staging: Staging | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.identity = os.stat(self.run.folder)
        if self.new and self.run.has_run and not self.replace:
            shown = [n for n in (config.BEST_CHECKPOINT, config.LAST_CHECKPOINT) if (self.run.folder / n).exists()]
            raise RunError(
                f"{self.run.folder} already holds a run ({', '.join(shown)}): pass --name NEW to keep both, "
                f"--overwrite to replace it, or --resume {self.run.checkpoint_path('last')} to go on with it"
            )
        if self.new:
            self.run.files.check([n for n in RUN_FILES if (self.run.folder / n).exists()])
            self.staging = Staging(self.run.files)

    staged = property(lambda self: self.staging is not None and not self.staging.committed)

    def save(self, name: str, data: bytes) -> None:
        """One file of the run, whole: into the staging folder of a new run, else into the run folder."""
        try:
            here = os.stat(self.run.folder)
        except OSError:
            here = None
        if here is None or not os.path.samestat(here, self.identity):
            raise RunError(
                f"{self.run.folder}: the run folder was removed or moved away during training, so nothing more is "
                "written (what it held went with it); train it again into a folder left alone"
            )
        if self.staging is not None and not self.staging.committed:
            self.staging.write_bytes(name, data)
        else:
            self.run.files.write(name, data)

    def commit(self) -> None:
        """The new run's files into the run folder, the previous run's out: the switch."""
        if self.staging is not None and not self.staging.committed:
            self.staging.commit(replace_all=True)


RUN_FILES = (config.BEST_CHECKPOINT, config.LAST_CHECKPOINT, config.HISTORY_FILE, config.PLOT_FILE,
             config.CONFIG_FILE, config.RUN_FILE, *config.SPLIT_FILES.values())  # fmt: skip


# ----------------------------------------------------------------------------------------------
# What a run records of itself, and the runs it goes on with
# ----------------------------------------------------------------------------------------------
def run_facts(data, device: torch.device, model: torch.nn.Module, precision: str, o: TrainOptions) -> dict[str, Any]:
    """What a run cannot be re-created from its options alone: its data (and their fingerprint), where, how."""
    total, trainable = count_parameters(model)
    return {
        "dataset": str(Path(data.root).resolve()),
        "data": data.fingerprints,  # per split: a hash of its rows and of their images' bytes
        "classes": data.classes,
        "device": str(device),
        "precision": precision,
        "workers": o.workers or usable_cpus(),
        "threads": torch.get_num_threads(),
        "parameters": total,
        "trainable_parameters": trainable,
        "torch": str(torch.__version__),
        "torchvision": metadata.version("torchvision"),
        "python": platform.python_version(),
        "host": platform.node(),
        "slurm": env.slurm_job(),
        "command": " ".join(sys.argv),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def history_row(
    epoch: int, running: EpochStats, train: EpochStats | None, val: EpochStats, lr: float, cpu: float
) -> dict[str, float]:
    """One row of history.csv; ``train`` None: no evaluation-mode pass over the training images (NaN, 0 s)."""
    train = train if train is not None else EpochStats(math.nan, math.nan, math.nan, math.nan, math.nan, 0.0, 0)
    return {
        "epoch": epoch,
        **train.as_dict("train"),
        **val.as_dict("val"),
        **running.as_dict("running"),
        "train_images_evaluated": train.images,
        "seconds": running.seconds + val.seconds,
        "train_eval_seconds": train.seconds,
        "cpu_seconds": time.process_time() - cpu,
        "lr": lr,
    }


def epoch_line(row: dict[str, float], epochs: int, is_best: bool) -> str:
    def figures(split: str) -> str:
        iou = "" if math.isnan(row[f"{split}_iou"]) else f" iou {row[f'{split}_iou']:.3f}"
        return f"{split} loss {row[f'{split}_loss']:.4f} acc {row[f'{split}_accuracy']:.3f}{iou}"

    train = "train" if not math.isnan(row["train_loss"]) else "running"
    return (
        f"epoch {int(row['epoch']):>3}/{epochs}  {figures(train)} | {figures('val')} | "
        f"{row['seconds']:.1f} s lr {row['lr']:.2e}{'  *best*' if is_best else ''}"
    )


def started_run(options: TrainOptions) -> Checkpoint | None:
    """--resume-if-started: the last.pth of the run in the options' folder when it holds one of the same options."""
    run = Run(options.run_dir)
    if run.status().state == "missing":
        return None
    checkpoint = run.checkpoint("last")
    if differs := checkpoint.options.differences(options):
        shown = ", ".join(
            f"{flag(n)} {getattr(checkpoint.options, n)!r} (now {getattr(options, n)!r})" for n in differs[:3]
        )
        raise UserError(
            f"--resume-if-started: {run.folder} holds a run trained with other options ({shown}); pass --name NEW, or "
            "--overwrite to replace it"
        )
    return checkpoint


def check_config_unchanged(checkpoint: Checkpoint) -> None:
    """A config.json edited by hand says options the resumed run would not train with: refused, not ignored."""
    path = checkpoint.path.parent / config.CONFIG_FILE
    if not path.exists():
        return
    try:
        written = TrainOptions.from_dict(json.loads(path.read_text(encoding="utf-8")), str(path))
    except (OSError, ValueError, UserError):
        raise UserError(f"{path}: not the config.json train.py wrote (edited?); restore it to resume the run") from None
    if differs := written.differences(checkpoint.options):
        shown = ", ".join(f"{flag(n)} {getattr(written, n)!r}" for n in differs[:3])
        raise UserError(
            f"{path}: says {shown}, but the run trained with "
            f"{', '.join(repr(getattr(checkpoint.options, n)) for n in differs[:3])}: --resume goes on with the run's "
            f"own options; restore config.json, or train a new run with --config {path} --name NEW"
        )
