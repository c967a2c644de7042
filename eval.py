"""Evaluate a trained checkpoint: per-label accuracy (the course's block), box quality, confusion.

Writes into the run's evaluations/ folder (or into --out DIR), per set, under the identity of what it
scored (model/evaluation/evaluate.py): best.test.json (every figure), best.test.images.csv (per image),
best.test.confusion.png; other rows (--csv) as best.rows-<name>-<hash>.*, never as one of the run's splits.
The work is model/reporting/evaluation.py.
"""

from __future__ import annotations

from typing import Any

import click

from model.core.cli import FiniteFloat, checked, device_option, path_type, precision_option
from model.evaluation.settings import SET_NAMES, EvalSettings


@click.command(context_settings={"show_default": True, "max_content_width": 110})
@click.argument("checkpoint", type=path_type())
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
    type=path_type("file"),
    multiple=True,
    help="Other rows in the course format, e.g. web_images/annotations.csv (repeatable); stored apart from the "
    "run's own splits, under the file's identity.",
)
@click.option(
    "--dataset",
    type=path_type(),
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
    type=path_type(),
    default=None,
    help="Folder for the JSON, CSV and PNG  [default: the run's evaluations/ folder]",
)
@device_option()
@precision_option()
@click.option("--batch-size", type=click.IntRange(min=1, max=65536), default=64)
@click.option("--workers", type=click.IntRange(min=1, max=1024), default=None, help="Threads decoding images.")
@click.option("--skip-bad-rows", is_flag=True, help="Skip unreadable images and bad rows instead of stopping.")
@click.option("--strict", is_flag=True, help="Stop on odd rows too (zero-size or clipped boxes), kept otherwise.")
def main(**values: Any) -> None:
    """Evaluate CHECKPOINT on its train, validation and test splits (or on --csv files).

    \b
    python eval.py output/best.pth
    python eval.py output/vgg/best.pth --split test --failures
    python eval.py output/best.pth --csv web_images/annotations.csv
    """
    with checked():
        settings = EvalSettings(**values)
        from model.reporting.evaluation import evaluate  # torch: only once the options are known

        evaluate(settings)


if __name__ == "__main__":
    main()
