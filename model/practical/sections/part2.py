"""Part 2 of the practical (and the comparisons of Part 3 Q8): each network on its own, then side by side.

network      Q1-Q3: one network, layer by layer from the code, its setting, its best and last model, its curves
comparison   Q4 (and Part 3 Q8): the networks side by side on their test splits: one table, the curves of every model,
             per-label figures, confusion matrices, the losses' evolution, epoch times, an error analysis; with box
             heads, the detection view too (accuracy against the IoU threshold, COCO mAP)
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from model.device import usable_cpus
from model.metrics import IOU_THRESHOLDS, accuracy_by_iou, average_precision
from model.practical.plan import Section
from model.practical.report import Content, Context
from model.practical.sections.common import (
    builder,
    checkpoint_row,
    commands,
    curves,
    frame,
    leaders,
    names,
    num,
    overall,
    setting,
    whose,
)
from model.practical.sections.part1 import validation_path
from model.reporting.architecture import architecture_frame
from model.reporting.comparison import (
    FAILURES,
    ModelReport,
    comparison_figures,
    comparison_frame,
    model_galleries,
    trained_report,
)
from model.reporting.tables import error_analysis
from model.runs import training_figures

CONTENDED = 0.6  # epochs whose process CPU time is below this share of the wall time its threads could use
HIDDEN = ("device", "note", "infer_ms_batched", "infer_ms_single")  # measured anew each time, or not a result
DETECTION = (
    "The detection view: COCO's mean average precision (torchmetrics; one box per image, scored by its confidence) and "
    "the detection accuracy (right label and IoU >= t) at each IoU threshold t"
)


@builder("network")
def network(ctx: Context, section: Section, runs: list[str]) -> Content:
    """Q1-Q3: the network of each run, layer by layer (from the code, at the run's image size), and its results."""
    content = Content(commands=commands(ctx, runs, ("last", "best")))
    for run in runs:
        checkpoint, label = ctx.run(run).checkpoint("best", mmap=True), ctx.label(run)
        options, size = checkpoint.record.model_options, checkpoint.image_size
        layers = architecture_frame(checkpoint.model_name, options, len(checkpoint.classes), size)
        shape = "output shape for one image; parameters"
        content.tables.append((f"{label}: {checkpoint.model_name} at {size} px, layer by layer ({shape})", layers))
        best, last = (checkpoint_row(ctx, run, which) for which in ("best", "last"))
        table = frame([best, last], ("epoch",))
        content.tables.append((f"{label}: the best and the last model on the whole splits", table))
        curves(ctx, content, run)
        total, trainable = int(layers["parameters"].iloc[-1]), int(layers["trainable"].iloc[-1])
        features = layers[layers["part"] == "features"]["output"].iloc[-1]
        heads = "both heads" if options.get("box_head", True) else "its classification head"
        content.observations += [
            setting(ctx, run),
            f"{label}: {total:,} parameters ({trainable:,} trainable); the features end as {features} values per "
            f"image, the input of {heads}.",
            f"{label}: best model (epoch {best['epoch']}) at {num(best['test_accuracy'])} on the test split, "
            f"{num(best['train_accuracy'])} on the training split.",
        ]
    return content


def network_reports(ctx: Context, runs: list[str]) -> list[ModelReport]:
    """Each run's best model as the comparison reads it: its stored test evaluation, history and facts (no second
    inference pass)."""
    reports = []
    for run in runs:
        stored = ctx.evaluation(run)
        test = {**stored["figures"], "box_loss": stored["figures"].get("box_loss", math.nan)}
        checkpoint = ctx.run(run).checkpoint("best", mmap=True)
        more = {"identity": str(stored["identity"]), "name": ctx.label(run), "device": str(ctx.inference.device)}
        reports.append(trained_report(ctx.run(run), checkpoint, test, ctx.per_image(run), **more))
    return reports


@builder("comparison")
def comparison(ctx: Context, section: Section, runs: list[str]) -> Content:
    """Q4 (and Part 3 Q8): the networks side by side."""
    content = Content(commands=commands(ctx, runs))
    reports = network_reports(ctx, runs)
    classes = ctx.run(runs[0]).checkpoint("best", mmap=True).classes
    table = comparison_frame(reports, classes)
    caption = "The networks on their test split (training-sample and validation figures at the best epoch; seconds "
    caption += "per epoch: the training and validation passes)"
    content.tables.append((caption, table.drop(columns=[c for c in HIDDEN if c in table.columns])))
    for figure in comparison_figures(reports, classes, f"{section.id}-"):
        ctx.figure(content, figure.name, figure.caption, figure.draw, *figure.inputs)
    content.observations += loss_observations(reports) + timing_observations(reports) + score_observations(reports)
    if boxed := [r for r in reports if r.results is not None and r.results.iou is not None]:
        detection_view(content, boxed)
    add_galleries(ctx, section, content, reports)
    content.text.append(error_analysis_text(reports))
    for report in reports:
        ctx.once(f"error-analysis:{report.key}")
    return content


def add_galleries(ctx: Context, section: Section, content: Content, reports: list[ModelReport]) -> None:
    """Each model's galleries, or a line saying that it has no misclassified image to show."""
    for report in reports:
        galleries = model_galleries(report, f"{section.id}-")
        if not any(g.name.startswith(f"{section.id}-{FAILURES}") for g in galleries):
            content.text.append(f"{report.name}: every test image has the right label: no misclassified image to show.")
        for figure in galleries:
            ctx.figure(content, figure.name, figure.caption, figure.draw, *figure.inputs)


def detection_view(content: Content, reports: list[ModelReport]) -> None:
    """Accuracy against the IoU threshold and COCO's average precision, per network with a box head."""
    rows: list[dict[str, Any]] = []
    for report in reports:
        assert report.results is not None
        ap = average_precision(report.results)
        row = {"model": report.name, "mAP@[.5:.95]": ap.get("map"), "AP50": ap.get("map_50"), "AP75": ap.get("map_75")}
        rows.append(row | {f"acc@{t:.2f}": a for t, a in zip(IOU_THRESHOLDS, accuracy_by_iou(report.results))})
    content.tables.append((DETECTION, pd.DataFrame(rows)))
    tied, value = leaders({r["model"]: math.nan if r["mAP@[.5:.95]"] is None else r["mAP@[.5:.95]"] for r in rows})
    if tied:
        first = next(r for r in rows if r["model"] == tied[0])
        aps = f" (AP50 {num(first['AP50'])}, AP75 {num(first['AP75'])})." if len(tied) == 1 else "."
        content.observations.append(f"The best mAP@[.5:.95] is {num(value)}, {whose(tied)}{aps}")
        strict, value = leaders({r["model"]: r["acc@0.75"] for r in rows})
        if value == 0:
            content.observations.append(
                "At IoU 0.75 no network gets a single test image right (right label and a box that close)."
            )
        elif strict:
            content.observations.append(f"At IoU 0.75 the best detection accuracy is {num(value)}, {whose(strict)}.")


def loss_observations(reports: list[ModelReport]) -> list[str]:
    """How each network's losses evolve: the training loss from the first epoch to the last, the validation loss's
    lowest epoch and where it ends."""
    lines = []
    for report in reports:
        if (path := validation_path(report.history)) is None:
            continue
        prefix, _ = training_figures(report.history)
        (low, last, rise), first = path, report.history[0]
        lines.append(
            f"{report.name}: the training sample's loss goes from {num(first[f'{prefix}_loss'])} to "
            f"{num(last[f'{prefix}_loss'])} over {len(report.history)} epochs; the validation loss is lowest at epoch "
            f"{int(low['epoch'])} ({num(low['val_loss'])}) and ends at {num(last['val_loss'])}"
            + (f", {rise}." if rise else ".")
        )
    return lines


def error_analysis_text(reports: list[ModelReport]) -> str:
    analyses = (error_analysis(r.name, r.results).replace("## ", "#### ", 1) for r in reports)
    return "**Error analysis** (test split):\n\n" + "\n".join(analyses)


def timing_observations(reports: list[ModelReport]) -> list[str]:
    """Epoch-time ratios against the first model, and the comparisons they must not be read as: another device or
    image size, or epochs that ran while other processes took the CPU (CPU time far below what its threads could
    use)."""
    timed, lines = [r for r in reports if r.history], []
    for report in timed[1:]:
        mine, theirs, reference = report.seconds, timed[0].seconds, timed[0]
        if math.isnan(mine) or math.isnan(theirs) or theirs <= 0:
            continue
        caveats = []
        if report.image_size != reference.image_size:
            caveats.append(f"at {report.image_size} px against {reference.image_size} px")
        if report.trained_on != reference.trained_on:
            caveats.append(f"on {report.trained_on} against {reference.trained_on}")
        shown = f" (not comparable: {', '.join(caveats)})" if caveats else ""
        ratio = f"{mine / theirs:.1f} times {reference.name}'s {theirs:.1f} s"
        lines.append(f"An epoch of {report.name} takes {mine:.1f} s, {ratio}{shown}.")
    contended = [
        f"{r.name} ({share:.0%})" for r in timed if r.trained_on == "cpu" and (share := cpu_share(r)) < CONTENDED
    ]
    if contended:  # one line for them all: the same caveat, said once
        lines.append(
            f"Epochs under CPU contention (the share of the CPU time its threads could have that the process used): "
            f"{names(contended)}; there the epoch time says more about the machine's load than about the network."
        )
    return lines


def cpu_share(report: ModelReport) -> float:
    """Process CPU time over the wall time × threads of the run's epochs (1: every thread busy throughout)."""
    rows = [r for r in report.history if "cpu_seconds" in r]
    wall = sum(r["seconds"] + r.get("train_eval_seconds", 0.0) for r in rows)
    threads = max(1, report.threads or usable_cpus())
    return sum(r["cpu_seconds"] for r in rows) / (wall * threads) if rows and wall > 0 else math.nan


def score_observations(reports: list[ModelReport]) -> list[str]:
    """The best test accuracy and the best boxes, every network that ties named."""
    sizes = sorted({r.image_size for r in reports if r.image_size is not None})
    seen = " and ".join(f"{s} px" for s in sizes)
    differ = f" (not like for like: the runs see {seen} images)" if len(sizes) > 1 else ""
    tied, value = leaders({r.name: overall(r.test) for r in reports})
    boxes, iou = leaders({r.name: overall(r.test, "mean_iou") for r in reports})
    lines = [f"The best test accuracy is {num(value)}, {whose(tied)}{differ}."] if tied else []
    return lines + ([f"The best mean IoU is {num(iou)}, {whose(boxes)}."] if boxes else [])
