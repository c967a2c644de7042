"""Train a detector (class + box) on the course dataset, or on the demo dataset when none is found.

Writes into the run folder (output/, or output/NAME/ with --name): best.pth, last.pth, history.csv,
convergence_plot.png, config.json (the options), run.json (dataset, device, versions), the split files
training_data.csv, val_data.csv, test_data.csv, and manifest.json (the toolkit's files there). The
options are TrainOptions' (model/experiment/options.py); the run is model/training/fit.py.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from model.core.cli import checked, path_type
from model.training.command import train_options


@click.command(context_settings={"show_default": True, "max_content_width": 110})
@train_options
@click.option(
    "--resume",
    type=path_type("file"),
    default=None,
    help="Go on with the run of this last.pth up to its planned epochs (with --epochs: more).",
)
@click.option(
    "--resume-if-started",
    is_flag=True,
    help="Start the run, or, when its folder already holds it (the same options), go on with it: what a "
    "resubmitted Slurm job wants. A finished run has nothing to do.",
)
def main(resume: Path | None, resume_if_started: bool, **values: Any) -> None:
    """Train a detector.

    \b
    python train.py                                          # Simple network, template settings
    python train.py --no-box-head                            # Part 1: classification only
    python train.py --model resnet --fine-tune --name resnet_ft
    python train.py --no-box-head --cut-val 0.05 --cut-test 0.25 --name small
    python train.py --no-box-head --dropout 0 --no-batchnorm --epochs 200 --name plain
    python train.py --config output/plain/config.json --name plain_again
    srun --gres=shard:1 --cpus-per-task=8 --mem=12GB python train.py --model vgg --name vgg
    python train.py --resume output/vgg/last.pth             # after a time limit, preemption or Ctrl-C
    """
    with checked():
        from model.training.start import train  # torch and the rest: only once the options are known

        status = train(click.get_current_context(), values, resume, resume_if_started)
    sys.exit(status)


if __name__ == "__main__":
    main()
