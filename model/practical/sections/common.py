"""What the report's sections share: the registry of section kinds, and the pieces several kinds show (the
commands that made a run, its setting, its curves, eval.py's figures of a checkpoint).

A section kind is one function registered with ``@builder("kind")``: it reads its runs through the Context and
returns the Content the section shows. A new section of the report is that function and one [[section]] entry
in practical.toml. Observations are computed from the numbers the section shows, never written by hand.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import pandas as pd

from model.practical.context import Content, Context, at_epoch, has_boxes, overall, per_label
from model.practical.plan import Section, shown_path
from model.reporting import figures as drawn
from model.runs import training_figures

Builder = Callable[[Context, Section, list[str]], Content]
BuilderT = TypeVar("BuilderT", bound=Builder)
BUILDERS: dict[str, Builder] = {}  # kind -> the function that builds a section of that kind
READS_RUNS: dict[str, bool] = {}  # kind -> whether its sections read runs (a reading section reads none)


def builder(kind: str, runs: bool = True) -> Callable[[BuilderT], BuilderT]:
    """Register ``function`` as the builder of sections of ``kind`` (``runs``: its sections name the runs they
    read; False: they name none)."""

    def register(function: BuilderT) -> BuilderT:
        if kind in BUILDERS:
            raise ValueError(f"two builders of section kind {kind!r}")
        BUILDERS[kind], READS_RUNS[kind] = function, runs
        return function

    return register


def commands(ctx: Context, runs: list[str], which: tuple[str, ...] = ("best",), evaluate: bool = True) -> list[str]:
    """The train.py commands of the runs, as the plan runs them, then eval.py's."""
    trains = [ctx.plan.shown(ctx.planned(r), ctx.dataset) for r in runs]
    evals = [f"python eval.py {shown_path(ctx.run(r).checkpoint_path(w))}" for r in runs for w in which]
    return trains + (evals if evaluate else [])


def setting(ctx: Context, run: str) -> str:
    """The experiment's setting in one line: splits, schedule, and the rule that picks the best model."""
    options, trained = ctx.options(run), len(ctx.history(run))
    sizes = ctx.split_sizes(run)
    epochs = f"{trained} epochs" + (f" (of {options.epochs} planned)" if trained != options.epochs else "")
    schedule = "" if options.lr_schedule == "none" else f", {options.lr_schedule} schedule"
    return (
        f"{ctx.label(run)}: {sizes['train']} training, {sizes['val']} validation and {sizes['test']} test images; "
        f"{epochs} of {options.optimizer} at learning rate {options.lr:g}{schedule}, batch {options.batch_size}, "
        f"{options.image_size} px."
    )


def curves(ctx: Context, run: str) -> tuple[str, Any] | None:
    """The run's loss, accuracy (and IoU) per epoch, as (caption, file)."""
    history = ctx.history(run)
    path = ctx.write_figure(
        f"{ctx.section.id if ctx.section else 'x'}-{run}-curves.png",
        lambda: drawn.run_curves_png(history, ctx.label(run)),
        history,
        ctx.label(run),
    )
    if path is None:
        return None
    return (
        f"{ctx.label(run)}: loss, accuracy (and IoU) per epoch (solid: {drawn.training_label(history)}, dashed: "
        "validation, dotted: the best epoch)",
        path,
    )


def pointer(earlier: Section, what: str) -> str:
    """One line sending the reader to the section that shows ``what`` already (``what`` as the line begins: a run's
    name, "p3-simple", is never capitalised)."""
    return f"{what}: see [{earlier.title}](#{anchor(earlier.title)}) above."


def names(items: list[str]) -> str:
    """Names as a sentence lists them: "a", "a and b", "a, b and c"."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def leaders(scores: Mapping[str, float | None]) -> tuple[list[str], float]:
    """The names of the highest score (every one that ties for it, in order) and that score; missing and NaN scores
    left out."""
    finite = {name: value for name, value in scores.items() if value is not None and not math.isnan(value)}
    if not finite:
        return [], math.nan
    top = max(finite.values())
    return [name for name, value in finite.items() if value == top], top


def whose(tied: list[str]) -> str:
    """Who reached a score: "reached by p3-vgg", or "shared by p3-vgg and p3-deeper" when several tie."""
    return f"reached by {tied[0]}" if len(tied) == 1 else f"shared by {names(tied)}"


def anchor(title: str) -> str:
    """The anchor GitHub and the report's contents give a heading."""
    return re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")


def checkpoint_row(ctx: Context, run: str, which: str, splits: tuple[str, ...] = ("train", "val", "test")) -> dict:
    """eval.py's figures of the run's ``which``.pth on whole splits (evaluation mode)."""
    history = ctx.history(run)
    epoch = ctx.epoch(run, which)
    row: dict[str, Any] = {"model": f"{which}.pth", "epoch": epoch}
    for split in splits:
        row[f"{split}_accuracy"] = overall(ctx.figures(run, which, split))
    row["val_loss"] = at_epoch(history, epoch).get("val_loss")
    test = ctx.figures(run, which, "test")
    row.update({f"test_{k}": v for k, v in per_label(test).items()})
    if has_boxes(test):
        row["test_mean_iou"] = overall(test, "mean_iou")
    return row


def sample_figure(history: list[dict[str, float]], epoch: int, key: str = "accuracy") -> float:
    """A training figure at ``epoch`` as the run measured it each epoch (its training sample, evaluation mode)."""
    prefix, _ = training_figures(history)
    value = at_epoch(history, epoch).get(f"{prefix}_{key}")
    return float("nan") if value is None else value


def sample_column(history: list[dict[str, float]], key: str = "accuracy") -> str:
    """The name a table gives a training figure measured on the epoch's sample ("train_sample_accuracy"), or on
    the training pass itself (runs trained with --train-eval off)."""
    prefix, _ = training_figures(history)
    return f"train_sample_{key}" if prefix == "train" else f"train_running_{key}"


def frame(rows: list[dict[str, Any]], counts: tuple[str, ...] = ()) -> pd.DataFrame:
    """A table of rows, its count columns as integers beside missing values."""
    table = pd.DataFrame(rows)
    return table.astype({c: "Int64" for c in counts if c in table.columns})
