"""How long a command takes before it does its work: each script's --help (no torch imported), a refused
option (refused before torch), and eval.py on a trained run (the whole command, torch included), each the
median of --repeats runs as separate processes, written to doc/benchmark.md.

    python -m benchmarks.startup
    python -m benchmarks.startup --repeats 9
"""

from __future__ import annotations

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
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=config.PROJECT_ROOT / "doc" / "benchmark.md",
    help="The Markdown file whose start-up section is written.",
)
def main(repeats: int, out: Path) -> None:
    import torch

    with tempfile.TemporaryDirectory() as work:
        dataset, run = Path(work) / "dataset", Path(work) / "run"
        subprocess.run([sys.executable, "-m", "model.data.demo", str(dataset), "--images", "60"], check=True)
        trained = [sys.executable, "train.py", "--dataset", str(dataset), "--output-dir", str(run), *TINY]
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
    section = "\n".join(
        [
            BEGIN,
            "## Start-up",
            "",
            f"Machine: {machine(torch.device('cpu'))}. Wall time of each command as a new process, the median of "
            f"{repeats} runs (`python -m benchmarks.startup`):",
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
