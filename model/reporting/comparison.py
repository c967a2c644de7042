"""Comparing trained runs (compare.py RUN..., Part 2 Q4, Part 3 Q8, Part 4): each run's best model on its own test
split as a ModelReport, the classic baselines beside them on the same loss, the comparison's table, figures,
galleries and error analysis, written into a folder whose files the toolkit owns (never a file of yours).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from model import config
from model.annotations import DataError, Problems
from model.checkpoint import Checkpoint, CheckpointError
from model.device import usable_cpus
from model.evaluate import (
    Inference,
    decoded,
    ensure_classic_evaluation,
    other_rows,
    own_split,
    run_model,
    time_inference,
)
from model.files import Folder
from model.metrics import ImageResults, summarize
from model.network import count_parameters
from model.reporting import figures
from model.reporting.robustness import sweep, write_robustness
from model.reporting.tables import error_analysis, write_table
from model.runs import Run, training_figures

COUNT_COLUMNS = ("parameters", "trainable", "best_epoch", "image_size")
TIMING_COLUMNS = ("infer_ms_batched", "infer_ms_single")  # measured anew each time; everything else reproducible
BY_IOU = "Detection accuracy (right label and IoU at least the threshold) against the IoU threshold, test split"


@dataclass
class ModelReport:
    """What a comparison knows of one trained model (or one classic baseline)."""

    name: str  # what tables and legends show
    model: str
    device: str = "cpu"  # where it was evaluated
    parameters: int | None = None
    trainable: int | None = None
    history: list[dict[str, float]] = field(default_factory=list)  # history.csv rows
    image_size: int | None = None
    trained_on: str = ""  # the device its (latest) epochs ran on, and with how many threads (run.json)
    threads: int | None = None
    best_epoch: int | None = None
    test: dict = field(default_factory=dict)  # summarize()'s figures and the losses, on the test split
    results: ImageResults | None = None  # per image, test split
    extra_sets: dict[str, dict] = field(default_factory=dict)  # name -> figures, e.g. web_images
    timing: dict[str, float] = field(default_factory=dict)
    note: str = ""
    key: str = ""  # what names its files (the run's name)
    identity: str = ""  # what its figures are drawn from (its stored evaluation's identity)
    own: np.ndarray | None = None  # the images whose answer is the method's own (a fallback answered the others)

    @property
    def seconds(self) -> float:
        """Mean seconds of its epochs."""
        return float(np.mean([r["seconds"] for r in self.history])) if self.history else math.nan


def trained_report(run: Run, checkpoint: Checkpoint, test: dict, results: ImageResults, **more: Any) -> ModelReport:
    """A trained run's ModelReport: ``test`` and what its folder says of its training (run.json, history.csv)."""
    facts = run.facts()
    last = (facts.get("resumed") or [facts])[-1]  # where its latest epochs ran
    report = ModelReport(run.folder.name, checkpoint.model_name, history=run.history(), test=test, results=results)
    report.parameters, report.trainable = facts.get("parameters"), facts.get("trainable_parameters")
    report.image_size, report.best_epoch = checkpoint.image_size, checkpoint.epoch
    report.trained_on, report.threads, report.key = str(last.get("device", "")), last.get("threads"), run.folder.name
    return replace(report, **more)


def row_of(report: ModelReport, classes: Sequence[str]) -> dict[str, object]:
    """The comparison table's row: plain values, NaN where a figure does not apply."""
    best = next((row for row in report.history if int(row["epoch"]) == report.best_epoch), {})
    prefix, _ = training_figures(report.history)
    sample = "train_sample" if prefix == "train" else "train_running"  # measured each epoch: not the whole split
    overall = report.test.get("overall", {})
    row: dict[str, object] = {"model": report.name, "network": report.model, "parameters": report.parameters}
    row |= {"trainable": report.trainable, "seconds_per_epoch": report.seconds, "best_epoch": report.best_epoch}
    row |= {"image_size": report.image_size, "trained_on": report.trained_on or "-"}
    row |= {f"{sample}_{k}": best.get(f"{prefix}_{k}", math.nan) for k in ("loss", "accuracy")}
    row |= {f"val_{k}": best.get(f"val_{k}", math.nan) for k in ("loss", "accuracy")}
    row |= {f"test_{k}": report.test.get(k, math.nan) for k in ("loss", "class_loss", "box_loss")}
    row |= {f"test_{k}": overall.get(k, math.nan) for k in ("accuracy", "mean_iou")}
    row["test_iou_at_0.5"] = overall.get("iou_at_threshold", math.nan)
    for label in classes:
        figures_of = report.test.get("per_label", {}).get(label, {})
        row |= {f"{m}_{label}": figures_of.get(k, math.nan) for m, k in (("accuracy", "accuracy"), ("iou", "mean_iou"))}
    for name, extra in report.extra_sets.items():
        row |= {f"{name}_{k}": extra["overall"].get(k, math.nan) for k in ("accuracy", "mean_iou")}
    row |= {f"infer_ms_{k}": report.timing.get(f"{k}_ms", math.nan) for k in ("batched", "single")}
    return row | {"device": report.device, "note": report.note}


def comparison_frame(reports: Sequence[ModelReport], classes: Sequence[str]) -> pd.DataFrame:
    """One row per model; counts as integers, NaN where a figure does not apply."""
    return pd.DataFrame([row_of(r, classes) for r in reports]).astype(dict.fromkeys(COUNT_COLUMNS, "Int64"))


@dataclass
class Comparison:
    reports: list[ModelReport] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    robustness: list[dict[str, object]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # what makes the runs' scores less comparable than they look


def compare_runs(runs: Sequence[Path], inference: Inference, problems: Problems, csv_files: Sequence[Path] = (),
                 classic: bool = False, robustness: bool = False) -> Comparison:  # fmt: skip
    """Each run's best model on its test split (and on ``csv_files``), its inference timed; with ``classic`` the
    OpenCV baselines fitted and scored on the first run's split; with ``robustness`` the degraded test images."""
    comparison, first_dataset = Comparison(), None
    for run in runs:
        path = Run(Path(run)).checkpoint_path("best") if Path(run).is_dir() else Path(run)
        if not path.is_file():
            raise CheckpointError(f"{run}: no {config.BEST_CHECKPOINT} there (train it first)")
        checkpoint = Checkpoint(path)
        if comparison.classes and checkpoint.classes != comparison.classes:
            raise DataError(
                f"{path}: its classes {checkpoint.classes} differ from {comparison.classes}; compare runs of one "
                "dataset"
            )
        comparison.classes, first_dataset = checkpoint.classes, first_dataset or checkpoint.dataset
        comparison.warnings += comparability(path, checkpoint, first_dataset)
        model = inference.place(checkpoint.build_model())
        test = decoded(own_split(checkpoint, "test", problems), checkpoint, problems, usable_cpus())
        if not test.rows:
            raise DataError(
                f"{path.parent / config.SPLIT_FILES['test']}: the run's test split is empty (trained with "
                "--cut-test 1.0?); compare scores runs on their test split: retrain with a test split"
            )
        stats, results = run_model(model, test, checkpoint, inference)
        losses = {"loss": stats.loss, "class_loss": stats.class_loss, "box_loss": stats.box_loss}
        report = trained_report(Run(path.parent), checkpoint, losses | summarize(results), results)
        report.name = unique_name(path, checkpoint.model_name, {r.name for r in comparison.reports})
        report.device, (report.parameters, report.trainable) = str(inference.device), count_parameters(model)
        for csv_file in csv_files:
            extra = decoded(other_rows(checkpoint, csv_file, problems), checkpoint, problems, usable_cpus())
            report.extra_sets[csv_file.stem] = summarize(run_model(model, extra, checkpoint, inference)[1])
        report.timing = time_inference(model, test, inference)
        if robustness:
            comparison.robustness += sweep(report.name, report.test["overall"], model, test, checkpoint, inference)
        comparison.reports.append(report)
    if classic and comparison.reports:
        first = Path(runs[0]) if Path(runs[0]).is_dir() else Path(runs[0]).parent
        comparison.reports += classic_reports(Run(first), usable_cpus())
    return comparison


def comparability(path: Path, checkpoint: Checkpoint, first: Path | None) -> list[str]:
    """What a reader of the table should know of this run beside the ones before it: a run not finished, a run
    trained on another dataset folder than the first (its test split holds other pictures)."""
    warnings = []
    status = Run(path.parent).status() if path.parent.joinpath(config.LAST_CHECKPOINT).exists() else None
    if status is not None and status.state == "partial":
        warnings.append(f"Warning: {path.parent} is {status.describe()}: its scores are those of an unfinished run")
    if checkpoint.dataset is not None and checkpoint.dataset != first:
        warnings.append(
            f"Warning: {path} was trained on {checkpoint.dataset}, the first run on {first}: their test scores are "
            "on different pictures"
        )
    return warnings


def unique_name(checkpoint_path: Path, model_name: str, taken: set[str]) -> str:
    """The run folder's name (the network's for output/ itself), made unique among ``taken``."""
    name = checkpoint_path.parent.name if checkpoint_path.parent.name not in ("", ".", "output") else model_name
    base, k = name, 2
    while name in taken:
        name, k = f"{base}-{k}", k + 1
    return name


def classic_reports(run: Run, workers: int, echo: Callable[[str], None] = print) -> list[ModelReport]:
    """The OpenCV baselines fitted on the run's training split and scored on its test split with the run's own loss
    (Part 4: "compute the same loss that you used for your networks"), as stored in the run's evaluations."""
    reports = []
    for name, (test, results) in ensure_classic_evaluation(run, workers, echo).items():
        face = results.classes.index("face") if name == "haar_face" and "face" in results.classes else None
        own = None if face is None else results.predicted_labels == face  # the faces its cascade found
        note = f"fitted on the first run's training split: {test['chosen']}"
        reports.append(ModelReport(name, "classic (OpenCV)", test=test, results=results, note=note, key=name,
                                   identity=str(test.get("loss")), own=own))  # fmt: skip
    return reports


# ----------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Figure:
    """A figure to write: its file name, caption, how to draw it (None: nothing to show), and what it is drawn from
    (a writer that keeps figures takes the one it has when these did not change)."""

    name: str
    caption: str
    draw: Callable[[], bytes | None]
    inputs: tuple[object, ...] = ()


def comparison_figures(reports: Sequence[ModelReport], classes: Sequence[str], prefix: str = "") -> list[Figure]:
    """Every comparison figure of ``reports`` (file names start with ``prefix``); IoU only where a box head ran."""
    sources = tuple(r.identity for r in reports)
    trained = [(r.name, r.history) for r in reports if r.history]
    boxed = [r for r in reports if r.results is not None and r.results.iou is not None]
    iou, every = (" and mean IoU" if boxed else ""), figures.every(trained)
    lines = "solid: training sample, dashed: validation, dotted: best epoch"
    out = []
    if trained:
        out.append(Figure(f"{prefix}loss_curves.png", f"Loss{every} ({lines})", lambda: figures.losses_png(trained)))
        accuracy = lambda: figures.accuracy_png(trained)  # noqa: E731
        out.append(Figure(f"{prefix}accuracy_iou_curves.png", f"Accuracy{iou}{every} ({lines})", accuracy))
    names, tests = [r.name for r in reports], [r.test for r in reports]
    per_label = lambda: figures.per_label_png(names, tests, classes)  # noqa: E731
    out.append(Figure(f"{prefix}per_label.png", f"Accuracy{iou} per label, test split", per_label))
    shown = [(r.name, r.test["confusion"]) for r in reports if "confusion" in r.test]
    confusions = lambda: figures.confusion_grid_png(*zip(*shown))  # noqa: E731
    out.append(Figure(f"{prefix}confusion_matrices.png", "Confusion matrices, test split", confusions))
    if boxed:
        names, results = [r.name for r in boxed], [r.results for r in boxed if r.results is not None]
        histograms = lambda: figures.iou_histograms_png(names, [r.iou for r in results if r.iou is not None])  # noqa: E731
        out.append(Figure(f"{prefix}iou_histograms.png", "IoU of predicted and true boxes, test split", histograms))
        by_iou = lambda: figures.accuracy_by_iou_png(names, results)  # noqa: E731
        out.append(Figure(f"{prefix}accuracy_by_iou.png", BY_IOU, by_iou))
    return [Figure(f.name, f.caption, f.draw, sources) for f in out]


FAILURES, BOXES = "failures_", "boxes_"  # how the file names of a model's two galleries begin


def model_galleries(report: ModelReport, prefix: str = "") -> list[Figure]:
    """A report's galleries: its misclassified images (Part 1 Q4), its best and lowest boxes among the images it
    answered itself (Part 3 Q6); a gallery with nothing to show is left out (its caller says so)."""
    if (results := report.results) is None:
        return []
    out = []
    wrong, total = figures.label_failures(results)
    if wrong:
        caption = f"{report.name}: {figures.failures_caption(results, wrong, total)}"
        draw = lambda: figures.gallery_jpg(results, wrong)  # noqa: E731
        name = f"{prefix}{FAILURES}{report.key or report.name}.jpg"
        out.append(Figure(name, caption, draw, (report.identity, wrong)))
    best, lowest = figures.box_examples(results, report.own)
    if best:
        whose = "the faces its cascade found" if report.own is not None else "right labels"
        caption = f"{report.name}: {whose} with their boxes, test split: the {len(best)} best"
        caption += f" ({figures.iou_range(results, best)})"
        caption += f", then the {len(lowest)} lowest ({figures.iou_range(results, lowest)})" if lowest else ""
        draw = lambda: figures.gallery_jpg(results, [*best, *lowest])  # noqa: E731
        name = f"{prefix}{BOXES}{report.key or report.name}.jpg"
        out.append(Figure(name, caption + " (orange: predicted, blue: true)", draw, (report.identity, best, lowest)))
    return out


def write_outputs(comparison: Comparison, out: Path) -> None:
    """comparison.md/.csv/.tex, errors.md, the figures and (when measured) the robustness files, into ``out`` as one
    change: nothing is replaced when a file there is not the toolkit's."""
    reports = comparison.reports
    with Folder(out, writer="compare.py", option="--out").staged() as change:
        note = "Test figures on each run's own test split; train and validation figures at the best epoch."
        note = "\n\n".join([note, *comparison.warnings])  # said in the file too
        write_table(change, "comparison", comparison_frame(reports, comparison.classes), "Model comparison", note)
        analyses = "\n".join(error_analysis(r.name, r.results) for r in reports)
        change.write_text("errors.md", "# Error analysis (test split)\n\n" + analyses)
        galleries = [g for r in reports for g in model_galleries(r)]
        for figure in [*comparison_figures(reports, comparison.classes), *galleries]:
            if (data := figure.draw()) is not None:
                change.write_bytes(figure.name, data)
        if comparison.robustness:
            write_robustness(comparison.robustness, change)
