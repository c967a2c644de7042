"""Compare trained detectors: the report's tables and figures in one command (Part 2 Q4, Part 3 Q8, Part 4).

Writes into --out (doc/): comparison.md / .csv / .tex, errors.md (error analysis per model),
loss_curves.png, accuracy_iou_curves.png, per_label.png, confusion_matrices.png,
iou_histograms.png, failures_<model>.png, and with --robustness robustness.md / .csv / .tex / .png.
The work is in model/comparison.py; this script is its command line.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pandas as pd
import torch
from rich.console import Console
from rich.table import Table

from model import config
from model.annotations import Problems, read_annotations
from model.comparison import compare_runs, write_outputs
from model.errors import UserError, one_line_errors
from model.inference import Inference
from model.network import MODEL_NAMES, takes_option
from model.options import TrainOptions
from model.plan import (
    COURSE_RESOURCES,
    PLAN_FILE,
    Estimate,
    Plan,
    Status,
    check_disk,
    estimate,
    format_duration,
    load_plan,
    statuses,
    submit_to_slurm,
    total,
    train_locally,
    with_quick_dataset,
)
from model.practical import Context, write_report
from model.precision import PRECISIONS
from model.runtime import DEVICES, Reporter, select_device
from model.tables import format_cell
from model.training import locate_dataset
from train import options_from_args

# What --train gives each network beyond the shared options: the better of the practical's two
# ResNet variants is the fine-tuned one (Part 3 Q7).
TRAIN_CHOICES = {"resnet": ["--fine-tune"]}
CONSOLE_COLUMNS = (
    "model",
    "parameters",
    "seconds_per_epoch",
    "best_epoch",
    "val_accuracy",
    "test_accuracy",
    "test_mean_iou",
    "test_iou_at_0.5",
    "infer_ms_batched",
    "infer_ms_single",
)


def train_missing(models: list[str], output_dir: Path, train_args: list[str], pretrained: bool) -> list[Path]:
    """Train each model without a run in output_dir/<model>/ (as a train.py subprocess); their folders."""
    folders = []
    for name in models:
        folder = output_dir / name
        if (folder / config.BEST_CHECKPOINT).exists():
            click.echo(f"{folder}: already trained, kept")
        else:
            model_args = [*train_args, *(TRAIN_CHOICES.get(name, []) if pretrained else [])]
            if not pretrained and takes_option(name, "pretrained"):
                model_args.append("--no-pretrained")
            command = [
                sys.executable,
                str(Path(__file__).with_name("train.py")),
                "--model",
                name,
                "--name",
                name,
                "--output-dir",
                str(output_dir),
                *model_args,
            ]
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
        table.add_column(column.replace("_", " "), justify="left" if column == "model" else "right")
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
    help=f"Train the models of this list that have no run in OUTPUT_DIR/<model>/ first ({','.join(MODEL_NAMES)}).",
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
@click.option("--report-only", is_flag=True, help="--practical: train nothing, write the report from the runs there.")
@click.option(
    "--skip-unavailable",
    is_flag=True,
    help="--practical: skip the runs this machine cannot train (ImageNet weights missing offline).",
)
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="--train: epochs  [default: train.py's]")
@click.option(
    "--image-size", type=click.IntRange(min=32), default=None, help="--train: image size  [default: train.py's]"
)
@click.option("--dataset", type=click.Path(path_type=Path), default=None, help="--train: dataset folder.")
@click.option("--pretrained/--no-pretrained", default=True, help="--train: resnet from ImageNet weights.")
@click.option("--skip-bad-rows", is_flag=True, help="--train and evaluation: skip bad rows instead of stopping.")
@click.option("--classic", is_flag=True, help="Add classic OpenCV baselines (HOG+SVM with edge boxes; Haar faces).")
@click.option(
    "--robustness",
    "with_robustness",
    is_flag=True,
    help="Score each model on blurred, noisy and low-resolution test images.",
)
@click.option("--device", type=click.Choice(DEVICES), default="auto")
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto", help="Autocast, as train.py's option.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, help="Inference batch size.")
def main(
    runs: tuple[Path, ...],
    csv_files: tuple[Path, ...],
    out: Path | None,
    train_models: str | None,
    output_dir: Path | None,
    practical: bool,
    plan_file: Path,
    only: str | None,
    dry_run: bool,
    quick: bool,
    slurm: bool,
    resources: str,
    report_only: bool,
    skip_unavailable: bool,
    epochs: int | None,
    image_size: int | None,
    dataset: Path | None,
    pretrained: bool,
    skip_bad_rows: bool,
    classic: bool,
    with_robustness: bool,
    device: str,
    precision: str,
    batch_size: int,
) -> None:
    """Compare RUNS (run folders or checkpoints) on their test splits; write tables and figures to --out.

    \b
    python compare.py output/simple output/deeper output/vgg output/resnet
    python compare.py --train simple,deeper,vgg,resnet --epochs 30      # train what is missing, then compare
    python compare.py output/* --classic --robustness --csv web_images/annotations.csv
    python compare.py --practical --dry-run                             # the practical's plan: what it would do
    python compare.py --practical                                       # ... do it, then write doc/report.md
    python compare.py --practical --slurm                               # ... as Slurm jobs
    """
    if practical:
        for option, given in (
            ("RUNS", runs),
            ("--csv", csv_files),
            ("--train", train_models),
            ("--epochs", epochs),
            ("--image-size", image_size),
            ("--no-pretrained", not pretrained),
            ("--classic", classic),
            ("--robustness", with_robustness),
        ):
            if given:
                raise click.UsageError(f"{option} does not go with --practical: the plan file sets what each run does")
        with one_line_errors():
            run_practical(
                plan_file,
                quick,
                only,
                dry_run,
                slurm,
                resources,
                report_only,
                skip_unavailable,
                output_dir,
                out,
                dataset,
                device,
                precision,
                batch_size,
            )
        return
    for option, given in (
        ("--only", only),
        ("--dry-run", dry_run),
        ("--quick", quick),
        ("--slurm", slurm),
        ("--report-only", report_only),
        ("--skip-unavailable", skip_unavailable),
    ):
        if given:
            raise click.UsageError(f"{option} goes with --practical (the practical's plan)")
    out = out or Path("doc")
    output_dir = output_dir or config.OUTPUT_DIR
    with one_line_errors():
        if train_models:
            models = [m.strip() for m in train_models.split(",") if m.strip()]
            unknown = [m for m in models if m not in MODEL_NAMES]
            if unknown:
                raise click.BadParameter(
                    f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODEL_NAMES)}", param_hint="--train"
                )
            train_args = [
                *(["--epochs", str(epochs)] if epochs else []),
                *(["--image-size", str(image_size)] if image_size else []),
                *(["--dataset", str(dataset)] if dataset else []),
                *(["--skip-bad-rows"] if skip_bad_rows else []),
            ]
            runs = tuple(dict.fromkeys([*runs, *train_missing(models, output_dir, train_args, pretrained)]))
        if not runs:
            raise click.UsageError("give run folders or checkpoints to compare, or --train MODEL,...")
        torch.manual_seed(0)
        problems = Problems(skip=skip_bad_rows)
        inference = Inference.on(select_device(device), precision, batch_size)
        comparison = compare_runs(runs, inference, problems, csv_files, classic, with_robustness)
        for line in problems.lines():
            click.echo(line)
        write_outputs(comparison, out)
    Console(highlight=False, width=None if sys.stdout.isatty() else 160).print(console_table(comparison.frame))
    click.echo(
        f"Wrote the comparison of {len(comparison.reports)} model(s) to {out}/ (comparison.md, .csv, .tex, "
        f"errors.md, figures)"
    )


def run_practical(
    plan_file: Path,
    quick: bool,
    only: str | None,
    dry_run: bool,
    slurm: bool,
    resources: str,
    report_only: bool,
    skip_unavailable: bool,
    output_dir: Path | None,
    out: Path | None,
    dataset: Path | None,
    device: str,
    precision: str,
    batch_size: int,
) -> None:
    """--practical: check everything, then train what the plan lacks (or submit it), then the report."""
    # absolute paths: Slurm jobs start in the project's folder, whatever folder this was called from
    runs_dir = (output_dir or config.OUTPUT_DIR / ("practical-quick" if quick else "practical")).resolve()
    report_dir = (out or (runs_dir if quick else Path("doc"))).resolve()
    plan_file = plan_file.resolve()
    plan = load_plan(plan_file, options_from_args, runs_dir, quick, only)
    dataset = (with_quick_dataset(plan, dataset) or locate_dataset(TrainOptions(dataset=dataset), Reporter())).resolve()
    if not report_only:
        found = statuses(plan, dataset, skip_unavailable, sys.stdin.isatty(), lambda q: click.confirm(q, default=False))
        skip_unavailable |= any(status.state == "skipped" for status in found.values())  # asked once, kept
        rows = len(read_annotations(dataset, Problems(skip=True)))
        check_disk(plan, found, rows)
        if dry_run:
            print_dry_run(plan, found, estimate(plan, found, rows, device), plan_file, dataset, report_dir)
            return
        if slurm:
            report_args = [
                *("--plan", str(plan_file), "--output-dir", str(runs_dir), "--out", str(report_dir)),
                *("--dataset", str(dataset), "--precision", precision),
                *(["--quick"] if quick else []),
                *(["--only", only] if only else []),
                *(["--skip-unavailable"] if skip_unavailable else []),
            ]
            array, report = submit_to_slurm(plan, found, dataset, report_args, resources, click.echo)
            click.echo(
                f"Submitted: runs {'job array ' + array if array else '(none to train)'}, report job {report} "
                f"(after the runs succeed); logs in {runs_dir / 'slurm'}/. Submit again after a time limit or "
                f"a preemption: finished runs are kept, interrupted ones resume."
            )
            return
        train_locally(plan, found, dataset, click.echo)
    # the report covers the whole plan (--only chose what trained); runs lacking their weights are said there
    report_plan = load_plan(plan_file, options_from_args, runs_dir, quick, only, for_report=True)
    found = statuses(report_plan, dataset, True, False, lambda q: False)
    inference = Inference.on(select_device(device), precision, batch_size)
    ctx = Context(report_plan, found, inference, report_dir / "report", dataset, click.echo)
    title = "Practical 1: CNN detectors for airplane, face and motorcycle: report draft"
    path = write_report(ctx, report_dir / "report.md", title + (" (quick mode)" if quick else ""))
    click.echo(f"Wrote {path} and its tables and figures in {report_dir / 'report'}/")


def print_dry_run(
    plan: Plan,
    found: dict[str, Status],
    estimates: dict[str, Estimate],
    plan_file: Path,
    dataset: Path | None,
    report_dir: Path,
) -> None:
    """Each run's status, estimate and command; the total."""
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    table = Table(title=f"The plan {plan_file.name}: {len(plan.runs)} run(s) in {plan.output_dir}, dataset {dataset}")
    for column in ("run", "status", "estimate", "command"):
        table.add_column(column)
    for name, run in plan.runs.items():
        e = estimates[name]
        table.add_row(
            name,
            found[name].describe(run.options.epochs),
            f"{format_duration(e.seconds)} ({e.source})" if e.seconds else "-",
            plan.shown(run, dataset, found[name]),
        )
    console.print(table)
    click.echo(
        f"Estimated time to train what is missing: {format_duration(total(estimates))} (from the epochs "
        f"already measured in {plan.output_dir}, else a few batches timed now); then the report: {report_dir}"
    )


if __name__ == "__main__":
    main()
