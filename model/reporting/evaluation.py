"""eval.py's work: a checkpoint scored on its own splits (or on other rows) by model/evaluation, printed as the course
template prints it (here, with the box, confusion and failure tables: what people read), and the files of each set
written together beside the run (or in --out).

    python eval.py output/best.pth     ->  evaluate(EvalSettings(Path("output/best.pth")))
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import numpy as np
from rich.console import Console
from rich.table import Table

from model.core.errors import UserError
from model.core.runtime import select_device, usable_cpus
from model.data.annotations import Problems
from model.evaluation.evaluate import (
    Evaluation,
    ScoredSet,
    check_destination,
    evaluate_set,
    other_rows,
    own_split,
    write_evaluation,
)
from model.evaluation.inference import Inference, load_trained
from model.evaluation.metrics import ImageResults
from model.evaluation.settings import EvalSettings
from model.reporting.tables import format_cell


def evaluate(settings: EvalSettings) -> list[Path]:
    """Everything eval.py does; the JSON files written."""
    inference = Inference.on(select_device(settings.device), settings.precision, settings.batch_size)
    problems = Problems(skip=settings.skip_bad_rows, strict=settings.strict)
    loaded, model = load_trained(settings.checkpoint, inference.device)
    sets = [own_split(loaded, split, problems, settings.dataset) for split in settings.chosen_splits]
    sets = without_empty(sets, settings.all_splits)
    sets += [other_rows(loaded, path, problems, settings.dataset) for path in settings.csv_files]
    check_names(sets)
    check_destination(settings.out, loaded, sets)  # before the evaluation, not after it
    workers = settings.workers or usable_cpus()
    scored = [evaluate_set(loaded, model, s, inference, problems, workers, settings.iou_threshold) for s in sets]
    evaluation = Evaluation(loaded, scored)
    for line in problems.lines():
        click.echo(line)
    show(evaluation, settings.failures, settings.failure_lines, settings.iou_threshold)
    written = write_evaluation(evaluation, settings.out, settings.iou_threshold)
    for path in written:
        click.echo(f"Wrote {path} (and {path.name[: -len('.json')]}.images.csv, .confusion.png)")
    return written


def without_empty(sets: list[ScoredSet], all_splits: bool) -> list[ScoredSet]:
    """An empty split of the run (trained with --cut-test 1.0?) has no figures: refused when asked for, left out
    with a warning when eval.py evaluates every split."""
    for scored in sets:
        if not scored.rows:
            if not all_splits:
                raise UserError(
                    f"{scored.source}: the run's {scored.name} split is empty, so it has no figures; evaluate "
                    f"another split (--split)"
                )
            click.echo(f"warning: {scored.source}: the run's {scored.name} split is empty: left out", err=True)
    kept = [s for s in sets if s.rows]
    if sets and not kept:
        raise UserError(f"{sets[0].source.parent}: every split of the run is empty; nothing to evaluate")
    return kept


def check_names(sets: list[ScoredSet]) -> None:
    """Two sets printed under one name (two --csv files called test.csv) would read as one."""
    seen: dict[str, Path] = {}
    for scored in sets:
        if scored.name in seen:
            raise UserError(
                f"--csv {scored.source}: a set named {scored.name!r} is already evaluated ({seen[scored.name]}); "
                f"rename one of the files"
            )
        seen[scored.name] = scored.source


# ----------------------------------------------------------------------------------------------
# What eval.py prints
# ----------------------------------------------------------------------------------------------
def accuracy_block(name: str, figures: dict) -> list[str]:
    """The course template's printout of one set, character for character, from summarize().

    An empty line before the header and before each label; every class, also one with no image in
    the set, for which the template's numpy prints ``nan`` and ``0.0 over 0 samples``.
    """

    def mean(f: dict) -> str:  # numpy's mean of the per-image booleans, as print() shows it
        return str(f["accuracy"]) if f["images"] else "nan"

    def count(f: dict) -> str:  # numpy's sum of a list of booleans: an integer, or 0.0 when empty
        return str(f["correct"]) if f["images"] else "0.0"

    lines = ["", f"*** {name} set accuracy", f"\tMean accuracy for all labels: {mean(figures['overall'])}"]
    for label, f in figures["per_label"].items():
        lines += ["", f"\tMean accuracy for label {label}: {mean(f)}", f"\t\t {count(f)} over {f['images']} samples"]
    return lines


def box_table(name: str, figures: dict) -> Table:
    table = Table(title=f"{name} set: boxes (IoU threshold {figures['iou_threshold']})")
    for column in ("label", "images", "accuracy", "mean IoU", "IoU >= t", "detection acc.", "corner error px"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for label, f in [("all", figures["overall"]), *figures["per_label"].items()]:
        table.add_row(
            label,
            str(f["images"]),
            format_cell(f["accuracy"], 3),
            format_cell(f.get("mean_iou"), 3),
            format_cell(f.get("iou_at_threshold"), 3),
            format_cell(f.get("detection_accuracy"), 3),
            format_cell(f.get("corner_error_px"), 1),
        )
    return table


def confusion_table(name: str, figures: dict) -> Table:
    labels, matrix = figures["confusion"]["labels"], figures["confusion"]["matrix"]
    table = Table(title=f"{name} set: confusion (rows true, columns predicted)")
    table.add_column("true \\ predicted")
    for label in labels:
        table.add_column(label, justify="right")
    for label, row in zip(labels, matrix):
        table.add_row(label, *(str(v) for v in row))
    return table


def failure_table(name: str, results: ImageResults, iou_threshold: float) -> Table:
    table = Table(title=f"{name} set: failures (wrong label or IoU < {iou_threshold})")
    for column in ("image", "true", "predicted", "confidence", "IoU"):
        table.add_column(column)
    for i in np.flatnonzero(results.failures(iou_threshold)):
        table.add_row(
            "/".join(Path(results.paths[i]).parts[-2:]),
            results.classes[results.true_labels[i]],
            results.classes[results.predicted_labels[i]],
            f"{results.confidence[i]:.3f}",
            format_cell(None if results.iou is None else float(results.iou[i]), 3),
        )
    return table


def show(evaluation: Evaluation, failures: bool, failure_lines: bool, iou_threshold: float) -> None:
    """The template's printout (its failure lines first when asked), then the box, confusion and failure tables."""
    if failure_lines:
        for s in evaluation.sets:
            r = s.results
            for i in np.flatnonzero(r.predicted_labels != r.true_labels):
                click.echo(f"\tFailure at {r.paths[i]}")
    click.echo("\n".join(line for s in evaluation.sets for line in accuracy_block(s.scored.name, s.figures)))
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    for s in evaluation.sets:
        click.echo()
        if s.results.iou is not None:
            console.print(box_table(s.scored.name, s.figures))
        console.print(confusion_table(s.scored.name, s.figures))
        if failures:
            console.print(failure_table(s.scored.name, s.results, iou_threshold))
