"""Part 3 of the practical: the box head and what it regresses, from the code (Q1-Q3), the loss and its weights
(Q4), the box loss per epoch (Q5), boxes drawn (Q6), a frozen against a fine-tuned ResNet (Q7); and, beyond the
practical, box-aware augmentation. (Q8 is a comparison, part2.py; Q9 internet images, internet.py.)

    box-head              Q1: the box head, layer by layer, on the features the classifier reads
    forward               Q2: what the forward pass returns, measured on the trained network's test images
    box-normalisation     Q3: a few training rows, their boxes in pixels and as the network learns them, in [0, 1]
    loss-weights          Q4: the loss, as the code computes it, and the weights of its two terms
    box-losses            Q5: the box loss (and the class loss) per epoch
    boxes                 Q6: predicted and true boxes drawn: the best and the lowest IoU among right labels
    frozen-vs-fine-tuned  Q7: what trains, how long an epoch takes, what it gives
    augment               (optional) each augmentation policy against none, on small training sets
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from model import config
from model.annotations import Problems, image_path, read_rows
from model.engine import loss_for
from model.images import box_to_unit, stored_size
from model.practical.plan import Section, shown_path
from model.practical.report import Content, Context
from model.practical.sections.common import builder, commands, frame, leaders, names, num, overall, where
from model.practical.sections.part2 import network_reports, timing_observations
from model.reporting import figures as drawn
from model.reporting.architecture import architecture_frame
from model.reporting.comparison import BOXES, model_galleries

NORMALISATION_EXAMPLES = 3  # training rows shown with their box in pixels and in [0, 1]


@builder("box-head")
def box_head(ctx: Context, section: Section, runs: list[str]) -> Content:
    """Q1: each run's box head, from the code, beside the classification head it shares the features with."""
    content = Content(commands=commands(ctx, runs, evaluate=False))
    for run in runs:
        checkpoint = ctx.run(run).checkpoint("best", mmap=True)
        options = checkpoint.record.model_options
        layers = architecture_frame(checkpoint.model_name, options, len(checkpoint.classes), checkpoint.image_size)
        heads = layers[layers["part"].isin(["classifier", "box_regressor"])]
        content.tables.append((f"{ctx.label(run)}: the two heads on the shared features, layer by layer", heads))
        box, shared = heads[heads["part"] == "box_regressor"], layers[layers["part"] == "features"]["output"].iloc[-1]
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
    text = (
        f"`model(images)` returns a pair ({where('forward')} of `Detector`): `predict[0]` the class scores (B, C) and "
        "`predict[1]` the box (B, 4) as x1, y1, x2, y2 in [0, 1] (None for a network without a box head); train.py, "
        "eval.py and predict.py read both."
    )
    content = Content(text=[text])
    for run in runs:
        results = ctx.per_image(run)
        n, boxed = len(results.paths), results.predicted_boxes is not None
        rows = [("logits (class scores)", f"{n} x {len(results.classes)}", "any real number"),
                ("boxes (x1, y1, x2, y2)", f"{n} x 4" if boxed else "-",
                 "[0, 1] (x by the width, y by the height)" if boxed else "no box head")]  # fmt: skip
        table = pd.DataFrame(rows, columns=["output", "shape", "range"])
        content.tables.append((f"{ctx.label(run)}: what the forward pass returns for its {n} test images", table))
    return content


@builder("box-normalisation")
def box_normalisation(ctx: Context, section: Section, runs: list[str]) -> Content:
    """Q3: the first training rows of each run: their box in pixels, their image's size, and the box the network
    learns."""
    text = (
        f"A box is read in pixels of the original image and divided by that image's width and height "
        f"({where('box_to_unit')}), whatever size the network sees the image at; predicted boxes go back to pixels the "
        "same way (`box_to_pixels`)."
    )
    content = Content(text=[text])
    for run in runs:
        every = read_rows(ctx.run(run).split_path("train"), Problems(skip=True))
        table = []
        for row in every[:NORMALISATION_EXAMPLES]:
            width, height = stored_size(image_path(ctx.dataset or ctx.run(run).facts()["dataset"], row))
            unit = ", ".join(f"{v:.3f}" for v in box_to_unit(row.box, width, height))
            pixels = ", ".join(f"{v:g}" for v in row.box)
            table.append(
                {"image": row.key, "width": width, "height": height, "box in pixels": pixels, "box in [0, 1]": unit}
            )
        caption = f"{ctx.label(run)}: the first {len(table)} of its {len(every)} training rows, as the network learns"
        caption += " their box"
        content.tables.append((caption, frame(table, ("width", "height"))))
    return content


@builder("loss-weights")
def loss_weights(ctx: Context, section: Section, runs: list[str]) -> Content:
    """Q4: the loss each run minimises (the code's own description) and what its weights do."""
    content = Content(commands=commands(ctx, runs))
    rows: list[dict[str, Any]] = []
    for run in runs:
        test, options = ctx.figures(run), ctx.options(run)
        rows.append(
            {"run": run, "label_weight": options.label_weight, "box_weight": options.box_weight,
             "box_loss": options.box_loss, "test_accuracy": overall(test), "test_mean_iou": overall(test, "mean_iou"),
             "test_iou_at_0.5": overall(test, "iou_at_threshold")}
        )  # fmt: skip
    reference = next((r for r in runs if ctx.options(r).box_weight == config.BOX_WEIGHT), runs[0])
    ctx.once(f"loss:{reference}")
    content.text.append(
        f"The loss of {reference} ({where('DetectionLoss')}): {loss_for(ctx.options(reference)).describe()}. The other "
        "runs change only the two weights."
    )
    content.tables.append(("The weights of the class and box terms", pd.DataFrame(rows)))
    for key, what in (("test_mean_iou", "mean IoU"), ("test_accuracy", "test accuracy")):
        tied, value = leaders({r["run"]: r[key] for r in rows})
        if tied:
            weights = names([f"box weight {ctx.options(r).box_weight:g} ({r})" for r in tied])
            content.observations.append(f"The best {what}, {num(value)}, comes with {weights}.")
    return content


@builder("box-losses")
def box_losses(ctx: Context, section: Section, runs: list[str]) -> Content:
    """Q5: the class and box losses per epoch, training sample and validation, as train.py records them."""
    content = Content(commands=commands(ctx, runs, evaluate=False))
    for run in runs:
        described = f"The loss of {run} as the code computes it, box term included"
        if earlier := ctx.once(f"loss:{run}"):
            content.text.append(ctx.pointer(earlier, described))
        else:
            content.text.append(f"{described} ({where('DetectionLoss')}): {loss_for(ctx.options(run)).describe()}.")
    histories = [(ctx.label(r), ctx.history(r)) for r in runs]
    caption = f"Class and box loss{drawn.every(histories)} (solid: training sample, dashed: validation)"
    ctx.figure(content, f"{section.id}-losses.png", caption, lambda: drawn.losses_png(histories), histories)
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
    paths = [(shown_path(ctx.run(r).checkpoint_path("best")), shown_path(ctx.run(r).split_path("test"))) for r in runs]
    content = Content(commands=[f"python predict.py --model {model} {test}" for model, test in paths])
    for report in network_reports(ctx, runs):
        galleries = [g for g in model_galleries(report, f"{section.id}-") if g.name.startswith(f"{section.id}-{BOXES}")]
        if not galleries:
            content.text.append(f"{report.name}: no test image has the right label and a box: no box to show.")
        for figure in galleries:
            ctx.figure(content, figure.name, figure.caption, figure.draw, *figure.inputs)
        if (results := report.results) is not None and results.iou is not None:
            right = (results.predicted_labels == results.true_labels) & results.boxed
            iou = results.iou[right]
            content.observations.append(
                f"{report.name}: {int(right.sum())} test images have the right label; {int((iou < 0.5).sum())} of them "
                f"a box of IoU below 0.5; their IoU ranges from {num(float(np.min(iou)))} to {num(float(np.max(iou)))}."
            )
    return content


@builder("frozen-vs-fine-tuned")
def frozen_vs_fine_tuned(ctx: Context, section: Section, runs: list[str]) -> Content:
    """Q7: a frozen and a fine-tuned ResNet-18 backbone: what trains, how long an epoch takes, what it gives."""
    content = Content(commands=commands(ctx, runs))
    reports = network_reports(ctx, runs)
    rows: list[dict[str, Any]] = [
        {"run": r.name, "backbone": "frozen" if ctx.options(run).freeze else "fine-tuned",
         "pretrained": bool(ctx.options(run).pretrained), "trainable_parameters": r.trainable,
         "seconds_per_epoch": r.seconds, "image_size": r.image_size, "trained_on": r.trained_on,
         "test_accuracy": overall(r.test), "test_mean_iou": overall(r.test, "mean_iou")}
        for run, r in zip(runs, reports)
    ]  # fmt: skip
    content.tables.append(("A frozen and a fine-tuned ResNet-18 backbone", frame(rows, ("trainable_parameters",))))
    if len(rows) == 2:
        frozen, tuned = sorted(rows, key=lambda r: r["backbone"] != "frozen")
        content.observations.append(
            f"Fine-tuning trains {tuned['trainable_parameters']:,} parameters instead of "
            f"{frozen['trainable_parameters']:,}; test accuracy {num(tuned['test_accuracy'])} against "
            f"{num(frozen['test_accuracy'])}, mean IoU {num(tuned['test_mean_iou'])} against "
            f"{num(frozen['test_mean_iou'])}."
        )
        content.observations += timing_observations(sorted(reports, key=lambda r: r.name != frozen["run"]))
        if not frozen["pretrained"]:
            content.observations.append(
                "Without ImageNet weights the frozen backbone keeps its random initial weights: only the heads learn, "
                "which is not the transfer learning Part 3 Q7 asks about; train with the weights to compare them."
            )
    return content


@builder("augment")
def augment(ctx: Context, section: Section, runs: list[str]) -> Content:
    """Each augmentation policy against none, at each share of the training split."""
    content = Content(commands=commands(ctx, runs))
    rows: list[dict[str, Any]] = [
        {"run": run, "train_fraction": ctx.options(run).train_fraction, "augment": ctx.options(run).augment,
         "test_accuracy": overall(ctx.figures(run)), "test_mean_iou": overall(ctx.figures(run), "mean_iou")}
        for run in runs
    ]  # fmt: skip
    content.tables.append(("Augmentation policies on small training sets (one seed)", pd.DataFrame(rows)))
    for fraction in sorted({r["train_fraction"] for r in rows}):
        group = {r["augment"]: r for r in rows if r["train_fraction"] == fraction}
        for policy in ("light", "strong"):
            if "off" in group and policy in group:
                accuracy, iou = (group[policy][k] - group["off"][k] for k in ("test_accuracy", "test_mean_iou"))
                content.observations.append(
                    f"{fraction:.0%} of the training split: --augment {policy} changes the test accuracy by "
                    f"{accuracy:+.3f} and the mean IoU by {iou:+.3f}."
                )
    return content
