"""Compare trained detectors, or run the practical's whole plan (--practical), in one command.

python compare.py RUN...             the runs side by side: comparison.md / .csv / .tex, errors.md and the
                                     figures in --out (doc/); the work is model/reporting/comparison.py
python compare.py --practical        practical.toml: every run it lacks, then doc/report.md and report.pdf;
                                     the work is model/practical/runner.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pandas as pd
import torch
from rich.console import Console
from rich.table import Table

from model import config
from model.core.cli import device_option, precision_option
from model.core.errors import UserError, one_line_errors
from model.core.runtime import select_device
from model.data.annotations import Problems
from model.evaluation.inference import Inference
from model.network import MODEL_NAMES, takes_option
from model.practical.plan import COURSE_RESOURCES, PLAN_FILE
from model.practical.runner import PracticalSettings, run_practical
from model.reporting.comparison import compare_runs, write_outputs
from model.reporting.tables import format_cell
from model.runs.run import Run, RunError

# What --train gives each network beyond the shared options: the better of the practical's two
# ResNet variants is the fine-tuned one (Part 3 Q7).
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
PRACTICAL_ONLY = (
    "only",
    "dry_run",
    "quick",
    "slurm",
    "report_only",
    "skip_unavailable",
    "jobs",
    "resources",
    "plan_file",
)
COMPARE_ONLY = ("runs", "csv_files", "train_models", "epochs", "image_size", "pretrained", "classic", "with_robustness")


def train_missing(models: list[str], output_dir: Path, train_args: list[str], pretrained: bool) -> list[Path]:
    """Train each model whose run in output_dir/<model>/ is not finished (as a train.py subprocess, which
    goes on with a partly trained one); their folders."""
    folders = []
    for name in models:
        folder = output_dir / name
        status = Run(folder).status()
        if status.state == "finished":
            click.echo(f"{folder}: already trained ({status.describe()}), kept")
        else:
            model_args = [*train_args, *(TRAIN_CHOICES.get(name, []) if pretrained else [])]
            if not pretrained and takes_option(name, "pretrained"):
                model_args.append("--no-pretrained")
            command = [sys.executable, str(Path(__file__).with_name("train.py")), "--model", name, "--name", name]
            command += ["--output-dir", str(output_dir), *model_args, "--resume-if-started"]
            click.echo(f"Training {name}: {' '.join(command[1:])}")
            if subprocess.run(command).returncode != 0:
                raise UserError(
                    f"training {name} failed (see above); fix it and run compare.py again: finished models are kept"
                )
        folders.append(folder)
    return folders


def console_table(frame: pd.DataFrame) -> Table:
    table = Table(title="Model comparison (test split)")
    for column in CONSOLE_COLUMNS:
        table.add_column(column.replace("_", " "), justify="left" if column in ("model", "trained_on") else "right")
    for row in frame[list(CONSOLE_COLUMNS)].astype(object).itertuples(index=False):
        table.add_row(*(format_cell(value, 3) for value in row))
    return table


@click.command(context_settings={"show_default": True, "max_content_width": 110})
@click.argument("runs", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--csv",
    "csv_files",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    multiple=True,
    help="Also evaluate these rows (course format), e.g. web_images/annotations.csv.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Report folder  [default: doc; with --practical --quick, the quick runs' folder]",
)
@click.option(
    "--train",
    "train_models",
    default=None,
    metavar="MODEL,...",
    help="Train the models of this list that have no finished run in OUTPUT_DIR/<model>/ first "
    f"({','.join(MODEL_NAMES)}).",
)
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where --train and --practical put and find runs  [default: output; --practical: output/practical, "
    "--quick: output/practical-quick]",
)
@click.option("--practical", is_flag=True, help="Run the practical's plan (practical.toml) and write its report.")
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=PLAN_FILE,
    help="--practical: the plan file.",
)
@click.option("--only", default=None, metavar="SECTION,...", help="--practical: these sections (ids or prefixes).")
@click.option("--dry-run", is_flag=True, help="--practical: list what would run and what exists, with time estimates.")
@click.option("--quick", is_flag=True, help="--practical: the whole plan at reduced scale (minutes on a laptop).")
@click.option("--slurm", is_flag=True, help="--practical: submit the runs as a Slurm job array, then the report job.")
@click.option(
    "--resources",
    default=COURSE_RESOURCES,
    help="--slurm: sbatch options of each job (the course's srun options by default).",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=0),
    default=0,
    help="--practical: runs trained at once on this machine, each a train.py process with its share of the CPU "
    "threads (logs in OUTPUT_DIR/logs/)  [default 0: several on a CUDA GPU, one on a CPU]",
)
@click.option("--report-only", is_flag=True, help="--practical: train nothing, write the report from the runs there.")
@click.option(
    "--skip-unavailable",
    is_flag=True,
    help="--practical: leave out the runs that need ImageNet weights this machine lacks (by default they train from "
    "scratch).",
)
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="--train: epochs  [default: train.py's]")
@click.option(
    "--image-size", type=click.IntRange(min=32), default=None, help="--train: image size  [default: train.py's]"
)
@click.option(
    "--dataset", type=click.Path(path_type=Path), default=None, help="--train and --practical: dataset folder."
)
@click.option("--pretrained/--no-pretrained", default=True, help="--train: resnet from ImageNet weights.")
@click.option("--skip-bad-rows", is_flag=True, help="--train and evaluation: skip bad rows instead of stopping.")
@click.option("--classic", is_flag=True, help="Add classic OpenCV baselines (HOG+SVM with edge boxes; Haar faces).")
@click.option(
    "--robustness",
    "with_robustness",
    is_flag=True,
    help="Score each model on blurred, noisy and low-resolution test images.",
)
@device_option()
@precision_option()
@click.option("--batch-size", type=click.IntRange(min=1), default=64, help="Inference batch size.")
def main(**values: Any) -> None:
    """Compare RUNS (run folders or checkpoints) on their test splits; write tables and figures to --out.

    \\b
    python compare.py output/simple output/deeper output/vgg output/resnet
    python compare.py --train simple,deeper,vgg,resnet --epochs 30      # train what is missing, then compare
    python compare.py output/* --classic --robustness --csv web_images/annotations.csv
    python compare.py --practical --dry-run                             # the practical's plan: what it would do
    python compare.py --practical                                       # ... do it: doc/report.md and report.pdf
    python compare.py --practical --slurm                               # ... as Slurm jobs
    """
    ctx = click.get_current_context()
    given = {n for n in values if ctx.get_parameter_source(n) is click.core.ParameterSource.COMMANDLINE}
    if values["practical"]:
        refuse(given, COMPARE_ONLY, "does not go with --practical: the plan file sets what each run does")
        settings = PracticalSettings(**{k: values[k] for k in PracticalSettings.__dataclass_fields__})
        console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
        with one_line_errors():
            run_practical(settings, click.echo, console.print)
        return
    refuse(given, PRACTICAL_ONLY, "goes with --practical (the practical's plan)")
    with one_line_errors():
        comparison, out = compare(values)
    Console(highlight=False, width=None if sys.stdout.isatty() else 160).print(console_table(comparison.frame))
    click.echo(
        f"Wrote the comparison of {len(comparison.reports)} model(s) to {out}/ (comparison.md, .csv, .tex, errors.md, "
        "figures)"
    )


def refuse(given: set[str], names: tuple[str, ...], why: str) -> None:
    for name in names:
        if name in given:
            shown = (
                "RUNS"
                if name == "runs"
                else "--"
                + {
                    "csv_files": "csv",
                    "train_models": "train",
                    "with_robustness": "robustness",
                    "plan_file": "plan",
                }.get(name, name).replace("_", "-")
            )
            raise click.UsageError(f"{shown} {why}")


def compare(values: dict[str, Any]):
    """The comparison of the runs given (and of those --train trains first), written to --out."""
    out = values["out"] or Path("doc")
    runs = tuple(values["runs"])
    if values["train_models"]:
        runs = tuple(
            dict.fromkeys(
                [
                    *runs,
                    *train_missing(
                        train_list(values["train_models"]),
                        values["output_dir"] or config.OUTPUT_DIR,
                        train_args(values),
                        values["pretrained"],
                    ),
                ]
            )
        )
    if not runs:
        raise click.UsageError("give run folders or checkpoints to compare, or --train MODEL,...")
    torch.manual_seed(0)
    problems = Problems(skip=values["skip_bad_rows"])
    inference = Inference.on(select_device(values["device"]), values["precision"], values["batch_size"])
    try:
        comparison = compare_runs(
            runs, inference, problems, values["csv_files"], values["classic"], values["with_robustness"]
        )
    except RunError as error:
        raise UserError(str(error)) from None
    for line in problems.lines():
        click.echo(line)
    write_outputs(comparison, out)
    return comparison, out


def train_list(text: str) -> list[str]:
    models = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODEL_NAMES]
    if unknown or not models:
        raise click.BadParameter(
            f"unknown model(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(MODEL_NAMES)}",
            param_hint="--train",
        )
    return models


def train_args(values: dict[str, Any]) -> list[str]:
    return [
        *(["--epochs", str(values["epochs"])] if values["epochs"] else []),
        *(["--image-size", str(values["image_size"])] if values["image_size"] else []),
        *(["--dataset", str(values["dataset"])] if values["dataset"] else []),
        *(["--skip-bad-rows"] if values["skip_bad_rows"] else []),
    ]


if __name__ == "__main__":
    main()
