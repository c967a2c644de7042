"""How long a command takes before it does its work, and after: each script's --help, a refused option, eval.py
on a trained run (the whole command), and a training run's two moments of its start and end: when its "Training" line
(the first epoch begins) is printed, and how long the process takes to exit after its last line, on a dataset
whose images are cached. Each the median of --repeats runs as separate processes, written to doc/benchmark.md.

    python -m benchmarks.startup                              # a 600-image demo set, generated for it
    python -m benchmarks.startup --dataset /path/to/course-set --repeats 9
"""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from benchmarks.speed import machine, write_section
from model import config

BEGIN, END = "<!-- startup: python -m benchmarks.startup -->", "<!-- end of startup -->"
TINY = ["--epochs", "1", "--image-size", "64", "--batch-size", "8", "--cut-val", "0.6", "--cut-test", "0.8"]


def line_times(args: list[str]) -> tuple[float, float]:
    """``python ARGS`` once: the seconds until its line starting "Training", and from its last line to its exit."""
    began, training, last = time.perf_counter(), math.nan, math.nan
    unbuffered = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, *args]
    with subprocess.Popen(
        command, cwd=config.PROJECT_ROOT, stdout=subprocess.PIPE, text=True, env=unbuffered
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            last = time.perf_counter()
            training = last - began if line.startswith("Training") and math.isnan(training) else training
    return training, time.perf_counter() - last


def seconds(args: list[str], repeats: int) -> float:
    """The median wall time of ``python ARGS`` from the project's folder, as separate processes."""
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        subprocess.run([sys.executable, *args], cwd=config.PROJECT_ROOT, capture_output=True, check=False)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


@click.command()
@click.option("--repeats", type=click.IntRange(min=1), default=5, help="Runs of each command; the median is kept.")
@click.option(
    "--dataset",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The dataset of the training run timed (e.g. a course-shaped set)  [default: a 600-image demo set]",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=config.PROJECT_ROOT / "doc" / "benchmark.md",
    help="The Markdown file whose start-up section is written.",
)
def main(repeats: int, dataset: Path | None, out: Path) -> None:
    import torch

    given = f" --dataset {dataset}" if dataset is not None else ""  # said in the section: the command that measured
    with tempfile.TemporaryDirectory() as work:
        small, run = Path(work) / "small", Path(work) / "run"
        subprocess.run([sys.executable, "-m", "model.demo", str(small), "--images", "60"], check=True)
        if dataset is None:
            dataset = Path(work) / "dataset"
            subprocess.run([sys.executable, "-m", "model.demo", str(dataset)], check=True)
        trained = [sys.executable, "train.py", "--dataset", str(small), "--output-dir", str(run), *TINY]
        subprocess.run(trained, cwd=config.PROJECT_ROOT, check=True, capture_output=True)
        commands = {
            "python train.py --help": ["train.py", "--help"],
            "python eval.py --help": ["eval.py", "--help"],
            "python predict.py --help": ["predict.py", "--help"],
            "python compare.py --help": ["compare.py", "--help"],
            "python train.py --epochs 0 (refused)": ["train.py", "--epochs", "0"],
            "python eval.py RUN/best.pth --split test (60-image demo run, 64 px)": [
                "eval.py",
                str(run / "best.pth"),
                "--split",
                "test",
                "--out",
                str(Path(work) / "ev"),
            ],
        }
        rows = [f"| `{shown}` | {seconds(args, repeats):.2f} |" for shown, args in commands.items()]
        training = ["train.py", "--dataset", str(dataset), "--epochs", "2", "--output-dir"]
        line_times([*training, str(Path(work) / "first")])  # decodes the images into the cache (not timed)
        timed = [line_times([*training, str(Path(work) / f"t{i}")]) for i in range(repeats)]
        shown = f"python train.py --dataset {dataset.name} --epochs 2 (images cached)"
        rows.append(f'| `{shown}`: its "Training" line | {statistics.median(t for t, _ in timed):.2f} |')
        rows.append(f"| `{shown}`: its exit after its last line | {statistics.median(e for _, e in timed):.2f} |")
    section = "\n".join(
        [
            BEGIN,
            "## Start-up",
            "",
            f"Machine: {machine(torch.device('cpu'))}. Wall time of each command as a new process, the median of "
            f"{repeats} runs (`python -m benchmarks.startup --repeats {repeats}{given}`):",
            "",
            "| command | seconds |",
            "|---|---|",
            *rows,
            END,
        ]
    )
    write_section(out, BEGIN, END, section + "\n")
    click.echo(section)


if __name__ == "__main__":
    main()
