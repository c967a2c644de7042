"""Evaluate a trained checkpoint: per-label accuracy (the course's block), box quality, confusion.

Writes next to the checkpoint (or into --out DIR), named after it (e.g. best.pth -> eval_best.*):
a JSON of all figures, a per-image CSV and a confusion-matrix PNG per set (model/evaluation.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import numpy as np
from rich.console import Console
from rich.table import Table

from model.annotations import Problems
from model.errors import one_line_errors
from model.evaluation import SET_NAMES, evaluate_checkpoint, write_evaluation
from model.inference import Inference
from model.metrics import ImageResults
from model.precision import PRECISIONS
from model.runtime import DEVICES, select_device, usable_cpus
from model.tables import format_cell


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
    help="Other rows in the course format, e.g. web_images/annotations.csv (repeatable).",
)
@click.option(
    "--dataset",
    type=click.Path(path_type=Path),
    default=None,
    help="Where the images are  [default: the CSV's own dataset, else the one the model trained on]",
)
@click.option("--failures", is_flag=True, help="List the failing images of each set.")
@click.option("--iou-threshold", type=click.FloatRange(0, 1), default=0.5, help="A box is right from this IoU.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for the JSON, CSV and PNG  [default: the checkpoint's folder]",
)
@click.option("--device", type=click.Choice(DEVICES), default="auto")
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto", help="Autocast, as train.py's option.")
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
        chosen = splits or (() if csv_files else tuple(SET_NAMES))
        evaluation = evaluate_checkpoint(
            checkpoint, inference, problems, chosen, csv_files, dataset, iou_threshold, workers or usable_cpus()
        )
    for line in problems.lines():
        click.echo(line)
    figures, results = evaluation.figures, evaluation.results
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    click.echo("\n".join(line for name in results for line in accuracy_block(name, figures[name])))
    for name, r in results.items():
        click.echo()
        if r.iou is not None:
            console.print(box_table(name, figures[name]))
        console.print(confusion_table(name, figures[name]))
        if failures:
            console.print(failure_table(name, r, iou_threshold))
    written = write_evaluation(evaluation, Path(out) if out else Path(checkpoint).parent, iou_threshold)
    click.echo(f"Wrote {written}, {written.stem}_images.csv and {written.stem}_confusion_*.png")


if __name__ == "__main__":
    main()
