"""Compare trained detectors, or run the practical's whole plan (--practical), in one command.

python compare.py RUN...             the runs side by side: comparison.md / .csv / .tex, errors.md and the figures in
                                     --out (doc/); --train first trains the networks that have no finished run
python compare.py --practical        practical.toml: every run it lacks, then doc/report.md and report.pdf (the work
                                     is model/practical/runner.py)

An option of the other program is refused (never silently ignored), and so is a run given twice.
"""

from __future__ import annotations

import atexit
import gc
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import click

from model import config
from model.cli import checked, device_option, path_type, precision_option
from model.errors import UserError
from model.network import NETWORKS
from model.practical.runner import COURSE_RESOURCES, PLAN_FILE, PracticalSettings

SHARED = ("out", "output_dir", "dataset", "device", "precision", "batch_size")  # options of both programs
COMPARE_ONLY = ("runs", "csv_files", "train_models", "epochs", "image_size", "pretrained", "skip_bad_rows", "classic",
                "with_robustness")  # fmt: skip
SHOWN = {"runs": "RUNS", "csv_files": "--csv", "train_models": "--train", "with_robustness": "--robustness",
         "plan_file": "--plan"}  # fmt: skip
TRAIN_CHOICES = {"resnet": ["--fine-tune"]}  # --train's ResNet: the better of Part 3 Q7's two, fine-tuned
CONSOLE_COLUMNS = ("model", "parameters", "image_size", "trained_on", "seconds_per_epoch", "best_epoch",
                   "val_accuracy", "test_accuracy", "test_mean_iou", "test_iou_at_0.5", "infer_ms_batched",
                   "infer_ms_single")  # fmt: skip


@click.command(context_settings={"show_default": True, "max_content_width": 110})
@click.argument("runs", nargs=-1, type=path_type())
@click.option("--csv", "csv_files", type=path_type("file"), multiple=True,
              help="Also evaluate these rows (course format), e.g. web_images/annotations.csv.")  # fmt: skip
@click.option("--out", type=path_type(), default=None,
              help="Report folder  [default: doc; with --practical --quick, the quick runs' folder]")  # fmt: skip
@click.option("--train", "train_models", default=None, metavar="MODEL,...",
              help="Train the models of this list that have no finished run in OUTPUT_DIR/<model>/ first "
              f"({','.join(NETWORKS)}).")  # fmt: skip
@click.option("--output-dir", type=path_type(), default=None,
              help="Where --train and --practical put and find runs  [default: output; --practical: output/practical, "
              "--quick: output/practical-quick]")  # fmt: skip
@click.option("--practical", is_flag=True, help="Run the practical's plan (practical.toml) and write its report.")
@click.option("--plan", "plan_file", type=path_type(), default=PLAN_FILE,
              show_default="practical.toml beside compare.py", help="--practical: the plan file.")  # fmt: skip
@click.option("--only", default=None, metavar="SECTION,...", help="--practical: these sections (ids or prefixes).")
@click.option("--dry-run", is_flag=True,
              help="--practical: what would run and what exists, with time estimates; every run's data checked, "
              "nothing written.")  # fmt: skip
@click.option("--quick", is_flag=True, help="--practical: the whole plan at reduced scale (minutes on a laptop).")
@click.option("--slurm", is_flag=True, help="--practical: submit the runs as a Slurm job array, then the report job.")
@click.option("--resources", default=COURSE_RESOURCES,
              help="--slurm: sbatch options of each job (the course's srun options by default).")  # fmt: skip
@click.option("--jobs", type=click.IntRange(min=0, max=64), default=0,
              help="--practical: runs trained at once on this machine, each a train.py process with its share of the "
              "CPU threads (logs in OUTPUT_DIR/logs/)  [default 0: several on a CUDA GPU, one on a CPU]")  # fmt: skip
@click.option("--report-only", is_flag=True, help="--practical: train nothing, write the report from the runs there.")
@click.option("--skip-unavailable", is_flag=True,
              help="--practical: leave out the runs that need ImageNet weights this machine lacks (by default they "
              "train from scratch).")  # fmt: skip
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="--train: epochs  [default: train.py's]")
@click.option("--image-size", type=click.IntRange(min=1), default=None,
              help="--train: image size  [default: train.py's]")  # fmt: skip
@click.option("--dataset", type=path_type(), default=None, help="--train and --practical: dataset folder.")
@click.option("--pretrained/--no-pretrained", default=True, help="--train: resnet from ImageNet weights.")
@click.option("--skip-bad-rows", is_flag=True, help="--train and evaluation: skip bad rows instead of stopping.")
@click.option("--classic", is_flag=True, help="Add classic OpenCV baselines (HOG+SVM with edge boxes; Haar faces).")
@click.option("--robustness", "with_robustness", is_flag=True,
              help="Score each model on blurred, noisy and low-resolution test images.")  # fmt: skip
@device_option()
@precision_option()
@click.option("--batch-size", type=click.IntRange(min=1, max=65536), default=64, help="Inference batch size.")
def main(**values: Any) -> None:
    """Compare RUNS (run folders or checkpoints) on their test splits; write tables and figures to --out.

    \b
    python compare.py output/simple output/deeper output/vgg output/resnet
    python compare.py --train simple,deeper,vgg,resnet --epochs 30
    python compare.py output/simple output/vgg --classic --robustness --csv web_images/annotations.csv
    python compare.py --practical --dry-run
    python compare.py --practical
    python compare.py --practical --quick
    python compare.py --practical --slurm
    """
    ctx = click.get_current_context()
    given = {n for n in values if ctx.get_parameter_source(n) is click.core.ParameterSource.COMMANDLINE}
    shown = lambda name: SHOWN.get(name, "--" + name.replace("_", "-"))  # noqa: E731
    with checked():
        if values.pop("practical"):
            if wrong := sorted(given & set(COMPARE_ONLY)):
                raise click.UsageError(
                    f"{shown(wrong[0])} does not go with --practical: the plan file sets what each run does"
                )
            from rich.console import Console

            from model.practical.runner import run_practical

            settings = PracticalSettings(**{f.name: values[f.name] for f in fields(PracticalSettings)})
            console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
            run_practical(settings, click.echo, console.print)
        elif wrong := sorted(given - {*COMPARE_ONLY, *SHARED}):
            raise click.UsageError(f"{shown(wrong[0])} goes with --practical (the practical's plan)")
        else:
            compare(**{k: values[k] for k in (*COMPARE_ONLY, *SHARED)})


def compare(
    runs: tuple[Path, ...], out: Path | None, train_models: str | None, output_dir: Path | None, **values: Any
) -> None:
    """Everything compare.py does without --practical: the runs (and --train's) side by side, written to --out."""
    train_only = {"epochs": values["epochs"], "image_size": values["image_size"], "output_dir": output_dir}
    models = checked_runs(runs, train_models, train_only)
    from rich.console import Console
    from rich.table import Table

    from model.annotations import Problems  # torch and the rest: only once the options are checked
    from model.evaluate import Inference
    from model.files import Folder
    from model.reporting.comparison import compare_runs, comparison_frame, write_outputs
    from model.reporting.tables import format_cell

    out = out or Path("doc")
    Folder(out, writer="compare.py", option="--out").check_place()  # before anything trains or evaluates
    runs = tuple(dict.fromkeys([*runs, *train_missing(models, output_dir, values)]))
    problems = Problems(skip=values["skip_bad_rows"])
    inference = Inference.on(values["device"], values["precision"], values["batch_size"])
    comparison = compare_runs(
        runs, inference, problems, values["csv_files"], values["classic"], values["with_robustness"]
    )
    for line in [*problems.lines(), *comparison.warnings]:
        click.echo(line)
    write_outputs(comparison, out)
    table = Table(title="Model comparison (test split)")
    for column in CONSOLE_COLUMNS:
        table.add_column(column.replace("_", " "), justify="left" if column in ("model", "trained_on") else "right")
    frame = comparison_frame(comparison.reports, comparison.classes)[list(CONSOLE_COLUMNS)]
    for row in frame.astype(object).itertuples(index=False):
        table.add_row(*(format_cell(value, 3) for value in row))
    Console(highlight=False, width=None if sys.stdout.isatty() else 160).print(table)
    written = "comparison.md, .csv, .tex, errors.md, figures"
    click.echo(f"Wrote the comparison of {len(comparison.reports)} model(s) to {out}/ ({written})")


def checked_runs(runs: tuple[Path, ...], train_models: str | None, train_only: dict[str, Any]) -> list[str]:
    """--train's networks, checked; a run given twice, or an option of --train without it, refused."""
    seen: dict[Path, Path] = {}
    for run in runs:
        resolved = Path(run).resolve()
        resolved = resolved.parent if resolved.name == config.BEST_CHECKPOINT else resolved
        if resolved in seen:
            raise UserError(f"{run}: given twice (as {seen[resolved]}); compare each run once")
        seen[resolved] = run
    if not runs and not train_models:
        raise click.UsageError("give run folders or checkpoints to compare, or --train MODEL,...")
    if not train_models:
        if given := [n for n, v in train_only.items() if v is not None]:
            raise UserError(
                f"--{given[0].replace('_', '-')} goes with --train (it sets how the missing networks train); drop it"
            )
        return []
    models = [m.strip() for m in train_models.split(",") if m.strip()]
    if not models or len(set(models)) != len(models) or any(m not in NETWORKS for m in models):
        raise click.BadParameter(
            f"{train_models!r}: name each network once, from {', '.join(NETWORKS)}", param_hint="--train"
        )
    return models


def train_missing(models: list[str], output_dir: Path | None, values: dict[str, Any]) -> list[Path]:
    """--train: each network whose run in OUTPUT_DIR/<network>/ is not finished, trained (or gone on with) as a plan of
    one run per network (one train.py process each, as the practical's plan trains); the run folders of all."""
    from model.files import refuse_data_folder
    from model.practical.plan import Plan, PlannedRun, Status, parse_run
    from model.practical.runner import train_locally

    output_dir = (output_dir or config.OUTPUT_DIR).resolve()
    refuse_data_folder(output_dir, "--output-dir")
    planned = {}
    for name in models:
        args = ["--model", name]
        for option in ("epochs", "image_size", "skip_bad_rows"):
            if values[option]:
                args += [f"--{option.replace('_', '-')}"] + ([str(values[option])] if option != "skip_bad_rows" else [])
        if "pretrained" in NETWORKS[name].options():
            args += TRAIN_CHOICES.get(name, []) if values["pretrained"] else ["--no-pretrained"]
        planned[name] = PlannedRun(name, tuple(args), parse_run(args, output_dir / name, name)[0])
    plan = Plan(planned, [], output_dir)
    found = {}
    for name in models:  # a finished run is kept as it is; a partly trained one goes on (train.py's rule)
        status = plan.run(name).status()
        found[name] = Status(status.state, status.epoch)
        if status.state == "finished":
            click.echo(f"{plan.output_dir / name}: already trained ({status.describe()}), kept")
    train_locally(plan, found, values["dataset"], click.echo)
    return [plan.output_dir / name for name in models]


if __name__ == "__main__":
    atexit.register(gc.freeze)  # the exit's last garbage collections skip torch's objects: 0.2 s, not 0.5-1 s
    main()
