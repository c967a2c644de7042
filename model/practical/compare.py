"""compare.py without --practical: the runs given side by side on their test splits (and, with --train, the
networks that have no finished run yet, trained first as a plan of one run per network), written to --out.

The comparison itself is model/reporting/comparison.py; training goes through the practical's plan (one
train.py process per run, which goes on with a partly trained one), so both paths share one way to train.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import pandas as pd
from rich.console import Console
from rich.table import Table

from model import config
from model.annotations import Problems
from model.errors import UserError
from model.evaluate import Inference
from model.files import Folder, refuse_data_folder
from model.network import NETWORKS
from model.practical.plan import Plan, PlannedRun, Status, parse_run
from model.practical.runner import train_locally
from model.practical.settings import CompareSettings
from model.reporting.comparison import compare_runs, write_outputs
from model.reporting.tables import format_cell
from model.runs import RunError

# What --train gives each network beyond the shared options: the better of the practical's two ResNet
# variants is the fine-tuned one (Part 3 Q7).
TRAIN_CHOICES = {"resnet": ["--fine-tune"]}
CONSOLE_COLUMNS = (
    "model",
    "parameters",
    "image_size",
    "trained_on",
    "seconds_per_epoch",
    "best_epoch",
    "val_accuracy",
    "test_accuracy",
    "test_mean_iou",
    "test_iou_at_0.5",
    "infer_ms_batched",
    "infer_ms_single",
)


def compare(settings: CompareSettings) -> None:
    """Everything compare.py does without --practical."""
    out = settings.out or Path("doc")
    Folder(out, writer="compare.py", option="--out").check_place()  # before anything trains or evaluates
    runs = list(dict.fromkeys([*settings.runs, *train_missing(settings)]))
    problems = Problems(skip=settings.skip_bad_rows)
    inference = Inference.on(settings.device, settings.precision, settings.batch_size)
    try:
        comparison = compare_runs(
            runs, inference, problems, settings.csv_files, settings.classic, settings.with_robustness
        )
    except RunError as error:
        raise UserError(str(error)) from None
    for line in problems.lines():
        click.echo(line)
    write_outputs(comparison, out)
    Console(highlight=False, width=None if sys.stdout.isatty() else 160).print(console_table(comparison.frame))
    click.echo(
        f"Wrote the comparison of {len(comparison.reports)} model(s) to {out}/ (comparison.md, .csv, .tex, errors.md, "
        "figures)"
    )


def train_missing(settings: CompareSettings) -> list[Path]:
    """--train: each network whose run in OUTPUT_DIR/<network>/ is not finished, trained (or gone on with); the
    run folders of every network named."""
    if not settings.models:
        return []
    output_dir = (settings.output_dir or config.OUTPUT_DIR).resolve()
    refuse_data_folder(output_dir, "--output-dir")
    plan = Plan({name: planned(name, settings, output_dir) for name in settings.models}, [], output_dir)
    found = {}
    for name in settings.models:  # a finished run is kept as it is; a partly trained one goes on (train.py's rule)
        status = plan.run(name).status()
        found[name] = Status(status.state, status.epoch)
        if status.state == "finished":
            click.echo(f"{plan.folder(name)}: already trained ({status.describe()}), kept")
    train_locally(plan, found, settings.dataset, click.echo)
    return [plan.folder(name) for name in settings.models]


def planned(name: str, settings: CompareSettings, output_dir: Path) -> PlannedRun:
    args = ["--model", name]
    args += ["--epochs", str(settings.epochs)] if settings.epochs else []
    args += ["--image-size", str(settings.image_size)] if settings.image_size else []
    args += ["--skip-bad-rows"] if settings.skip_bad_rows else []
    if "pretrained" in NETWORKS[name].options():
        args += TRAIN_CHOICES.get(name, []) if settings.pretrained else ["--no-pretrained"]
    return PlannedRun(name, tuple(args), parse_run(args, output_dir / name, name))


def console_table(frame: pd.DataFrame) -> Table:
    table = Table(title="Model comparison (test split)")
    for column in CONSOLE_COLUMNS:
        table.add_column(column.replace("_", " "), justify="left" if column in ("model", "trained_on") else "right")
    for row in frame[list(CONSOLE_COLUMNS)].astype(object).itertuples(index=False):
        table.add_row(*(format_cell(value, 3) for value in row))
    return table
