"""What the report's sections share: the registry of section kinds, the report's ways of saying a figure, and the
pieces several kinds show (the commands that made a run, its setting, its curves, eval.py's figures of a checkpoint).

A section kind is one function registered with ``@builder("kind")``: it reads its runs through the Context and
returns the Content the section shows. A new section of the report is that function and one [[section]] entry in
practical.toml. Observations are computed from the numbers the section shows, never written by hand.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import pandas as pd

from model import config
from model.practical.plan import shown_path
from model.practical.report import Builder, Content, Context
from model.reporting import figures as drawn
from model.runs import training_figures

BuilderT = TypeVar("BuilderT", bound=Builder)
BUILDERS: dict[str, Builder] = {}  # kind -> the function that builds a section of that kind
READS_RUNS: dict[str, bool] = {}  # kind -> whether its sections read runs (a reading section reads none)
DESIGN = config.PROJECT_ROOT / "doc" / "design.md"  # its table of where each question's code lives
CODE_MAP = "## Where each question of the practical lives"


def builder(kind: str, runs: bool = True) -> Callable[[BuilderT], BuilderT]:
    """Register the function as the builder of sections of ``kind`` (``runs``: its sections name the runs they read)."""

    def register(function: BuilderT) -> BuilderT:
        if kind in BUILDERS:
            raise ValueError(f"two builders of section kind {kind!r}")
        BUILDERS[kind], READS_RUNS[kind] = function, runs
        return function

    return register


def at_epoch(history: list[dict[str, float]], epoch: int | None) -> dict[str, float]:
    return next((row for row in history if int(row["epoch"]) == epoch), {})


def overall(figures: dict[str, Any], name: str = "accuracy") -> float:
    value = figures.get("overall", {}).get(name)
    return math.nan if value is None else float(value)


def per_label(figures: dict[str, Any], name: str = "accuracy") -> dict[str, float]:
    return {k: math.nan if f.get(name) is None else float(f[name]) for k, f in figures.get("per_label", {}).items()}


def num(value: float | None, digits: int = 3) -> str:
    """A figure as the report's sentences write it ("-" for none)."""
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def leaders(scores: Mapping[str, float | None], low: bool = False) -> tuple[list[str], float]:
    """The names of the highest score (the lowest with ``low``), every one that ties for it, in order, and that score;
    missing and NaN scores left out."""
    finite = {n: v for n, v in scores.items() if v is not None and not math.isnan(v)}
    if not finite:
        return [], math.nan
    top = (min if low else max)(finite.values())
    return [n for n, v in finite.items() if v == top], top


def weakest(figures: dict[str, Any]) -> tuple[str, float] | None:
    """The label of the lowest score, every tied label named ("face and motorcycle"); None when every label ties."""
    scores = {k: v for k, v in per_label(figures).items() if not math.isnan(v)}
    tied, low = leaders(scores, low=True)
    return None if not tied or len(tied) == len(scores) > 1 else (" and ".join(sorted(tied)), low)


def names(items: Sequence[str]) -> str:
    """Names as a sentence lists them: "a", "a and b", "a, b and c"."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def whose(tied: list[str]) -> str:
    """ "reached by p3-vgg", or "shared by p3-vgg and p3-deeper" when several tie."""
    return f"reached by {tied[0]}" if len(tied) == 1 else f"shared by {names(tied)}"


def commands(ctx: Context, runs: list[str], which: tuple[str, ...] = ("best",), evaluate: bool = True) -> list[str]:
    """The train.py commands of the runs, as the plan runs them, then eval.py's."""
    evals = [f"python eval.py {shown_path(ctx.run(r).checkpoint_path(w))}" for r in runs for w in which]
    return [ctx.plan.shown(r, ctx.dataset) for r in runs] + (evals if evaluate else [])


def setting(ctx: Context, run: str) -> str:
    """The experiment's setting in one line: splits, schedule, image size."""
    options, trained, sizes = ctx.options(run), len(ctx.history(run)), ctx.split_sizes(run)
    epochs = f"{trained} epochs" + (f" (of {options.epochs} planned)" if trained != options.epochs else "")
    schedule = "" if options.lr_schedule == "none" else f", {options.lr_schedule} schedule"
    return (
        f"{ctx.label(run)}: {sizes['train']} training, {sizes['val']} validation and {sizes['test']} test images; "
        f"{epochs} of {options.optimizer} at learning rate {options.lr:g}{schedule}, batch {options.batch_size}, "
        f"{options.image_size} px."
    )


def curves(ctx: Context, content: Content, run: str) -> None:
    """The run's loss, accuracy (and, with a box head, IoU) per epoch."""
    history, label = ctx.history(run), ctx.label(run)
    lines = f"solid: {drawn.training_label(history)}, dashed: validation, dotted: the best epoch"
    caption = f"{label}: loss, accuracy{', IoU' if drawn.has_boxes(history) else ''} per epoch ({lines})"
    name = f"{ctx.section.id if ctx.section else 'x'}-{run}-curves.png"
    ctx.figure(content, name, caption, lambda: drawn.run_curves_png(history, label), history, label)


def checkpoint_row(ctx: Context, run: str, which: str) -> dict[str, Any]:
    """eval.py's figures of the run's ``which``.pth on the whole splits (evaluation mode)."""
    epoch = int(ctx.evaluation(run, which)["epoch"])
    row: dict[str, Any] = {"model": f"{which}.pth", "epoch": epoch}
    row |= {f"{split}_accuracy": overall(ctx.figures(run, which, split)) for split in ("train", "val", "test")}
    row["val_loss"] = at_epoch(ctx.history(run), epoch).get("val_loss")
    test = ctx.figures(run, which, "test")
    row |= {f"test_{k}": v for k, v in per_label(test).items()}
    if "mean_iou" in test.get("overall", {}):
        row["test_mean_iou"] = overall(test, "mean_iou")
    return row


def sample_column(history: list[dict[str, float]], key: str = "accuracy") -> str:
    """A table's name for a training figure measured on the epoch's sample ("train_sample_accuracy"), or on the
    training pass itself (runs trained with --train-eval off)."""
    return f"train_sample_{key}" if training_figures(history)[0] == "train" else f"train_running_{key}"


def epoch_accuracies(history: list[dict[str, float]], epoch: int) -> dict[str, float]:
    """The accuracy at ``epoch`` of the training sample (as the run measured it each epoch, evaluation mode) and of
    the validation split, named as a table's columns."""
    row, prefix = at_epoch(history, epoch), training_figures(history)[0]
    sample = row.get(f"{prefix}_accuracy", math.nan)
    return {sample_column(history): sample, "val_accuracy": row.get("val_accuracy", math.nan)}


def frame(rows: list[dict[str, Any]], counts: tuple[str, ...] = ()) -> pd.DataFrame:
    """A table of rows, its count columns as integers beside missing values."""
    table = pd.DataFrame(rows)
    return table.astype({c: "Int64" for c in counts if c in table.columns})


def code_map() -> pd.DataFrame:
    """doc/design.md's table of where each question of the practical lives (question, file, function); empty when
    the file or its table is not there."""
    try:
        text = DESIGN.read_text(encoding="utf-8").split(CODE_MAP, 1)[1].split("\n## ", 1)[0]
    except (OSError, IndexError):
        return pd.DataFrame(columns=["question", "file", "function"])
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("|")
    ]
    return pd.DataFrame(rows[2:], columns=rows[0])


def where(function: str) -> str:
    """Where the code map says ``function`` lives, as a sentence points to it: "model/runs.py, `improves`"."""
    found = code_map().query("function == @function")["file"]
    return f"{found.iloc[0]}, `{function}`" if len(found) else f"`{function}`"
