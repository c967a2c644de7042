"""Part 1 Q9 of the practical: the template's run varied: smaller training sets (Q9.1), no dropout or batch
normalisation (Q9.2); Q9.3, neither for more epochs, is a best-vs-last section (part1.py).

    fractions      Q9.1: test accuracy by the share of the training split, and the failure cases
    ablation       Q9.2: dropout and batch normalisation removed
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from model.practical.plan import Section
from model.practical.report import Content, Context
from model.practical.sections.common import builder, commands, epoch_accuracies, frame, num, overall, per_label, weakest
from model.practical.sections.part1 import failure_cases
from model.reporting import figures as drawn


@builder("fractions")
def fractions(ctx: Context, section: Section, runs: list[str]) -> Content:
    """Q9.1: test accuracy by the share of the training split kept, and each run's failure cases."""
    content = Content(commands=commands(ctx, runs))
    rows: list[dict[str, Any]] = []
    for run in runs:
        history, epoch, test = ctx.history(run), int(ctx.evaluation(run)["epoch"]), ctx.figures(run)
        rows.append(
            {"run": run, "train_fraction": ctx.options(run).train_fraction,
             "training_images": ctx.split_sizes(run)["train"], "best_epoch": epoch, **epoch_accuracies(history, epoch),
             "test_accuracy": overall(test), **{f"test_{k}": v for k, v in per_label(test).items()}}
        )  # fmt: skip
    caption = "Test accuracy by the share of the training split kept (figures at each run's best epoch)"
    content.tables.append((caption, frame(rows, ("training_images", "best_epoch"))))
    if len(rows) >= 2:
        first, last = rows[0], rows[-1]
        content.observations.append(
            f"From {first['train_fraction']:.0%} ({first['training_images']} images) to {last['train_fraction']:.0%} "
            f"({last['training_images']} images) of the training split, the test accuracy goes from "
            f"{num(first['test_accuracy'])} to {num(last['test_accuracy'])}."
        )
    for run in runs:
        if low := weakest(ctx.figures(run)):
            content.observations.append(f"{run}: weakest label {low[0]} ({num(low[1])}).")
    for run in runs:
        failure_cases(ctx, content, run, "best")
    return content


@builder("ablation")
def ablation(ctx: Context, section: Section, runs: list[str]) -> Content:
    """Q9.2: the reference run against its variants without dropout or batch normalisation."""
    content = Content(commands=commands(ctx, runs))
    rows: list[dict[str, Any]] = []
    for run in runs:
        options, history, epoch = ctx.options(run), ctx.history(run), int(ctx.evaluation(run)["epoch"])
        losses = np.array([r["val_loss"] for r in history])
        rows.append(
            {"run": run, "dropout": options.dropout, "batchnorm": options.batchnorm, "best_epoch": epoch,
             **epoch_accuracies(history, epoch), "test_accuracy": overall(ctx.figures(run)),
             "val_loss_jumps": float(np.abs(np.diff(losses)).mean()) if len(losses) > 1 else math.nan,
             "val_loss_change": float(losses[-1] - losses[0]) if len(losses) > 1 else math.nan}
        )  # fmt: skip
    caption = "The reference run and its variants (val_loss_jumps: the mean absolute change of the validation loss "
    caption += "from one epoch to the next; val_loss_change: its last epoch's value minus its first's)"
    content.tables.append((caption, frame(rows, ("best_epoch",))))
    histories = [(ctx.label(r), ctx.history(r)) for r in runs]
    draw = lambda: drawn.history_png(histories, [("loss", "Loss"), ("accuracy", "Accuracy")], "The runs per epoch")  # noqa: E731
    caption = "Loss and accuracy per epoch (solid: training sample, dashed: validation, dotted: each run's best epoch)"
    ctx.figure(content, f"{section.id}-curves.png", caption, draw, histories)
    if jumps := [r for r in rows if not math.isnan(r["val_loss_jumps"])]:
        jumps_of = lambda r: r["val_loss_jumps"]  # noqa: E731
        steadiest, roughest = min(jumps, key=jumps_of), max(jumps, key=jumps_of)
        content.observations.append(
            f"The validation loss moves least from epoch to epoch with {steadiest['run']} "
            f"({num(steadiest['val_loss_jumps'], 4)}; {num(steadiest['val_loss_change'], 4)} from first to last epoch) "
            f"and most with {roughest['run']} ({num(roughest['val_loss_jumps'], 4)}; "
            f"{num(roughest['val_loss_change'], 4)} from first to last); a loss that falls fast moves much from epoch "
            "to epoch too, so read the jumps beside the net change and the curves."
        )
    for row in rows[1:]:
        diff = row["test_accuracy"] - rows[0]["test_accuracy"]
        same = num(abs(diff)) == num(0.0)
        relation = "the same as" if same else f"{num(abs(diff))} {'above' if diff > 0 else 'below'}"
        content.observations.append(
            f"{row['run']}: test accuracy {num(row['test_accuracy'])}, {relation} {rows[0]['run']}."
        )
    return content
