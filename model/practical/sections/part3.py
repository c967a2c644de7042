"""Part 3 of the practical: the box head and what it regresses, from the code (Q1-Q3), the loss and its
weights (Q4), the box loss per epoch (Q5), boxes drawn (Q6), a frozen against a fine-tuned ResNet (Q7).
(Q8 is a comparison, Q9 internet images: model/practical/sections/part2.py and part1.py.)

    box-head              Q1: the box head, layer by layer, on the features the classifier reads
    forward               Q2: what the forward pass returns, measured on a batch through the trained network
    box-normalisation     Q3: a few training rows, their boxes in pixels and as the network learns them, in [0, 1]
    loss-weights          Q4: the loss, as the code computes it, and the weights of its two terms
    box-losses            Q5: the box loss (and the class loss) per epoch
    boxes                 Q6: predicted and true boxes drawn: the best and the lowest IoU among right labels
    frozen-vs-fine-tuned  Q7
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from model import config
from model.annotations import Problems, image_path, read_rows
from model.engine import loss_for
from model.images import box_to_unit, stored_size
from model.practical.context import Content, Context, num, overall
from model.practical.plan import Section, shown_path
from model.practical.sections.common import builder, commands, frame, leaders, names, pointer
from model.practical.sections.part2 import add_figure, network_reports
from model.reporting import figures as drawn
from model.reporting.architecture import architecture_frame
from model.reporting.comparison import BOXES, model_galleries

NORMALISATION_EXAMPLES = 3  # training rows shown with their box in pixels and in [0, 1]


@builder("box-head")
def box_head(ctx: Context, section: Section, runs: list[str]) -> Content:
    """Q1: the box head of each run's network, from the code, beside the classification head it shares features with."""
    content = Content(commands=commands(ctx, runs, evaluate=False))
    for run in runs:
        checkpoint = ctx.run(run).checkpoint("best", mmap=True)
        layers = architecture_frame(
            checkpoint.model_name, checkpoint.record.model_options, len(checkpoint.classes), checkpoint.image_size
        )
        heads = layers[layers["part"].isin(["classifier", "box_regressor"])]
        content.tables.append((f"{ctx.label(run)}: the two heads on the shared features, layer by layer", heads))
        box = heads[heads["part"] == "box_regressor"]
        shared = layers[layers["part"] == "features"]["output"].iloc[-1]
        content.observations.append(
            f"{ctx.label(run)}: the box head is {len(box)} layers ("
            + ", ".join(str(layer).split(": ", 1)[-1] for layer in box["layer"])
            + f"), {int(box['parameters'].sum()):,} parameters, no dropout; it reads the same {shared} features as "
            "the classification head and ends in a sigmoid, so each of its 4 outputs is in [0, 1]."
        )
    return content


@builder("forward")
def forward(ctx: Context, section: Section, runs: list[str]) -> Content:
    """Q2: the forward pass's two outputs, their shapes and ranges, on the run's test images."""
    content = Content(text=[FORWARD])
    for run in runs:
        results = ctx.per_image(run)
        n = len(results.paths)
        boxes = results.predicted_boxes
        rows = [
            {"output": "logits (class scores)", "shape": f"{n} x {len(results.classes)}", "range": "any real number"},
            {
                "output": "boxes (x1, y1, x2, y2)",
                "shape": f"{n} x 4" if boxes is not None else "-",
                "range": "[0, 1] (x by the width, y by the height)" if boxes is not None else "no box head",
            },
        ]
        content.tables.append(
            (f"{ctx.label(run)}: what the forward pass returns for its {n} test images", pd.DataFrame(rows))
        )
    return content


FORWARD = (
    "`model(images)` returns a pair (model/detector.py, `Detector.forward`): `predict[0]` the class scores (B, C) and "
    "`predict[1]` the box (B, 4) as x1, y1, x2, y2 in [0, 1] (None for a network without a box head). train.py, "
    "eval.py and predict.py read both through one inference step (model/engine/steps.py, `infer`)."
)


@builder("box-normalisation")
def box_normalisation(ctx: Context, section: Section, runs: list[str]) -> Content:
    """Q3: the first training rows of each run: their box in pixels, their image's size, and the box the network
    learns (model/data/images.py, box_to_unit)."""
    content = Content(
        text=[
            "A box is read in pixels of the original image and divided by that image's width and height "
            "(model/data/images.py, `box_to_unit`), whatever size the network sees the image at; predicted boxes go "
            "back to pixels the same way (`box_to_pixels`)."
        ]
    )
    for run in runs:
        rows = read_rows(ctx.run(run).split_path("train"), Problems(skip=True))[:NORMALISATION_EXAMPLES]
        table = []
        for row in rows:
            width, height = stored_size(image_path(ctx.dataset or ctx.run(run).facts()["dataset"], row))
            unit = box_to_unit(row.box, width, height)
            table.append(
                {
                    "image": row.key,
                    "width": width,
                    "height": height,
                    "box in pixels": ", ".join(f"{v:g}" for v in row.box),
                    "box in [0, 1]": ", ".join(f"{v:.3f}" for v in unit),
                }
            )
        content.tables.append(
            (
                f"{ctx.label(run)}: the first training rows, as the network learns their box",
                frame(table, ("width", "height")),
            )
        )
    return content


@builder("loss-weights")
def loss_weights(ctx: Context, section: Section, runs: list[str]) -> Content:
    """Q4: the loss each run minimises (the code's own description) and what its weights do."""
    content = Content(commands=commands(ctx, runs))
    rows: list[dict[str, Any]] = []
    for run in runs:
        test, options = ctx.figures(run), ctx.options(run)
        rows.append(
            {
                "run": run,
                "label_weight": options.label_weight,
                "box_weight": options.box_weight,
                "box_loss": options.box_loss,
                "test_accuracy": overall(test),
                "test_mean_iou": overall(test, "mean_iou"),
                "test_iou_at_0.5": overall(test, "iou_at_threshold"),
            }
        )
    reference = next((r for r in runs if ctx.options(r).box_weight == config.BOX_WEIGHT), runs[0])
    ctx.once(f"loss:{reference}")
    content.text.append(
        f"The loss of {reference} (model/experiment/loss.py, `DetectionLoss`): "
        f"{loss_for(ctx.options(reference)).describe()}. The other runs change only the two weights."
    )
    content.tables.append(("The weights of the class and box terms", pd.DataFrame(rows)))
    content.observations += weight_observations(rows)
    return content


def weight_observations(rows: list[dict[str, Any]]) -> list[str]:
    """The weights that give the best boxes and the best test accuracy, every run that ties named."""
    by_run = {r["run"]: r for r in rows}
    lines = []
    for key, what in (("test_mean_iou", "mean IoU"), ("test_accuracy", "test accuracy")):
        tied, value = leaders({r["run"]: r[key] for r in rows})
        if tied:
            weights = names([f"box weight {by_run[r]['box_weight']:g} ({r})" for r in tied])
            lines.append(f"The best {what}, {num(value)}, comes with {weights}.")
    return lines


@builder("box-losses")
def box_losses(ctx: Context, section: Section, runs: list[str]) -> Content:
    """Q5: the class and box losses per epoch, training sample and validation, as train.py records them."""
    content = Content(commands=commands(ctx, runs, evaluate=False))
    for run in runs:
        earlier = ctx.once(f"loss:{run}")
        described = f"The loss of {run} as the code computes it, box term included"
        content.text.append(
            pointer(earlier, described)
            if earlier is not None
            else f"{described} (model/experiment/loss.py): {loss_for(ctx.options(run)).describe()}."
        )
    histories = [(ctx.label(r), ctx.history(r)) for r in runs]
    path = ctx.write_figure(
        f"{section.id}-losses.png",
        lambda: drawn.loss_curves_png(histories),
        histories,
    )
    if path is not None:
        content.figures.append(("Class and box loss per epoch (solid: training sample, dashed: validation)", path))
    for label, history in histories:
        first, last = history[0], history[-1]
        content.observations.append(
            f"{label}: the validation box loss goes from {num(first['val_box_loss'], 4)} at epoch 1 to "
            f"{num(last['val_box_loss'], 4)} at epoch {int(last['epoch'])}, the validation IoU from "
            f"{num(first['val_iou'])} to {num(last['val_iou'])}."
        )
    return content


@builder("boxes")
def boxes(ctx: Context, section: Section, runs: list[str]) -> Content:
    """Q6: each run's predicted and true boxes drawn: the best and the lowest IoU among right labels."""
    content = Content(
        commands=[
            f"python predict.py --model {shown_path(ctx.run(r).checkpoint_path('best'))} "
            f"{shown_path(ctx.run(r).split_path('test'))}"
            for r in runs
        ]
    )
    prefix = f"{section.id}-"
    for report in network_reports(ctx, runs):
        galleries = [g for g in model_galleries(report, prefix) if g.name.startswith(f"{prefix}{BOXES}")]
        if not galleries:
            content.text.append(f"{report.name}: no test image has the right label and a box: no box to show.")
        for figure in galleries:
            ctx.once(f"gallery:{figure.name.removeprefix(prefix)}")
            add_figure(ctx, content, figure)
        results = report.results
        if results is not None and results.iou is not None:
            right = (results.predicted_labels == results.true_labels) & results.boxed
            below = int((results.iou[right] < 0.5).sum())
            content.observations.append(
                f"{report.name}: {int(right.sum())} test images have the right label; {below} of them a box of IoU "
                f"below 0.5; their IoU ranges from {num(float(np.min(results.iou[right])))} to "
                f"{num(float(np.max(results.iou[right])))}."
            )
    return content


@builder("frozen-vs-fine-tuned")
def frozen_vs_fine_tuned(ctx: Context, section: Section, runs: list[str]) -> Content:
    """Q7: a frozen and a fine-tuned ResNet-18 backbone: what trains, how long an epoch takes, what it gives."""
    content = Content(commands=commands(ctx, runs))
    rows: list[dict[str, Any]] = []
    for run in runs:
        options, history, test = ctx.options(run), ctx.history(run), ctx.figures(run)
        facts = ctx.run(run).facts()
        rows.append(
            {
                "run": ctx.label(run),
                "backbone": "frozen" if options.freeze else "fine-tuned",
                "pretrained": bool(options.pretrained),
                "trainable_parameters": facts.get("trainable_parameters"),
                "seconds_per_epoch": float(np.mean([r["seconds"] for r in history])) if history else math.nan,
                "image_size": options.image_size,
                "trained_on": (facts.get("resumed") or [facts])[-1].get("device", ""),
                "test_accuracy": overall(test),
                "test_mean_iou": overall(test, "mean_iou"),
            }
        )
    content.tables.append(("A frozen and a fine-tuned ResNet-18 backbone", frame(rows, ("trainable_parameters",))))
    if len(rows) == 2:
        content.observations += frozen_observations(rows)
    return content


def frozen_observations(rows: list[dict[str, Any]]) -> list[str]:
    frozen, tuned = sorted(rows, key=lambda r: r["backbone"] != "frozen")
    same = frozen["image_size"] == tuned["image_size"] and frozen["trained_on"] == tuned["trained_on"]
    lines = [
        f"Fine-tuning trains {tuned['trainable_parameters']:,} parameters instead of "
        f"{frozen['trainable_parameters']:,}; "
        f"test accuracy {num(tuned['test_accuracy'])} against {num(frozen['test_accuracy'])}, mean IoU "
        f"{num(tuned['test_mean_iou'])} against {num(frozen['test_mean_iou'])}.",
        f"An epoch takes {num(tuned['seconds_per_epoch'], 2)} s fine-tuned against "
        f"{num(frozen['seconds_per_epoch'], 2)} s "
        "frozen"
        + (
            f" (both at {frozen['image_size']} px on {frozen['trained_on'] or 'the same device'})."
            if same
            else " (not comparable: the runs differ in image size or device)."
        ),
    ]
    if not frozen["pretrained"]:
        lines.append(
            "Without ImageNet weights the frozen backbone keeps its random initial weights: only the heads learn, "
            "which is not the transfer learning Part 3 Q7 asks about; train with the weights to compare them."
        )
    return lines
