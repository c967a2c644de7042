"""Part 2 of the practical (and the comparisons of Part 3 Q8): each network on its own, then side by side.

network      Q1-Q3: one network, layer by layer from the code, its setting, its best and last model, its curves
comparison   Q4 (and Part 3 Q8): the networks side by side on their test splits: one table, the curves of
             every model, per-label figures, confusion matrices, the losses' evolution, epoch times, an error
             analysis; with box heads, the detection view too (accuracy against the IoU threshold, COCO mAP)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from model.device import usable_cpus
from model.metrics import IOU_THRESHOLDS, accuracy_by_iou, average_precision
from model.practical.context import Content, Context, num, overall
from model.practical.plan import Section
from model.practical.sections.common import (
    builder,
    checkpoint_row,
    commands,
    curves,
    frame,
    leaders,
    names,
    pointer,
    setting,
    whose,
)
from model.practical.sections.part1 import validation_path
from model.reporting.architecture import architecture_frame
from model.reporting.comparison import FAILURES, Figure, comparison_figures, model_galleries
from model.reporting.error_analysis import error_analysis
from model.reporting.model_report import ModelReport, comparison_frame
from model.runs import training_figures

CONTENDED = 0.6  # epochs whose process CPU time is below this share of the wall time its threads could use
HIDDEN = ("device", "note", "infer_ms_batched", "infer_ms_single")  # measured anew each time, or not a result


@builder("network")
def network(ctx: Context, section: Section, runs: list[str]) -> Content:
    """Q1-Q3: the network of each run, layer by layer (from the code, at the run's image size), and its results."""
    content = Content(commands=commands(ctx, runs, ("last", "best")))
    for run in runs:
        checkpoint = ctx.run(run).checkpoint("best", mmap=True)
        layers = architecture_frame(
            checkpoint.model_name, checkpoint.record.model_options, len(checkpoint.classes), checkpoint.image_size
        )
        content.tables.append(
            (
                f"{ctx.label(run)}: {checkpoint.model_name} at {checkpoint.image_size} px, layer by layer (output "
                "shape for one image; parameters)",
                layers,
            )
        )
        rows = [checkpoint_row(ctx, run, which) for which in ("best", "last")]
        content.tables.append(
            (f"{ctx.label(run)}: the best and the last model on the whole splits", frame(rows, ("epoch",)))
        )
        figure = curves(ctx, run)
        if figure is not None:
            content.figures.append(figure)
        features = layers[layers["part"] == "features"]
        total, trainable = int(layers["parameters"].iloc[-1]), int(layers["trainable"].iloc[-1])
        heads = "both heads" if checkpoint.record.model_options.get("box_head", True) else "its classification head"
        content.observations += [
            setting(ctx, run),
            f"{ctx.label(run)}: {total:,} parameters ({trainable:,} trainable); the features end as "
            f"{features['output'].iloc[-1]} values per image, the input of {heads}.",
            f"{ctx.label(run)}: best model (epoch {rows[0]['epoch']}) at {num(rows[0]['test_accuracy'])} on the test "
            f"split, {num(rows[0]['train_accuracy'])} on the training split.",
        ]
    return content


def network_reports(ctx: Context, runs: list[str]) -> list[ModelReport]:
    """Each run's best model as the comparison reads it: its stored test evaluation, history and facts (no second
    inference pass)."""
    reports = []
    for run in runs:
        stored = ctx.evaluation(run)
        figures = stored["figures"]
        facts = ctx.run(run).facts()
        last = (facts.get("resumed") or [facts])[-1]  # where its latest epochs ran
        history = ctx.history(run)
        reports.append(
            ModelReport(
                ctx.label(run),
                stored["model"]["name"],
                str(ctx.inference.device),
                facts.get("parameters"),
                facts.get("trainable_parameters"),
                history,
                ctx.options(run).image_size,
                str(last.get("device", "")),
                last.get("threads"),
                int(stored["epoch"]),
                {**figures, "box_loss": figures.get("box_loss", math.nan)},
                ctx.per_image(run),
                key=run,
                identity=str(stored["identity"]),
            )
        )
    return reports


@builder("comparison")
def comparison(ctx: Context, section: Section, runs: list[str]) -> Content:
    """Q4 (and Part 3 Q8): the networks side by side."""
    content = Content(commands=commands(ctx, runs))
    reports = network_reports(ctx, runs)
    classes = ctx.run(runs[0]).checkpoint("best", mmap=True).classes
    table = comparison_frame(reports, classes)
    content.tables.append(
        (
            "The networks on their test split (training-sample and validation figures at the best epoch; seconds per "
            "epoch: the training and validation passes)",
            table.drop(columns=[c for c in HIDDEN if c in table.columns]),
        )
    )
    for figure in comparison_figures(reports, classes, f"{section.id}-"):
        add_figure(ctx, content, figure)
    content.observations += loss_observations(reports) + timing_observations(reports) + score_observations(reports)
    if any(r.results is not None and r.results.iou is not None for r in reports):
        detection_view(ctx, content, reports)
    add_galleries(ctx, section, content, reports)
    content.text.append(error_analysis_text(reports))
    for report in reports:
        ctx.once(f"error-analysis:{report.key}")
    return content


def add_figure(ctx: Context, content: Content, figure: Figure) -> None:
    path = ctx.write_figure(figure.name, figure.draw, figure.caption, *figure.inputs)
    if path is not None:
        content.figures.append((figure.caption, path))


def add_galleries(ctx: Context, section: Section, content: Content, reports: list[ModelReport]) -> None:
    """Each network's galleries, or a pointer to the section that shows them already."""
    prefix = f"{section.id}-"
    for report in reports:
        galleries = model_galleries(report, prefix)
        if not any(g.name.startswith(f"{prefix}{FAILURES}") for g in galleries):
            content.text.append(f"{report.name}: every test image has the right label: no misclassified image to show.")
        for figure in galleries:
            earlier = ctx.once(f"gallery:{figure.name.removeprefix(prefix)}")
            if earlier is None:
                add_figure(ctx, content, figure)
            else:
                content.text.append(pointer(earlier, f"The gallery of {report.name}"))


def detection_view(ctx: Context, content: Content, reports: list[ModelReport]) -> None:
    """Accuracy against the IoU threshold and COCO's average precision, per network with a box head."""
    rows: list[dict[str, Any]] = []
    for report in reports:
        if report.results is None or report.results.iou is None:
            continue
        accuracy = accuracy_by_iou(report.results)
        ap = average_precision(report.results)
        row: dict[str, Any] = {"model": report.name, "mAP@[.5:.95]": ap.get("map"), "AP50": ap.get("map_50")}
        row["AP75"] = ap.get("map_75")
        row.update({f"acc@{t:.2f}": a for t, a in zip(IOU_THRESHOLDS, accuracy)})
        rows.append(row)
    content.tables.append(
        (
            "The detection view: COCO's mean average precision (torchmetrics; one box per image, scored by its "
            "confidence) and the detection accuracy (right label and IoU >= t) at each IoU threshold t",
            pd.DataFrame(rows),
        )
    )
    content.observations += detection_observations(rows)


def detection_observations(rows: list[dict[str, Any]]) -> list[str]:
    """The best mAP and the best detection accuracy at IoU 0.75, every network that ties named."""
    by_map = {r["model"]: math.nan if r["mAP@[.5:.95]"] is None else r["mAP@[.5:.95]"] for r in rows}
    tied, value = leaders(by_map)
    if not tied:
        return []
    first = next(r for r in rows if r["model"] == tied[0])
    lines = [
        f"The best mAP@[.5:.95] is {num(value)}, {whose(tied)}"
        + (f" (AP50 {num(first['AP50'])}, AP75 {num(first['AP75'])})." if len(tied) == 1 else ".")
    ]
    strict, value = leaders({r["model"]: r["acc@0.75"] for r in rows})
    if value == 0:
        lines.append("At IoU 0.75 no network gets a single test image right (right label and a box that close).")
    elif strict:
        lines.append(f"At IoU 0.75 the best detection accuracy is {num(value)}, {whose(strict)}.")
    return lines


def loss_observations(reports: list[ModelReport]) -> list[str]:
    """How each network's losses evolve (Part 2 Q4, Part 3 Q8): the training loss from the first epoch to the
    last, the validation loss's lowest epoch and where it ends."""
    lines = []
    for report in reports:
        path = validation_path(report.history)
        if path is None:
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
    return "**Error analysis** (test split):\n\n" + "\n".join(
        error_analysis(r.name, r.results).replace("## ", "#### ", 1) for r in reports
    )


def timing_observations(reports: list[ModelReport]) -> list[str]:
    """Epoch-time ratios, and the comparisons they must not be read as: another device or image size, or
    epochs that ran while other processes took the CPU (process CPU time far below the wall time)."""
    timed = [r for r in reports if r.history]
    if not timed:
        return []
    reference, lines = timed[0], []
    for report in timed[1:]:
        mine, theirs = seconds(report), seconds(reference)
        if math.isnan(mine) or math.isnan(theirs) or theirs <= 0:
            continue
        caveats = []
        if report.image_size != reference.image_size:
            caveats.append(f"at {report.image_size} px against {reference.image_size} px")
        if report.trained_on != reference.trained_on:
            caveats.append(f"on {report.trained_on} against {reference.trained_on}")
        shown = f" (not comparable: {', '.join(caveats)})" if caveats else ""
        lines.append(
            f"An epoch of {report.name} takes {mine:.1f} s, {mine / theirs:.1f} times {reference.name}'s {theirs:.1f} "
            f"s{shown}."
        )
    shares = {r.name: cpu_share(r) for r in timed if r.trained_on == "cpu"}
    contended = [f"{name} ({share:.0%})" for name, share in shares.items() if share < CONTENDED]
    if contended:  # one line for them all: the same caveat, said once
        lines.append(
            f"Epochs under CPU contention (the share of the CPU time its threads could have that the process used): "
            f"{names(contended)}; there the epoch time says more about the machine's load than about the network."
        )
    return lines


def seconds(report: ModelReport) -> float:
    return float(np.mean([r["seconds"] for r in report.history])) if report.history else math.nan


def cpu_share(report: ModelReport) -> float:
    """Process CPU time over the wall time × threads of the run's epochs (1: every thread busy throughout)."""
    rows = [r for r in report.history if "cpu_seconds" in r]
    wall = sum(r["seconds"] + r.get("train_eval_seconds", 0.0) for r in rows)
    if not rows or wall <= 0:
        return math.nan
    return sum(r["cpu_seconds"] for r in rows) / (wall * max(1, report.threads or usable_cpus()))


def score_observations(reports: list[ModelReport]) -> list[str]:
    """The best test accuracy and the best boxes, every network that ties named."""
    sizes = sorted({r.image_size for r in reports if r.image_size is not None})
    seen = " and ".join(f"{size} px" for size in sizes)
    differ = f" (not like for like: the runs see {seen} images)" if len(sizes) > 1 else ""
    tied, value = leaders({r.name: overall(r.test or {}) for r in reports})
    lines = [f"The best test accuracy is {num(value)}, {whose(tied)}{differ}."] if tied else []
    boxes, iou = leaders({r.name: overall(r.test or {}, "mean_iou") for r in reports})
    if boxes:
        lines.append(f"The best mean IoU is {num(iou)}, {whose(boxes)}.")
    return lines
