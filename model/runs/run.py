"""A run's folder, owned by one object: its options, its status, its history, its checkpoints, its
evaluations, who writes it, and which files in it are the toolkit's.

    run = Run(Path("output/vgg"))
    run.status()                 # missing | partial (epochs done of planned) | finished: the one rule
    run.history()                # history.csv, as rows of floats
    run.checkpoint("best")       # best.pth (model/runs/checkpoint.py)
    run.evaluation("best", set)  # a stored evaluation of what it scored, when still true of the files

Only ``RunWriter`` (``Run.writer``) writes into the folder: it holds the folder's lock (a second writer
is refused, naming the holder), records every file it writes in the folder's manifest (manifest.json),
and writes a new run aside until its first epoch is saved, so that a run it replaces (``--overwrite``)
stays whole until then and a failed start leaves nothing behind.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model import config
from model.core.errors import UserError
from model.core.files import data_folder_around, holds_data, remove_stale_temporaries, write_error
from model.core.locks import FolderLock, describe_holder
from model.core.owned import OwnedFolder, Staging
from model.experiment.options import TrainOptions
from model.runs.checkpoint import Checkpoint, CheckpointError, checkpoint_bytes

EVALUATIONS = "evaluations"  # sub-folder of a run's evaluations (eval.py, the report)
MANIFEST = "manifest.json"
HISTORY_COLUMNS = (
    "epoch",
    # the practical's training figures: measured in evaluation mode (dropout off), as eval.py measures
    # them, on the training split or a fixed sample of it (--train-eval); NaN with --train-eval off
    "train_loss",
    "train_class_loss",
    "train_box_loss",
    "train_accuracy",
    "train_iou",
    "val_loss",
    "val_class_loss",
    "val_box_loss",
    "val_accuracy",
    "val_iou",
    # the running figures of the training pass itself (dropout on, weights changing as it goes)
    "running_loss",
    "running_class_loss",
    "running_box_loss",
    "running_accuracy",
    "running_iou",
    "train_images_evaluated",  # how many training images the evaluation-mode figures are measured on
    "seconds",  # the training and validation passes
    "train_eval_seconds",  # the evaluation-mode pass over the training images
    "cpu_seconds",  # process CPU time of the epoch (against wall time: a sign of CPU contention)
    "lr",
)
RUN_FILE_NAMES = (
    config.BEST_CHECKPOINT,
    config.LAST_CHECKPOINT,
    config.HISTORY_FILE,
    config.PLOT_FILE,
    config.CONFIG_FILE,
    config.RUN_FILE,
    *config.SPLIT_FILES.values(),
)
CLOCK_COLUMNS = ("seconds", "train_eval_seconds", "cpu_seconds")  # what differs between two runs of the same seed
# Files of runs written before runs had a manifest (what --overwrite may remove from such a folder).
LEGACY_FILES = frozenset(
    {
        *RUN_FILE_NAMES,
        *(
            f"eval_{which}{suffix}"
            for which in ("best", "last")
            for suffix in (
                ".json",
                "_images.csv",
                *(f"_confusion_{s}.png" for s in ("train", "validation", "test")),
            )
        ),
    }
)


class RunError(UserError):
    """A run folder that cannot be used as asked: taken, damaged, held, or in the wrong place."""


@dataclass(frozen=True)
class RunStatus:
    """What a run's folder holds: missing (no run), partial (``epoch`` of ``planned`` epochs done) or finished."""

    state: str
    epoch: int = 0
    planned: int = 0

    def describe(self) -> str:
        if self.state == "partial":
            return f"partly trained: {self.epoch} of {self.planned} epochs"
        if self.state == "finished":
            return f"finished: {self.epoch} epochs"
        return "missing"


def read_history_file(path: Path) -> list[dict[str, float]]:
    """A history.csv as rows of floats (columns of earlier versions as they are); [] when there is none."""
    if not Path(path).exists():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return [{str(k): _number(v) for k, v in row.items()} for row in csv.DictReader(handle)]
    except (OSError, ValueError, TypeError, csv.Error) as error:
        raise RunError(f"{path}: not a readable history.csv ({error}); move the run away to retrain it") from None


def _number(text: str | None) -> float:
    if text is None:
        raise ValueError("a row with fewer values than columns")
    return math.nan if text.strip() in ("", "nan") else float(text)


def training_figures(history: Sequence[dict[str, float]]) -> tuple[str, str]:
    """Which columns hold a history's training figures, and what they are: the evaluation-mode ones
    (``train_*``), or, for runs with --train-eval off and runs of earlier versions (whose ``train_*`` were
    the training pass's), the running figures of the training pass."""
    if not history:
        return "train", "train"
    row = history[0]
    if "running_loss" not in row:  # an earlier version: train_* were the running figures
        return "train", "train (running, dropout on)"
    if math.isnan(row["train_loss"]):
        return "running", "train (running, dropout on)"
    return "train", "train (evaluation mode)"


def improves(accuracy: float, loss: float, best: dict[str, float] | None) -> bool:
    """Best = highest validation accuracy; equal accuracy: lower validation loss (Part 1 Q6)."""
    if best is None:
        return True
    return accuracy > best["val_accuracy"] or (accuracy == best["val_accuracy"] and loss < best["val_loss"])


def best_epoch(history: Sequence[dict[str, float]]) -> int | None:
    """The epoch best.pth holds: the highest validation accuracy, ties to the lower validation loss."""
    best: dict[str, float] | None = None
    for row in history:
        if improves(row["val_accuracy"], row["val_loss"], best):
            best = row
    return int(best["epoch"]) if best is not None else None


def history_bytes(history: Sequence[dict[str, float]]) -> bytes:
    """history.csv: one row per epoch, every number in full (repr), NaN as nan."""

    def shown(value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "nan"
        return repr(float(value)) if isinstance(value, float) else str(value)

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HISTORY_COLUMNS)
    writer.writerows([shown(row.get(column)) for column in HISTORY_COLUMNS] for row in history)
    return out.getvalue().encode()


class Run:
    """A run's folder: ``output/`` or ``output/NAME/``."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.files = OwnedFolder(
            self.folder,
            writer="train.py",
            option="--name or --output-dir",
            manifest=MANIFEST,
            hashes=False,
            legacy=lambda name, _path: name in LEGACY_FILES and self._holds_a_checkpoint(),
        )

    def _holds_a_checkpoint(self) -> bool:
        """Whether a folder without a manifest holds a run of an earlier version: a checkpoint of the toolkit's
        (a best.pth of the user's, or the template's pickled model, is not one: nothing there is the toolkit's)."""
        for which in ("last", "best"):
            try:
                Checkpoint.load(self.checkpoint_path(which), mmap=True)
                return True
            except CheckpointError:
                continue
        return False

    def __repr__(self) -> str:
        return f"Run({self.folder})"

    @classmethod
    def of(cls, path: Path) -> Run:
        """The run of a folder, or of a checkpoint file in it."""
        path = Path(path)
        return cls(path if path.is_dir() else path.parent)

    # ------------------------------------------------------------------------------------------
    # Its files
    # ------------------------------------------------------------------------------------------
    def checkpoint_path(self, which: str) -> Path:
        return self.folder / {"best": config.BEST_CHECKPOINT, "last": config.LAST_CHECKPOINT}[which]

    def split_path(self, split: str) -> Path:
        return self.folder / config.SPLIT_FILES[split]

    @property
    def has_run(self) -> bool:
        """Whether the folder holds (part of) a run: a checkpoint of the toolkit's."""
        return any(self.checkpoint_path(w).exists() for w in ("best", "last"))

    def checkpoint(self, which: str = "best", mmap: bool = False) -> Checkpoint:
        return Checkpoint.load(self.checkpoint_path(which), mmap=mmap)

    def history(self) -> list[dict[str, float]]:
        return read_history_file(self.folder / config.HISTORY_FILE)

    def facts(self) -> dict[str, Any]:
        """run.json: dataset, classes, device, versions, host, Slurm job (and each resumption)."""
        path = self.folder / config.RUN_FILE
        try:
            return dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError):
            raise RunError(f"{path}: damaged (not the toolkit's JSON); move the run away to retrain it") from None

    # ------------------------------------------------------------------------------------------
    # Its status: the one rule
    # ------------------------------------------------------------------------------------------
    def status(self) -> RunStatus:
        """Missing when the folder holds no checkpoint; else last.pth says how far it went: finished when it
        holds all its planned epochs (or stopped early, --patience), partly trained otherwise. A folder with a
        best.pth but no last.pth, or a damaged last.pth, is a RunError."""
        last = self.checkpoint_path("last")
        if not last.exists():
            if self.checkpoint_path("best").exists():
                raise RunError(
                    f"{self.folder}: holds a best.pth but no last.pth (an incomplete copy?); move it away to retrain"
                )
            return RunStatus("missing")
        try:
            checkpoint = Checkpoint.load(last, mmap=True)
        except CheckpointError as error:
            raise RunError(f"{error}; move {self.folder} away to retrain it") from None
        planned, patience = checkpoint.options.epochs, checkpoint.options.patience
        stopped_early = bool(patience) and checkpoint.epoch > 0 and checkpoint.stale_epochs >= patience
        if checkpoint.epoch >= planned or stopped_early:
            return RunStatus("finished", checkpoint.epoch, planned)
        return RunStatus("partial", checkpoint.epoch, planned)

    def options(self) -> TrainOptions:
        """The run's options, as its last.pth (else best.pth) records them."""
        which = "last" if self.checkpoint_path("last").exists() else "best"
        return self.checkpoint(which, mmap=True).options

    def held_by(self) -> str | None:
        """Who writes the folder now (a running train.py), or None."""
        holder = FolderLock(self.folder, "").holder()
        return describe_holder(holder) if holder else None

    # ------------------------------------------------------------------------------------------
    # Its evaluations
    # ------------------------------------------------------------------------------------------
    def evaluation_path(self, which: str, set_id: str) -> Path:
        return self.folder / EVALUATIONS / f"{which}.{set_id}.json"

    def evaluation(self, which: str, set_id: str, identity: dict[str, str]) -> dict[str, Any] | None:
        """The stored evaluation of checkpoint ``which`` on the set ``set_id``, when it was made of the
        checkpoint and rows that are there now (``identity``); None otherwise."""
        path = self.evaluation_path(which, set_id)
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(stored, dict) or stored.get("identity") != identity:
            return None
        return stored

    # ------------------------------------------------------------------------------------------
    # Writing
    # ------------------------------------------------------------------------------------------
    def check_place(self, output_dir: Path | None = None) -> None:
        """A new run goes into a folder of its own: not into data (a dataset, web_images/, a folder holding
        images/ or annotations/), not the current folder itself, and, with ``output_dir``, not outside it."""
        data = holds_data(self.folder) if self.folder.is_dir() else None
        around = data_folder_around(self.folder)
        if data is not None or around is not None:
            shown = f"{self.folder} holds data ({data})" if data else f"{self.folder} lies in the data folder {around}"
            raise RunError(
                f"{shown} that train.py did not write: a run goes into a folder of its own; choose another "
                f"--output-dir or --name"
            )
        if self.folder.resolve() == Path.cwd().resolve():
            raise RunError(
                f"--output-dir {self.folder}: that is the current folder; a run goes into a folder of its own (pass "
                f"--name NAME, or --output-dir {config.OUTPUT_DIR})"
            )
        if output_dir is not None and not self.folder.resolve().is_relative_to(Path(output_dir).resolve()):
            raise RunError(f"{self.folder} lies outside --output-dir {output_dir}; choose a --name inside it")
        self.files.check_place()

    @contextmanager
    def writer(self, purpose: str, new: bool = False, replace: bool = False) -> Iterator[RunWriter]:
        """The folder held for writing (see RunWriter); the lock is released and a new run that never
        finished an epoch is removed when the block ends."""
        created = not self.folder.exists()
        lock = FolderLock(self.folder, purpose).acquire()
        writer = RunWriter(self, lock)
        try:
            remove_stale_temporaries(self.folder)
            self.files.remove_stale_staging()
            if new:
                writer.begin_new(replace)
            yield writer
        finally:
            writer.close()
            lock.release()
            if created:
                _remove_if_empty(self.folder)


def _remove_if_empty(folder: Path) -> None:
    with suppress(OSError):
        folder.rmdir()


class RunWriter:
    """The one process writing a run's folder. A new run's files go to a staging folder until
    ``commit`` (after its first epoch), then into the run folder, replacing the toolkit's files of the
    run there before (and only those); afterwards every write goes straight into the folder."""

    def __init__(self, run: Run, lock: FolderLock):
        self.run, self.lock = run, lock
        self.staging: Staging | None = None

    @property
    def folder(self) -> Path:
        return self.run.folder

    def begin_new(self, replace: bool) -> None:
        run = self.run
        if run.has_run and not replace:
            shown = [n for n in (config.BEST_CHECKPOINT, config.LAST_CHECKPOINT) if (run.folder / n).exists()]
            raise RunError(
                f"{run.folder} already holds a run ({', '.join(shown)}): pass --name NEW to keep both, --overwrite "
                f"to replace it, or --resume {run.checkpoint_path('last')} to go on with it"
            )
        run.files.check([n for n in RUN_FILE_NAMES if (run.folder / n).exists()])
        self.staging = Staging(run.files)

    @property
    def staged(self) -> bool:
        return self.staging is not None and not self.staging.committed

    def write_bytes(self, name: str, data: bytes) -> Path:
        if self.staged:
            assert self.staging is not None
            return self.staging.write_bytes(name, data)
        return self.run.files.write_bytes(name, data)

    def write_text(self, name: str, text: str) -> Path:
        return self.write_bytes(name, text.encode("utf-8"))

    @contextmanager
    def change(self) -> Iterator[Staging]:
        """Several files written aside and put in place together (an evaluation's JSON, CSV and figure)."""
        with self.run.files.staged() as change:
            yield change

    def save_checkpoint(self, which: str, payload: dict[str, Any]) -> Path:
        return self.write_bytes(self.run.checkpoint_path(which).name, checkpoint_bytes(payload))

    def write_history(self, history: Sequence[dict[str, float]]) -> Path:
        return self.write_bytes(config.HISTORY_FILE, history_bytes(history))

    def write_json(self, name: str, values: dict[str, Any]) -> Path:
        return self.write_text(name, json.dumps(values, indent=2, default=_plain) + "\n")

    def commit(self) -> None:
        """The new run's files into the run folder, the previous run's files out: the switch."""
        if self.staged:
            assert self.staging is not None
            self.staging.commit(replace_all=True)

    def close(self) -> None:
        if self.staging is not None and not self.staging.committed:
            self.staging.discard()


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return str(value)


__all__ = ["EVALUATIONS", "HISTORY_COLUMNS", "Run", "RunError", "RunStatus", "RunWriter", "write_error"]
