"""Compare trained detectors, or run the practical's whole plan (--practical), in one command.

python compare.py RUN...             the runs side by side: comparison.md / .csv / .tex, errors.md and the
                                     figures in --out (doc/); the work is model/practical/compare.py
python compare.py --practical        practical.toml: every run it lacks, then doc/report.md and report.pdf;
                                     the work is model/practical/runner.py
"""

from __future__ import annotations

import sys
from typing import Any

import click

from model.cli import checked, device_option, path_type, precision_option
from model.network import NETWORKS
from model.practical.settings import COURSE_RESOURCES, PLAN_FILE, CompareSettings, settings_of


@click.command(context_settings={"show_default": True, "max_content_width": 110})
@click.argument("runs", nargs=-1, type=path_type())
@click.option(
    "--csv",
    "csv_files",
    type=path_type("file"),
    multiple=True,
    help="Also evaluate these rows (course format), e.g. web_images/annotations.csv.",
)
@click.option(
    "--out",
    type=path_type(),
    default=None,
    help="Report folder  [default: doc; with --practical --quick, the quick runs' folder]",
)
@click.option(
    "--train",
    "train_models",
    default=None,
    metavar="MODEL,...",
    help="Train the models of this list that have no finished run in OUTPUT_DIR/<model>/ first "
    f"({','.join(NETWORKS)}).",
)
@click.option(
    "--output-dir",
    type=path_type(),
    default=None,
    help="Where --train and --practical put and find runs  [default: output; --practical: output/practical, "
    "--quick: output/practical-quick]",
)
@click.option("--practical", is_flag=True, help="Run the practical's plan (practical.toml) and write its report.")
@click.option(
    "--plan",
    "plan_file",
    type=path_type(),
    default=PLAN_FILE,
    show_default="practical.toml beside compare.py",
    help="--practical: the plan file.",
)
@click.option("--only", default=None, metavar="SECTION,...", help="--practical: these sections (ids or prefixes).")
@click.option(
    "--dry-run",
    is_flag=True,
    help="--practical: what would run and what exists, with time estimates; every run's data checked, nothing written.",
)
@click.option("--quick", is_flag=True, help="--practical: the whole plan at reduced scale (minutes on a laptop).")
@click.option("--slurm", is_flag=True, help="--practical: submit the runs as a Slurm job array, then the report job.")
@click.option(
    "--resources",
    default=COURSE_RESOURCES,
    help="--slurm: sbatch options of each job (the course's srun options by default).",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=0, max=64),
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
    "--image-size", type=click.IntRange(min=1), default=None, help="--train: image size  [default: train.py's]"
)
@click.option("--dataset", type=path_type(), default=None, help="--train and --practical: dataset folder.")
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
    with checked():
        settings = settings_of(values, given)
        if isinstance(settings, CompareSettings):
            from model.practical.compare import compare  # torch: only once the options are known

            compare(settings)
            return
        from rich.console import Console

        from model.practical.runner import run_practical

        console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
        run_practical(settings, click.echo, console.print)


if __name__ == "__main__":
    main()
