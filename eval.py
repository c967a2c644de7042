"""Evaluate a trained checkpoint: per-label accuracy (the course template's printout), box quality, confusion.

``main`` reads as what it does: the checkpoint and its network, the sets to score (the run's own splits, or other
rows with --csv), one pass over each (model/evaluate.py), the printout, then the files of each set, written
together into the run's evaluations/ folder (or --out): best.test.json (every figure), best.test.images.csv (per
image), best.test.confusion.png.
"""

from __future__ import annotations

import atexit
import gc
import sys
from pathlib import Path

import click
import numpy as np
from rich.console import Console
from rich.table import Table

from model.annotations import Problems
from model.checkpoint import Checkpoint
from model.cli import FiniteFloat, checked, device_option, path_type, precision_option
from model.device import usable_cpus
from model.errors import UserError
from model.evaluate import (
    SET_NAMES,
    Inference,
    ScoredSet,
    SetEvaluation,
    check_destination,
    evaluate_set,
    other_rows,
    own_split,
    write_evaluation,
)
from model.metrics import accuracy_block


# fmt: off
@click.command(context_settings={"show_default": True, "max_content_width": 110})
@click.argument("checkpoint", type=path_type())
@click.option("--split", "splits", type=click.Choice(list(SET_NAMES)), multiple=True, help="Recorded split(s) to "
              "evaluate (repeat the option)  [default: train, val and test; none with --csv]")
@click.option("--csv", "csv_files", type=path_type("file"), multiple=True, help="Other rows in the course format, "
              "e.g. web_images/annotations.csv (repeatable); stored apart from the run's own splits, under the "
              "file's identity.")
@click.option("--dataset", type=path_type(), help="Where the images are  [default: the CSV's own dataset, else its "
              "run's, else the one the model trained on]")
@click.option("--failures", is_flag=True, help="List the failing images of each set (wrong label or low IoU).")
@click.option("--failure-lines", is_flag=True, help="Print the course template's '\\tFailure at <path>' line for "
              "each misclassified image, before the blocks.")
@click.option("--iou-threshold", type=FiniteFloat(0, 1), default=0.5, help="A box is right from this IoU.")
@click.option("--out", type=path_type(), help="Folder for the JSON, CSV and PNG  [default: the run's evaluations/]")
@device_option()
@precision_option()
@click.option("--batch-size", type=click.IntRange(min=1, max=65536), default=64)
@click.option("--workers", type=click.IntRange(min=1, max=1024), help="Threads decoding images.")
@click.option("--skip-bad-rows", is_flag=True, help="Skip unreadable images and bad rows instead of stopping.")
@click.option("--strict", is_flag=True, help="Stop on odd rows too (zero-size or clipped boxes), kept otherwise.")
def main(checkpoint, splits, csv_files, dataset, failures, failure_lines, iou_threshold, out, device, precision,
         batch_size, workers, skip_bad_rows, strict) -> None:  # fmt: skip
    """Evaluate CHECKPOINT on its train, validation and test splits (or on --csv files).

    \b
    python eval.py output/best.pth
    python eval.py output/vgg/best.pth --split test --failures
    python eval.py output/best.pth --csv web_images/annotations.csv
    """
    with checked():
        given_once(splits, csv_files)
        inference = Inference.on(device, precision, batch_size)
        loaded = Checkpoint(checkpoint)
        model = inference.place(loaded.build_model())
        problems = Problems(skip=skip_bad_rows, strict=strict)
        everything = not splits and not csv_files  # no set named: the run's three splits
        chosen = tuple(SET_NAMES) if everything else splits
        sets = without_empty([own_split(loaded, s, problems, dataset) for s in chosen], everything)
        sets += [other_rows(loaded, path, problems, dataset) for path in csv_files]
        names_once(sets)
        check_destination(out, loaded, sets)  # before the evaluation, not after it
        workers = workers or usable_cpus()
        scored = [evaluate_set(loaded, model, s, inference, problems, workers, iou_threshold) for s in sets]
        for line in problems.lines():
            click.echo(line)
        show(scored, failures, failure_lines, iou_threshold)
        for path in write_evaluation(loaded, scored, out, iou_threshold):
            click.echo(f"Wrote {path} (and {path.name[: -len('.json')]}.images.csv, .confusion.png)")

# fmt: on


def given_once(splits: tuple[str, ...], csv_files: tuple[Path, ...]) -> None:
    if twice := sorted({s for s in splits if splits.count(s) > 1}):
        raise UserError(f"--split {twice[0]} is given twice; give each split once")
    resolved = [path.resolve() for path in csv_files]
    for i, (path, where) in enumerate(zip(csv_files, resolved)):
        if resolved.index(where) < i:
            raise UserError(f"--csv {path} is given twice (as {csv_files[resolved.index(where)]}); give each file once")


def without_empty(sets: list[ScoredSet], everything: bool) -> list[ScoredSet]:
    """An empty split of the run (trained with --cut-test 1.0?) has no figures: refused when asked for, left out
    with a warning when eval.py evaluates every split."""
    for scored in [s for s in sets if not s.rows]:
        if not everything:
            raise UserError(f"{scored.source}: the run's {scored.name} split is empty, so it has no figures; evaluate "
                            "another split (--split)")  # fmt: skip
        click.echo(f"warning: {scored.source}: the run's {scored.name} split is empty: left out", err=True)
    if sets and not any(s.rows for s in sets):
        raise UserError(f"{sets[0].source.parent}: every split of the run is empty; nothing to evaluate")
    return [s for s in sets if s.rows]


def names_once(sets: list[ScoredSet]) -> None:
    """Two sets printed under one name (two --csv files called test.csv) would read as one."""
    names = [s.name for s in sets]
    for i, scored in enumerate(sets):
        if names.index(scored.name) < i:
            raise UserError(f"--csv {scored.source}: a set named {scored.name!r} is already evaluated "
                            f"({sets[names.index(scored.name)].source}); rename one of the files")  # fmt: skip


def cell(value: float | None, digits: int) -> str:
    return "-" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.{digits}f}"


def tables(s: SetEvaluation, failures: bool, iou_threshold: float) -> list[Table]:
    """The box figures per label, the confusion matrix, and (with --failures) the failing images."""
    f, results, name = s.figures, s.results, s.scored.name
    shown = []
    if results.iou is not None:
        boxes = Table("label", "images", "accuracy", "mean IoU", "IoU >= t", "detection acc.", "corner error px",
                      title=f"{name} set: boxes (IoU threshold {f['iou_threshold']})")  # fmt: skip
        for label, g in [("all", f["overall"]), *f["per_label"].items()]:
            figures = [g["accuracy"], g.get("mean_iou"), g.get("iou_at_threshold"), g.get("detection_accuracy")]
            boxes.add_row(label, str(g["images"]), *(cell(v, 3) for v in figures), cell(g.get("corner_error_px"), 1))
        shown.append(boxes)
    labels, matrix = f["confusion"]["labels"], f["confusion"]["matrix"]
    confusion = Table("true \\ predicted", *labels, title=f"{name} set: confusion (rows true, columns predicted)")
    for label, row in zip(labels, matrix):
        confusion.add_row(label, *(str(v) for v in row))
    shown.append(confusion)
    if failures:
        title = f"{name} set: failures (wrong label or IoU < {iou_threshold})"
        failing = Table("image", "true", "predicted", "confidence", "IoU", title=title)
        for i in np.flatnonzero(results.failures(iou_threshold)):
            true, predicted = results.classes[results.true_labels[i]], results.classes[results.predicted_labels[i]]
            iou = None if results.iou is None else float(results.iou[i])
            image = "/".join(Path(results.paths[i]).parts[-2:])
            failing.add_row(image, true, predicted, f"{results.confidence[i]:.3f}", cell(iou, 3))
        shown.append(failing)
    return shown


def show(sets: list[SetEvaluation], failures: bool, failure_lines: bool, iou_threshold: float) -> None:
    """The template's printout (its failure lines first when asked), then each set's tables."""
    for s in sets if failure_lines else []:
        for i in np.flatnonzero(s.results.predicted_labels != s.results.true_labels):
            click.echo(f"\tFailure at {s.results.paths[i]}")
    click.echo("\n".join(line for s in sets for line in accuracy_block(s.scored.name, s.figures)))
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    for s in sets:
        click.echo()
        for table in tables(s, failures, iou_threshold):
            console.print(table)


if __name__ == "__main__":
    atexit.register(gc.freeze)  # the exit's last garbage collections skip torch's objects: 0.2 s, not 0.5-1 s
    main()
