"""Comparing trained runs (Part 2 Q4, Part 3 Q8, Part 4): each run's best model on its own test split
into a ModelReport, the classic baselines beside them on the same loss, and every table and figure of
the comparison, written into an output folder whose files the toolkit owns (never a file of yours).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

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
from model.metrics import summarize
from model.network import count_parameters
from model.reporting import figures
from model.reporting.error_analysis import error_analysis
from model.reporting.model_report import ModelReport, comparison_frame
from model.reporting.robustness import sweep, write_robustness
from model.reporting.tables import Sink, write_table
from model.runs import Run


@dataclass
class Comparison:
    """The reports of the compared runs (and baselines), in order, and what else was measured."""

    reports: list[ModelReport] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    robustness: list[dict[str, object]] = field(default_factory=list)

    @property
    def frame(self) -> pd.DataFrame:
        return comparison_frame(self.reports, self.classes)


def checkpoint_of(run: Path) -> Path:
    """A run folder's best.pth, or the checkpoint file given."""
    path = Run(Path(run)).checkpoint_path("best") if Path(run).is_dir() else Path(run)
    if not path.is_file():
        raise CheckpointError(f"{run}: no {config.BEST_CHECKPOINT} there (train it first)")
    return path


def unique_name(checkpoint_path: Path, model_name: str, taken: set[str]) -> str:
    """The run folder's name (the network's for output/ itself), made unique among ``taken``."""
    name = checkpoint_path.parent.name if checkpoint_path.parent.name not in ("", ".", "output") else model_name
    base, k = name, 2
    while name in taken:
        name, k = f"{base}-{k}", k + 1
    return name


def network_report(path: Path, inference: Inference, problems: Problems, taken: set[str]):
    """One run's ModelReport on its own test split, its model and its decoded test split."""
    checkpoint = Checkpoint(path)
    model = inference.place(checkpoint.build_model())
    run = Run(path.parent)
    test_file = run.split_path("test")
    test = decoded(own_split(checkpoint, "test", problems), checkpoint, problems, usable_cpus())
    if not test.rows:
        raise DataError(
            f"{test_file}: the run's test split is empty (trained with --cut-test 1.0?); compare "
            f"scores runs on their test split: retrain with a test split"
        )
    stats, results = run_model(model, test, checkpoint, inference)
    total, trainable = count_parameters(model)
    facts = run.facts()
    last = (facts.get("resumed") or [facts])[-1]  # where its latest epochs ran
    report = ModelReport(
        unique_name(path, checkpoint.model_name, taken),
        checkpoint.model_name,
        str(inference.device),
        total,
        trainable,
        run.history(),
        checkpoint.image_size,
        str(last.get("device", "")),
        last.get("threads"),
        checkpoint.epoch,
        {"loss": stats.loss, "class_loss": stats.class_loss, "box_loss": stats.box_loss, **summarize(results)},
        results,
    )
    return report, checkpoint, model, test


def compare_runs(
    runs: Sequence[Path],
    inference: Inference,
    problems: Problems,
    csv_files: Sequence[Path] = (),
    classic: bool = False,
    robustness: bool = False,
) -> Comparison:
    """Evaluate each run's best model on its test split (and on ``csv_files``), time its inference,
    and with ``classic`` fit and score the OpenCV baselines on the first run's split."""
    comparison = Comparison()
    first = None
    for run in runs:
        report, checkpoint, model, test = network_report(
            checkpoint_of(run), inference, problems, {r.name for r in comparison.reports}
        )
        if comparison.classes and checkpoint.classes != comparison.classes:
            raise DataError(
                f"{checkpoint.path}: its classes {checkpoint.classes} differ from {comparison.classes}; compare runs "
                f"of one dataset"
            )
        comparison.classes = checkpoint.classes
        for csv_file in csv_files:
            extra = decoded(other_rows(checkpoint, csv_file, problems), checkpoint, problems, usable_cpus())
            report.extra_sets[csv_file.stem] = summarize(run_model(model, extra, checkpoint, inference)[1])
        report.timing = time_inference(model, test, inference)
        if robustness:
            comparison.robustness += sweep(report, model, test, checkpoint, inference)
        comparison.reports.append(report)
        first = first or (checkpoint, test)
    if classic and first is not None:
        comparison.reports += classic_reports(Run(first[0].path.parent), usable_cpus())
    return comparison


def classic_reports(run: Run, workers: int, echo: Callable[[str], None] = print) -> list[ModelReport]:
    """The OpenCV baselines fitted on the run's training split and scored on its test split with the run's own
    loss (Part 4: "compute the same loss that you used for your networks"), as stored in the run's evaluations."""
    return [
        ModelReport(
            name,
            "classic (OpenCV)",
            "cpu",
            test=figures,
            results=results,
            note=f"fitted on the first run's training split: {figures['chosen']}",
            key=name,
            identity=str(figures.get("loss")),
        )
        for name, (figures, results) in ensure_classic_evaluation(run, workers, echo).items()
    ]


FAILURES, BOXES = "failures_", "boxes_"  # how the names of a model's two galleries begin


@dataclass(frozen=True)
class Figure:
    """A figure to write: its file name, its caption, how to draw it (None: nothing to show), and what it is drawn
    from (a writer that keeps figures may take the one it has when these did not change)."""

    name: str
    caption: str
    draw: Callable[[], bytes | None]
    inputs: tuple[object, ...] = ()


def comparison_figures(reports: Sequence[ModelReport], classes: Sequence[str], prefix: str = "") -> list[Figure]:
    """Every comparison figure of ``reports`` (file names start with ``prefix``)."""
    sources = tuple(r.identity for r in reports)
    out: list[Figure] = []
    trained = [(r.name, r.history) for r in reports if r.history]
    if trained:
        out.append(
            Figure(
                f"{prefix}loss_curves.png",
                "Loss of every model per epoch (solid: training sample, dashed: validation, dotted: best epoch)",
                lambda: figures.loss_curves_png(trained),
                sources,
            )
        )
        out.append(
            Figure(
                f"{prefix}accuracy_iou_curves.png",
                "Accuracy (and mean IoU) of every model per epoch",
                lambda: figures.metric_curves_png(trained),
                sources,
            )
        )
    names, tests = [r.name for r in reports], [r.test or {} for r in reports]
    out.append(
        Figure(
            f"{prefix}per_label.png",
            "Accuracy (and mean IoU) per label, test split",
            lambda: figures.per_label_png(names, tests, classes),
            sources,
        )
    )
    shown = [(r.name, r.test["confusion"]) for r in reports if r.test and "confusion" in r.test]
    out.append(
        Figure(
            f"{prefix}confusion_matrices.png",
            "Confusion matrices, test split",
            lambda: figures.confusion_grid_png([n for n, _ in shown], [c for _, c in shown]),
            sources,
        )
    )
    boxed = [(r.name, r.results.iou) for r in reports if r.results is not None and r.results.iou is not None]
    if boxed:
        out.append(
            Figure(
                f"{prefix}iou_histograms.png",
                "IoU of predicted and true boxes, test split",
                lambda: figures.iou_histograms_png([n for n, _ in boxed], [i for _, i in boxed]),
                sources,
            )
        )
        out.append(
            Figure(
                f"{prefix}accuracy_by_iou.png",
                "Detection accuracy (right label and IoU at least the threshold) against the IoU threshold, test split",
                lambda: figures.accuracy_by_iou_png(
                    [r for r in reports if r.results is not None and r.results.iou is not None]
                ),
                sources,
            )
        )
    return out


def model_galleries(report: ModelReport, prefix: str = "") -> list[Figure]:
    """A report's galleries: its misclassified images (Part 1 Q4), its best and lowest boxes (Part 3 Q6); a
    gallery with nothing to show is left out (its caller says so)."""
    results = report.results
    if results is None:
        return []
    out = []
    wrong = figures.label_failures(results)
    drawn = "orange: predicted box, blue: true box" if results.iou is not None else "blue: true box"
    if wrong:
        out.append(
            Figure(
                f"{prefix}{FAILURES}{report.file_stem}.jpg",
                f"{report.name}: {figures.failures_shown(results, wrong)} (true and predicted label; {drawn})",
                lambda: figures.gallery_jpg(results, wrong),
                (report.identity, wrong),
            )
        )
    best, lowest = figures.box_examples(results)
    if best:
        caption = (
            f"{report.name}: right labels with their boxes, test split: the {len(best)} best "
            f"({figures.iou_range(results, best)})"
            + (f", then the {len(lowest)} lowest ({figures.iou_range(results, lowest)})" if lowest else "")
            + " (orange: predicted, blue: true)"
        )
        out.append(
            Figure(
                f"{prefix}{BOXES}{report.file_stem}.jpg",
                caption,
                lambda: figures.gallery_jpg(results, [*best, *lowest]),
                (report.identity, best, lowest),
            )
        )
    return out


def write_figures(sink: Sink, figures_to_write: Sequence[Figure]) -> list[tuple[str, Path]]:
    """Draw and write each figure; (caption, path) of those with something to show."""
    written = []
    for figure in figures_to_write:
        data = figure.draw()
        if data is not None:
            written.append((figure.caption, sink.write_bytes(figure.name, data)))
    return written


def error_analysis_markdown(reports: Sequence[ModelReport]) -> str:
    return "# Error analysis (test split)\n\n" + "\n".join(error_analysis(r.name, r.results) for r in reports)


def write_outputs(comparison: Comparison, out: Path) -> None:
    """comparison.md/.csv/.tex, errors.md, the figures and (when measured) the robustness files, into
    ``out`` as one change: nothing is replaced when a file there is not the toolkit's."""
    folder = Folder(out, writer="compare.py", option="--out")
    with folder.staged() as change:
        write_table(
            change,
            "comparison",
            comparison.frame,
            "Model comparison",
            "Test figures on each run's own test split; train and validation figures at the best epoch.",
        )
        change.write_text("errors.md", error_analysis_markdown(comparison.reports))
        shown = comparison_figures(comparison.reports, comparison.classes)
        write_figures(change, [*shown, *(g for r in comparison.reports for g in model_galleries(r))])
        if comparison.robustness:
            write_robustness(comparison.robustness, change)
