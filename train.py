"""Train a detector (class + box) on the course dataset, or on the demo dataset when none is found.

Writes into the run folder (output/, or output/NAME/ with --name): best.pth, last.pth, history.csv,
convergence_plot.png, config.json (the options), run.json (dataset, device, versions), the split files
training_data.csv, val_data.csv, test_data.csv, and manifest.json (the toolkit's files there). The
options are declared in model/training/command.py and checked by TrainOptions; the stages are in
model/training/fit.py.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from model.core.errors import one_line_errors
from model.core.runtime import Interrupted, Reporter
from model.runs.checkpoint import Checkpoint, CheckpointError
from model.runs.run import Run
from model.training.command import assemble, given, train_options
from model.training.fit import fit
from model.training.options import OptionError, TrainOptions, flag

RESUME_OVERRIDES = ("epochs", "device", "workers", "dataset", "precision", "compile")  # what --resume lets a run change


@click.command(context_settings={"show_default": True, "max_content_width": 110})
@train_options
@click.option(
    "--resume",
    type=click.Path(dir_okay=False, path_type=Path),
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

    \\b
    python train.py                                   # Simple network, template settings
    python train.py --model resnet --fine-tune --name resnet_ft
    python train.py --cut-val 0.05 --cut-test 0.25 --name small   # Part 1 Q9.1
    python train.py --dropout 0 --no-batchnorm --epochs 200 --name plain
    python train.py --config output/plain/config.json --name plain_again
    srun --gres=shard:1 --cpus-per-task=8 --mem=12GB python train.py --model vgg --name vgg
    python train.py --resume output/vgg/last.pth      # after a time limit, preemption or Ctrl-C
    """
    ctx = click.get_current_context()
    with one_line_errors():
        checkpoint = None
        if resume is not None:
            checkpoint = Checkpoint.load(resume)
            options = resumed_options(ctx, checkpoint, values)
        else:
            options = assemble(ctx, values)
            if resume_if_started:
                checkpoint = started_run(options)
                if checkpoint is not None:  # its own options, run where and how this command says
                    how = {name: getattr(options, name) for name in RESUME_OVERRIDES if name != "dataset"}
                    dataset = options.dataset or checkpoint.dataset
                    options = replace(checkpoint.options, dataset=dataset, weights=None, overwrite=False, **how)
        if checkpoint is not None and checkpoint.epoch >= options.epochs:  # resubmitting a finished job is no error
            click.echo(
                f"{checkpoint.path}: the run already finished its {options.epochs} epochs; nothing to do (pass "
                f"--epochs N, more than {checkpoint.epoch}, with --resume to train longer)"
            )
            return
        try:
            fit(options, Reporter(), checkpoint)
        except Interrupted as interrupt:
            sys.exit(128 + interrupt.signum)


def started_run(options: TrainOptions) -> Checkpoint | None:
    """--resume-if-started: the last.pth of the run in the options' folder, when it holds one trained with
    the same options (None when it holds none; an error when it holds another run)."""
    run = Run(options.run_dir)
    status = run.status()
    if status.state == "missing":
        return None
    checkpoint = run.checkpoint("last")
    differs = checkpoint.options.differences(options)
    if differs:
        shown = ", ".join(
            f"{flag(n)} {getattr(checkpoint.options, n)!r} (now {getattr(options, n)!r})" for n in differs[:3]
        )
        raise OptionError(
            f"--resume-if-started: {run.folder} holds a run trained with other options ({shown}); pass --name NEW, or "
            f"--overwrite to replace it"
        )
    return checkpoint


def resumed_options(ctx: click.Context, checkpoint: Checkpoint, values: dict[str, Any]) -> TrainOptions:
    """The run's own options, but for --epochs, --device, --workers, --dataset, --precision and --compile
    given with --resume."""
    typed = given(ctx)
    if ctx.default_map:  # --config FILE filled the defaults: they would be silently ignored
        raise click.UsageError("--config and --resume cannot go together: --resume goes on with the run's own options")
    extra = sorted(typed - {"resume", *RESUME_OVERRIDES})
    if extra:
        raise click.UsageError(
            f"--resume goes on with the run's own options; only "
            f"{', '.join('--' + o for o in RESUME_OVERRIDES)} may be given with it (got "
            f"{', '.join(flag(name) for name in extra)})"
        )
    if not checkpoint.is_resumable:
        raise CheckpointError(
            f"--resume {checkpoint.path}: holds no training state (a best.pth?); resume from the run's last.pth"
        )
    options = replace(checkpoint.options, dataset=checkpoint.dataset, weights=None, workers=None)
    return replace(options, **{name: values[name] for name in RESUME_OVERRIDES if name in typed})


if __name__ == "__main__":
    main()
