"""How train.py starts: a new run, a run resumed from its last.pth (--resume), or the run its folder already
holds when it was started with the same options (--resume-if-started, what a resubmitted Slurm job wants).

What a resumed run may change: RESUME_OVERRIDES; the rest is the run's own, as its checkpoint records it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from model.core import env
from model.core.errors import UserError
from model.core.runtime import Interrupted, Reporter
from model.experiment.options import OptionError, TrainOptions, at_tiny_scale, flag
from model.runs.checkpoint import Checkpoint, CheckpointError
from model.runs.run import Run
from model.training.command import assemble, given
from model.training.data import plan_rows

RESUME_OVERRIDES = ("epochs", "device", "workers", "dataset", "precision", "compile")  # what --resume lets a run change


def train(ctx: click.Context, values: dict[str, Any], resume: Path | None, resume_if_started: bool) -> int:
    """train.py's work: the run its arguments describe, trained (or gone on with); its exit status."""
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
        return 0
    reporter = Reporter()
    if (tiny := at_tiny_scale(options)) != options:
        reporter.line(f"${env.TINY}=1: training {tiny.epochs} epoch at {tiny.image_size} px (doc/troubleshooting.md)")
        options = tiny
    if checkpoint is None:
        Run(options.run_dir).check_place(options.output_dir)
    rows = plan_rows(options, reporter, checkpoint.path.parent if checkpoint is not None else None)
    for line in rows.warnings:
        reporter.line(line)
    from model.training.fit import fit  # torch: only once the options and the rows are known to be usable

    try:
        fit(options, rows, reporter, checkpoint)
    except Interrupted as interrupt:
        return 128 + interrupt.signum
    return 0


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
    check_config_unchanged(checkpoint)
    options = replace(checkpoint.options, dataset=checkpoint.dataset, weights=None, workers=None)
    return replace(options, **{name: values[name] for name in RESUME_OVERRIDES if name in typed})


def check_config_unchanged(checkpoint: Checkpoint) -> None:
    """A config.json edited by hand says options the resumed run would not train with: refused, not ignored."""
    path = checkpoint.path.parent / "config.json"
    try:
        written = TrainOptions.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return
    except (OSError, ValueError, UserError):
        raise UserError(f"{path}: not the config.json train.py wrote (edited?); restore it to resume the run") from None
    differs = written.differences(checkpoint.options)
    if differs:
        shown = ", ".join(f"{flag(n)} {getattr(written, n)!r}" for n in differs[:3])
        raise UserError(
            f"{path}: says {shown}, but the run was trained with {', '.join(flag(n) for n in differs[:3])} "
            f"{', '.join(repr(getattr(checkpoint.options, n)) for n in differs[:3])}: --resume goes on with the "
            f"run's own options; restore config.json, or start a new run with --config {path} --name NEW"
        )
