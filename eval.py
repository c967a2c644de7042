"""Evaluate a trained checkpoint: per-label accuracy (the course's block), box quality, confusion.

Writes into the run's evaluations/ folder (or into --out DIR), per set, under the identity of what it
scored (model/evaluation/evaluate.py): best.test.json (every figure), best.test.images.csv (per image),
best.test.confusion.png; other rows (--csv) as best.rows-<name>-<hash>.*, never as one of the run's splits.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import numpy as np
from rich.console import Console
from rich.table import Table

from model.core.cli import FiniteFloat, device_option, precision_option
from model.core.errors import UserError, one_line_errors
from model.core.runtime import select_device, usable_cpus
from model.data.annotations import Problems
from model.evaluation.evaluate import (
    SET_NAMES,
    Evaluation,
    check_writable,
    evaluate_set,
    other_rows,
    own_split,
    write_evaluation,
)
from model.evaluation.inference import Inference, load_trained
from model.evaluation.metrics import ImageResults
from model.reporting.tables import format_cell


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


@click.command(context_settings={"show_default": True, "max_content_width": 110})
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option(
    "--split",
    "splits",
    type=click.Choice(list(SET_NAMES)),
    multiple=True,
    help="Recorded split(s) to evaluate (repeat the option)  [default: train, val and test; none with --csv]",
)
@click.option(
    "--csv",
    "csv_files",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    multiple=True,
    help="Other rows in the course format, e.g. web_images/annotations.csv (repeatable); stored apart from the "
    "run's own splits, under the file's identity.",
)
@click.option(
    "--dataset",
    type=click.Path(path_type=Path),
    default=None,
    help="Where the images are  [default: the CSV's own dataset, else the one the model trained on]",
)
@click.option("--failures", is_flag=True, help="List the failing images of each set (wrong label or low IoU).")
@click.option(
    "--failure-lines",
    is_flag=True,
    help="Print the course template's '\\tFailure at <path>' line for each misclassified image, before the blocks.",
)
@click.option("--iou-threshold", type=FiniteFloat(0, 1), default=0.5, help="A box is right from this IoU.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for the JSON, CSV and PNG  [default: the run's evaluations/ folder]",
)
@device_option()
@precision_option()
@click.option("--batch-size", type=click.IntRange(min=1), default=64)
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Threads decoding images.")
@click.option("--skip-bad-rows", is_flag=True, help="Skip unreadable images and bad rows instead of stopping.")
@click.option("--strict", is_flag=True, help="Stop on odd rows too (zero-size or clipped boxes), kept otherwise.")
def main(
    checkpoint: Path,
    splits: tuple[str, ...],
    csv_files: tuple[Path, ...],
    dataset: Path | None,
    failures: bool,
    failure_lines: bool,
    iou_threshold: float,
    out: Path | None,
    device: str,
    precision: str,
    batch_size: int,
    workers: int | None,
    skip_bad_rows: bool,
    strict: bool,
) -> None:
    """Evaluate CHECKPOINT on its train, validation and test splits (or on --csv files).

    \b
    python eval.py output/best.pth
    python eval.py output/vgg/best.pth --split test --failures
    python eval.py output/best.pth --csv web_images/annotations.csv
    """
    with one_line_errors():
        inference = Inference.on(select_device(device), precision, batch_size)
        problems = Problems(skip=skip_bad_rows, strict=strict)
        loaded, model = load_trained(checkpoint, inference.device)
        chosen = splits or (() if csv_files else tuple(SET_NAMES))
        sets = [own_split(loaded, split, problems, dataset) for split in chosen]
        sets += [other_rows(loaded, path, problems, dataset) for path in csv_files]
        check_names(sets)
        check_writable(out, loaded)  # before the evaluation, not after it
        evaluation = Evaluation(
            loaded,
            [
                evaluate_set(loaded, model, s, inference, problems, workers or usable_cpus(), iou_threshold)
                for s in sets
            ],
        )
        for line in problems.lines():
            click.echo(line)
        show(evaluation, failures, failure_lines, iou_threshold)
        written = write_evaluation(evaluation, out, iou_threshold)
    for path in written:
        click.echo(f"Wrote {path} (and {path.name[: -len('.json')]}.images.csv, .confusion.png)")


def check_names(sets: list) -> None:
    """Two sets printed under one name (two --csv files called test.csv) would read as one."""
    seen: dict[str, Path] = {}
    for scored in sets:
        if scored.name in seen:
            raise UserError(
                f"--csv {scored.source}: a set named {scored.name!r} is already evaluated ({seen[scored.name]}); "
                f"rename one of the files"
            )
        seen[scored.name] = scored.source


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


if __name__ == "__main__":
    main()
