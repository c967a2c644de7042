"""Evaluating a checkpoint: the figures eval.py prints and writes, and the practical's report reads back.

An evaluation is stored under the identity of what it scored, never under a file's name: a run's own
split (``best.test``), or other rows (``best.rows-<stem>-<hash>``, the hash of the file's resolved path
and content). Its JSON records the checkpoint's save id and a hash of the rows and their images, so
that a stored evaluation is used only while it is still true of the files (``Run.evaluation``); the
report and compare read a run's own test split as "test", and nothing else can pose as it.

    RUN/evaluations/best.test.json           every figure of best.pth on the run's test split
    RUN/evaluations/best.test.images.csv     one row per image
    RUN/evaluations/best.test.confusion.png  the confusion matrix
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from model.core.files import temporary_name, write_error
from model.core.owned import OwnedFolder
from model.data.annotations import Annotation, DataError, Problems, check_labels, read_rows, write_rows_text
from model.data.cache import dataset_key
from model.data.web import web_rows
from model.evaluation.inference import Inference, images_root, rows_dataset, run_model
from model.evaluation.metrics import ImageResults, summarize, to_json_ready
from model.evaluation.settings import SET_NAMES
from model.runs.checkpoint import Checkpoint
from model.runs.plots import confusion_png
from model.runs.run import EVALUATIONS, Run

EVALUATION_FORMAT = "cvpr-evaluation"
CORNERS = ("x1", "y1", "x2", "y2")
PER_IMAGE_COLUMNS = [
    "set",
    "path",
    "true_label",
    "predicted_label",
    "confidence",
    "iou",
    "failure",
    *(f"pred_{c}" for c in CORNERS),
    *(f"true_{c}" for c in CORNERS),
]


@dataclass(frozen=True)
class ScoredSet:
    """Rows an evaluation scores: one of the run's own splits, or other rows (a CSV file)."""

    id: str  # "test", or "rows-<stem>-<hash>"
    name: str  # as printed: "test", "validation", or the file's stem
    source: Path  # the rows file
    root: Path  # the dataset folder its images are in
    rows: tuple[Annotation, ...]

    @property
    def own_split(self) -> bool:
        return self.id in SET_NAMES

    def identity(self, checkpoint: Checkpoint) -> dict[str, str]:
        """What a stored evaluation of it must match: the checkpoint's save, the rows and their images."""
        return {"checkpoint": checkpoint.identity, "rows": dataset_key(self.root, self.rows, 0)}


def own_split(checkpoint: Checkpoint, split: str, problems: Problems, dataset: Path | None = None) -> ScoredSet:
    """The run's own ``split`` (train, val, test), as its split file holds it."""
    path = Run.of(checkpoint.path).split_path(split)
    if not path.is_file():
        raise DataError(
            f"{path}: the {split} split file recorded with {checkpoint.path} is missing; pass --csv FILE instead"
        )
    rows = check_labels(read_rows(path, problems), checkpoint.classes, problems)
    return ScoredSet(split, SET_NAMES[split], path, images_root(path, dataset, checkpoint), tuple(rows))


def other_rows(checkpoint: Checkpoint, path: Path, problems: Problems, dataset: Path | None = None) -> ScoredSet:
    """Rows of another file (e.g. web_images/annotations.csv), identified by its resolved path and content."""
    rows = check_labels(read_rows(path, problems), checkpoint.classes, problems)
    if not rows:
        raise DataError(f"{path}: no usable row to evaluate")
    resolved = Path(path).resolve()
    digest = hashlib.sha256(str(resolved).encode() + b"\0" + resolved.read_bytes()).hexdigest()[:10]
    return ScoredSet(
        f"rows-{Path(path).stem}-{digest}",
        Path(path).stem,
        Path(path),
        images_root(path, dataset, checkpoint),
        tuple(rows),
    )


def internet_images(checkpoint: Checkpoint, folder: Path, problems: Problems) -> ScoredSet:
    """Every image under ``folder``/images/<label>/ (web_images/), with its box where annotations.csv gives
    one: identified by the folder and its rows."""
    rows = check_labels(web_rows(folder, problems), checkpoint.classes, problems)
    if not rows:
        raise DataError(f"{folder}/images: no image of the model's classes ({', '.join(checkpoint.classes)}) there")
    resolved = Path(folder).resolve()
    digest = hashlib.sha256(str(resolved).encode() + b"\0" + write_rows_text(rows).encode()).hexdigest()[:10]
    return ScoredSet(f"web-{digest}", "internet", Path(folder), Path(folder), tuple(rows))


@dataclass
class SetEvaluation:
    """One checkpoint on one set: its figures and per-image results."""

    scored: ScoredSet
    figures: dict[str, Any]  # loss terms and summarize()'s figures
    results: ImageResults


@dataclass
class Evaluation:
    """A checkpoint's evaluations, set by set, in order."""

    checkpoint: Checkpoint
    sets: list[SetEvaluation]

    @property
    def which(self) -> str:
        return self.checkpoint.path.stem  # best, last (or the file's own name)


def evaluate_set(
    checkpoint: Checkpoint,
    model,
    scored: ScoredSet,
    inference: Inference,
    problems: Problems,
    workers: int,
    iou_threshold: float = 0.5,
) -> SetEvaluation:
    data = rows_dataset(scored.rows, scored.root, checkpoint, problems, workers)
    stats, results = run_model(model, data, checkpoint, inference)
    figures = {"loss": stats.loss, "class_loss": stats.class_loss}
    if not math.isnan(stats.box_loss):  # a classification-only network has none (as summarize gives it no IoU)
        figures["box_loss"] = stats.box_loss
    figures.update(summarize(results, iou_threshold))
    return SetEvaluation(scored, figures, results)


def stored_json(checkpoint: Checkpoint, evaluation: SetEvaluation, iou_threshold: float) -> dict[str, Any]:
    scored = evaluation.scored
    return to_json_ready(
        {
            "format": EVALUATION_FORMAT,
            "checkpoint": str(checkpoint.path),
            "epoch": checkpoint.epoch,
            "model": {"name": checkpoint.model_name, "options": checkpoint.record.model_options},
            "classes": checkpoint.classes,
            "set": {"id": scored.id, "name": scored.name, "file": str(scored.source), "own_split": scored.own_split},
            "identity": scored.identity(checkpoint),
            "iou_threshold": iou_threshold,
            "figures": evaluation.figures,
        }
    )


def evaluation_files(checkpoint: Checkpoint, evaluation: SetEvaluation, iou_threshold: float) -> dict[str, bytes]:
    """The three files of one evaluation: name -> bytes."""
    stem = f"{checkpoint.path.stem}.{evaluation.scored.id}"
    figures = evaluation.figures
    confusion = confusion_png(
        figures["confusion"]["labels"],
        figures["confusion"]["matrix"],
        f"{checkpoint.model_name}: {evaluation.scored.name} set",
    )
    return {
        f"{stem}.json": (json.dumps(stored_json(checkpoint, evaluation, iou_threshold), indent=2) + "\n").encode(),
        f"{stem}.images.csv": per_image_frame({evaluation.scored.name: evaluation.results}, iou_threshold)
        .to_csv(index=False)
        .encode(),
        f"{stem}.confusion.png": confusion,
    }


def evaluation_names(checkpoint: Checkpoint, sets: list[ScoredSet]) -> list[str]:
    """The files an evaluation of ``sets`` writes (JSON, per-image CSV, confusion matrix per set)."""
    return [f"{checkpoint.path.stem}.{s.id}{suffix}" for s in sets for suffix in EVALUATION_SUFFIXES]


EVALUATION_SUFFIXES = (".json", ".images.csv", ".confusion.png")


def check_destination(out: Path | None, checkpoint: Checkpoint, sets: list[ScoredSet]) -> None:
    """Before anything is evaluated: the files can go where they will go (never into data, never over a file
    of the user's, a folder that can be written)."""
    names = evaluation_names(checkpoint, sets)
    if out is None:
        run = Run.of(checkpoint.path)
        run.files.check_place()
        run.files.check([f"{EVALUATIONS}/{name}" for name in names])
        folder = run.folder / EVALUATIONS
    else:
        owned = OwnedFolder(Path(out), writer="eval.py", option="--out")
        owned.check_place()
        owned.check(names)
        folder = owned.folder
    while not folder.exists() and folder.parent != folder:  # the nearest folder that is there: none is made yet
        folder = folder.parent
    probe = folder / temporary_name("probe")
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise write_error(folder, error) from None


def write_evaluation(evaluation: Evaluation, out: Path | None, iou_threshold: float = 0.5) -> list[Path]:
    """Each set's files into the run's evaluations/ (under its lock, recorded in its manifest), or into
    ``out``, where a file the toolkit did not write is never replaced: all of them together, or none; the
    JSON files written."""
    files = {
        name: data
        for set_evaluation in evaluation.sets
        for name, data in evaluation_files(evaluation.checkpoint, set_evaluation, iou_threshold).items()
    }
    if out is None:
        run = Run.of(evaluation.checkpoint.path)
        with run.writer("eval.py") as writer, writer.change() as change:
            paths = [change.write_bytes(f"{EVALUATIONS}/{name}", data) for name, data in files.items()]
    else:
        folder = OwnedFolder(Path(out), writer="eval.py", option="--out")
        with folder.staged() as change:
            paths = [change.write_bytes(name, data) for name, data in files.items()]
    return [p for p in paths if p.suffix == ".json"]


def ensure_evaluation(
    run: Run, which: str, split: str, inference: Inference, workers: int, echo=print
) -> dict[str, Any]:
    """The figures of the run's checkpoint ``which`` on its own ``split``: the stored ones while they are
    true of the files, else evaluated now and stored."""
    checkpoint = run.checkpoint(which, mmap=True)  # its weights are read only if it is evaluated now
    problems = Problems(skip=False)
    scored = own_split(checkpoint, split, problems)
    stored = run.evaluation(which, scored.id, scored.identity(checkpoint))
    if stored is not None:
        return stored
    echo(f"Evaluating {checkpoint.path} on its {scored.name} split")
    model = inference.place(checkpoint.build_model())
    evaluation = Evaluation(checkpoint, [evaluate_set(checkpoint, model, scored, inference, problems, workers)])
    write_evaluation(evaluation, None)
    stored = run.evaluation(which, scored.id, scored.identity(checkpoint))
    assert stored is not None
    return stored


def ensure_internet_evaluation(
    run: Run, which: str, folder: Path, inference: Inference, workers: int, echo=print
) -> tuple[dict[str, Any], Path]:
    """The same for the internet images of ``folder`` (web_images/); with the per-image CSV's path."""
    checkpoint = run.checkpoint(which, mmap=True)
    problems = Problems(skip=True)
    scored = internet_images(checkpoint, folder, problems)
    stored = run.evaluation(which, scored.id, scored.identity(checkpoint))
    if stored is None:
        echo(f"Evaluating {checkpoint.path} on the internet images of {folder}")
        model = inference.place(checkpoint.build_model())
        write_evaluation(
            Evaluation(checkpoint, [evaluate_set(checkpoint, model, scored, inference, problems, workers)]), None
        )
        stored = run.evaluation(which, scored.id, scored.identity(checkpoint))
        assert stored is not None
    return stored, run.folder / EVALUATIONS / f"{which}.{scored.id}.images.csv"


def per_image_frame(sets: dict[str, ImageResults], iou_threshold: float) -> pd.DataFrame:
    """One row per evaluated image: set, path, true and predicted label, confidence, IoU, failure,
    predicted and true box in pixels of the original image (to 4 and 1 decimals)."""
    rows = []
    for name, r in sets.items():
        failures = r.failures(iou_threshold)
        for i, path in enumerate(r.paths):
            predicted = [f"{v:.1f}" for v in r.predicted_boxes[i]] if r.predicted_boxes is not None else [""] * 4
            true = [f"{v:.1f}" for v in r.true_boxes[i]] if r.has_true_box(i) else [""] * 4
            rows.append(
                [
                    name,
                    str(path),
                    r.classes[r.true_labels[i]],
                    r.classes[r.predicted_labels[i]],
                    f"{r.confidence[i]:.4f}",
                    "" if r.iou is None or not r.has_true_box(i) else f"{r.iou[i]:.4f}",
                    int(failures[i]),
                    *predicted,
                    *true,
                ]
            )
    return pd.DataFrame(rows, columns=PER_IMAGE_COLUMNS)


def read_per_image(path: Path, classes: list[str]) -> ImageResults:
    """The per-image CSV of a stored evaluation, back as ImageResults (for galleries drawn later)."""
    frame = pd.read_csv(path, keep_default_na=True)
    index = {c: i for i, c in enumerate(classes)}
    boxes = lambda prefix: frame[[f"{prefix}_{c}" for c in CORNERS]].to_numpy(dtype=float)  # noqa: E731
    has_boxes = frame["pred_x1"].notna().any()
    return ImageResults(
        [Path(p) for p in frame["path"]],
        list(classes),
        frame["true_label"].map(index).to_numpy(dtype=int),
        frame["predicted_label"].map(index).to_numpy(dtype=int),
        frame["confidence"].to_numpy(dtype=float),
        frame["iou"].to_numpy(dtype=float) if has_boxes else None,
        boxes("true"),
        boxes("pred") if has_boxes else None,
    )


# ----------------------------------------------------------------------------------------------
# The classic baselines, stored like any evaluation
# ----------------------------------------------------------------------------------------------
CLASSIC_VERSION = 1  # raised when model/evaluation/classic.py would give other results from the same rows


def ensure_classic_evaluation(run: Run, workers: int, echo=print) -> dict[str, tuple[dict[str, Any], ImageResults]]:
    """The classic OpenCV baselines fitted on the run's training split and scored on its test split with the run's
    loss (Part 4): the stored ones while they are true of the rows, else fitted now (a minute on the course set)
    and stored in the run's evaluations/; name -> (figures, losses and the choice made; per-image results)."""
    from model.evaluation.classic import run_baselines
    from model.experiment.loss import loss_for

    checkpoint = run.checkpoint("best", mmap=True)
    problems = Problems(skip=True)
    train = own_split(checkpoint, "train", problems)
    test = own_split(checkpoint, "test", problems)
    identity = {
        "rows": dataset_key(train.root, train.rows + test.rows, CLASSIC_VERSION),
        "loss": str(checkpoint.options.recorded()),
    }
    stored = run.evaluation("classic", "test", identity)
    if stored is None:
        echo(f"Fitting the classic baselines on {train.source} (scored on {test.source})")
        baselines = run_baselines(test.root, train.rows, test.rows, checkpoint.classes, loss_for(checkpoint.options))
        files: dict[str, bytes] = {}
        entries: dict[str, dict[str, Any]] = {}
        for name, baseline in baselines.items():
            figures = {**baseline.losses, **summarize(baseline.results)}
            entries[name] = {"figures": to_json_ready(figures), "chosen": baseline.chosen}
            frame = per_image_frame({"test": baseline.results}, 0.5)
            files[f"{EVALUATIONS}/classic-{name}.test.images.csv"] = frame.to_csv(index=False).encode()
        document: dict[str, Any] = {
            "format": EVALUATION_FORMAT,
            "identity": identity,
            "classes": checkpoint.classes,
            "baselines": entries,
        }
        files[f"{EVALUATIONS}/classic.test.json"] = (json.dumps(document, indent=2) + "\n").encode()
        with run.writer("compare.py --practical") as writer, writer.change() as change:
            for name, data in files.items():
                change.write_bytes(name, data)
        stored = document
    return {
        name: (
            entry["figures"] | {"chosen": entry["chosen"]},
            read_per_image(run.folder / EVALUATIONS / f"classic-{name}.test.images.csv", checkpoint.classes),
        )
        for name, entry in stored["baselines"].items()
    }
