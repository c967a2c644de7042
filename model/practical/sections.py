"""The report's section kinds: each reads its runs (through the Context) and returns what it shows.

    best-vs-last          Part 1 Q3, Q6-Q7, Q9.3: the best and the last model, eval.py's figures on the
                          three splits, the curves, the failure cases (Q4)
    long                  Q8: the same, and whether the validation loss turned up (overfitting)
    fractions             Q9.1: test accuracy by the share of the training split
    ablation              Q9.2: dropout and batch normalisation removed
    internet              Q10, Part 2 Q4, Part 3 Q9: every internet image, with or without a drawn box
    architectures         Part 2 Q1-Q2: each network, layer by layer, from the code
    comparison            Part 2 Q4, Part 3 Q8: the networks side by side, their curves and error analysis
    classic               Part 4: the OpenCV approaches in the same table, on the same loss
    loss-weights          Part 3 Q4: the weights of the two loss terms
    frozen-vs-fine-tuned  Part 3 Q7
    augment               optional: box-aware augmentation on small training sets
    reading               Part 4's TinaFace and YOLO: no run, only the student's notes (model/practical/report.py)

Observations are computed from the numbers the section shows, never written by hand.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from model.core.runtime import usable_cpus
from model.data.annotations import Problems, read_rows
from model.practical.context import (
    Content,
    Context,
    at_epoch,
    f,
    has_boxes,
    overall,
    per_label,
    train_at,
    weakest,
    weakest_label,
)
from model.practical.plan import Section, shown_path
from model.reporting import figures as drawn
from model.reporting.architecture import architecture_frame
from model.reporting.comparison import compare_runs, comparison_figures, model_galleries
from model.reporting.error_analysis import error_analysis
from model.reporting.model_report import ModelReport
from model.runs.plots import convergence_png
from model.runs.run import training_figures

OVERFITTING = 1.05  # a final validation loss this many times its lowest, with a falling training loss, is overfitting
CONTENDED = 0.6  # epochs whose process CPU time is below this share of the wall time its threads could use
HIDDEN = ("device", "note", "infer_ms_batched", "infer_ms_single")  # measured anew each time, or not a result


def commands(ctx: Context, runs: list[str], which: tuple[str, ...] = ("best",)) -> list[str]:
    """The train.py commands of the runs, as the plan runs them, then eval.py's."""
    trains = [ctx.plan.shown(ctx.planned(r), ctx.dataset) for r in runs]
    evals = [f"python eval.py {shown_path(ctx.run(r).checkpoint_path(w))}" for r in runs for w in which]
    return trains + evals


def curves(ctx: Context, section: Section, run: str) -> tuple[str, Any]:
    history = ctx.history(run)
    _, train = training_figures(history)
    path = ctx.write_figure(f"{section.id}-{run}-curves.png", convergence_png(history, ctx.label(run)))
    return (
        f"{ctx.label(run)}: loss, accuracy (and IoU) per epoch; {train} against validation; dotted: the best epoch",
        path,
    )


# ----------------------------------------------------------------------------------------------
# Part 1
# ----------------------------------------------------------------------------------------------
def best_vs_last(ctx: Context, section: Section, runs: list[str], long: bool = False) -> Content:
    content = Content(commands=commands(ctx, runs, ("last", "best")))
    content.commands += [  # Part 1 Q4: the failures, one by one
        f"python predict.py --model {shown_path(ctx.run(r).checkpoint_path('best'))} --failures-only "
        f"{shown_path(ctx.run(r).split_path('test'))}"
        for r in runs
    ]
    for run in runs:
        rows = [checkpoint_row(ctx, run, which) for which in ("best", "last")]
        content.tables.append(
            (
                f"{ctx.label(run)}: the best and the last model, as eval.py scores them (evaluation mode) on the "
                "three splits",
                pd.DataFrame(rows),
            )
        )
        content.figures.append(curves(ctx, section, run))
        failures = ctx.per_image(run, "best", "test")
        gallery = ctx.write_gallery(
            f"{section.id}-{run}-failures.jpg", drawn.gallery_jpg(failures, drawn.label_failures(failures))
        )
        if gallery is not None:
            content.figures.append(
                (
                    f"{ctx.label(run)}, best model, test split: the misclassified images (true and predicted label, "
                    "most confident first)",
                    gallery,
                )
            )
        content.observations.append(setting(ctx, run))
        content.observations += best_vs_last_observations(ctx, run, rows)
        if long:
            content.observations += overfitting(ctx, run)
    return content


def checkpoint_row(ctx: Context, run: str, which: str) -> dict[str, Any]:
    history = ctx.history(run)
    epoch = ctx.epoch(run, which)
    test = ctx.figures(run, which, "test")
    row = {
        "model": f"{which}.pth",
        "epoch": epoch,
        "train_accuracy": overall(ctx.figures(run, which, "train")),
        "val_accuracy": overall(ctx.figures(run, which, "val")),
        "val_loss": at_epoch(history, epoch).get("val_loss"),
        "test_accuracy": overall(test),
        **{f"test_{k}": v for k, v in per_label(test).items()},
    }
    if has_boxes(test):
        row["test_mean_iou"] = overall(test, "mean_iou")
    return row


def setting(ctx: Context, run: str) -> str:
    """The experiment's setting in one line: splits, schedule, and the rule that picks the best model."""
    options, trained = ctx.options(run), len(ctx.history(run))
    sizes = [len(read_rows(ctx.run(run).split_path(split), Problems(skip=True))) for split in ("train", "val", "test")]
    epochs = f"{trained} epochs" + (f" (of {options.epochs} planned)" if trained != options.epochs else "")
    schedule = "" if options.lr_schedule == "none" else f", {options.lr_schedule} schedule"
    return (
        f"{ctx.label(run)}: {sizes[0]} training, {sizes[1]} validation and {sizes[2]} test images; {epochs} of "
        f"{options.optimizer} at learning rate {options.lr:g}{schedule}, batch {options.batch_size}, "
        f"{options.image_size} px; the best model is the epoch of highest validation accuracy (ties: the lower "
        "validation loss)."
    )


def best_vs_last_observations(ctx: Context, run: str, rows: list[dict[str, Any]]) -> list[str]:
    best, last = rows
    label = ctx.label(run)
    gap = best["test_accuracy"] - last["test_accuracy"]
    lines = [
        f"{label}: the best model is epoch {best['epoch']} of {last['epoch']} (validation accuracy "
        f"{f(best['val_accuracy'])}); the last epoch's validation accuracy is {f(last['val_accuracy'])}.",
        f"{label}: on the test split the best model scores {f(best['test_accuracy'])} and the last "
        f"{f(last['test_accuracy'])}"
        + (": the same." if gap == 0 else f": the best is {f(abs(gap))} {'higher' if gap > 0 else 'lower'}."),
        f"{label}: the best model's accuracy is {f(best['train_accuracy'])} on the training split against "
        f"{f(best['val_accuracy'])} on the validation split (both in evaluation mode, dropout off, as eval.py measures "
        f"them): training minus validation, {f(best['train_accuracy'] - best['val_accuracy'])}"
        + (" (validation above training)." if best["train_accuracy"] < best["val_accuracy"] else "."),
    ]
    low = weakest(ctx.figures(run, "best", "test"))
    if low:
        lines.append(f"{label}: the weakest label on the test split (best model) is {low[0]}, {f(low[1])}.")
    return lines


def validation_path(history: list[dict[str, float]]) -> tuple[dict[str, float], dict[str, float], str] | None:
    """The epoch of lowest validation loss, the last epoch, and how far above the lowest the last ends ("" when
    within OVERFITTING of it); epochs whose validation loss is not finite left out; None without two of them."""
    finite = [r for r in history if math.isfinite(r["val_loss"])]
    if len(finite) < 2:
        return None
    low, end = min(finite, key=lambda r: r["val_loss"]), finite[-1]
    if end["val_loss"] <= OVERFITTING * low["val_loss"]:
        return low, end, ""
    above = f"{end['val_loss'] / low['val_loss'] - 1:.0%}" if low["val_loss"] > 0 else "far"
    return low, end, f"{above} above its lowest"


def overfitting(ctx: Context, run: str) -> list[str]:
    history = ctx.history(run)
    path = validation_path(history)
    if path is None:
        return []
    prefix, train = training_figures(history)
    low, end, rise = path
    rose = bool(rise)
    fell = end[f"{prefix}_loss"] < low[f"{prefix}_loss"]
    above = f"the validation loss ends {rise}"
    if rose and fell:
        verdict = f"{above} while the training loss kept falling, the mark of overfitting."
    elif rose:
        verdict = f"{above}, but the training loss did not fall meanwhile: not the usual mark of overfitting."
    else:
        verdict = f"the validation loss ends within {OVERFITTING - 1:.0%} of its lowest: no clear overfitting."
    mode = train.removeprefix("train").strip()
    return [
        f"{ctx.label(run)}: the validation loss is lowest at epoch {int(low['epoch'])} ({f(low['val_loss'], 4)}) and "
        f"ends at epoch {int(end['epoch'])} at {f(end['val_loss'], 4)}; over those epochs the training loss "
        f"{mode} goes from {f(low[f'{prefix}_loss'], 4)} to {f(end[f'{prefix}_loss'], 4)}: {verdict}"
    ]


def fractions(ctx: Context, section: Section, runs: list[str]) -> Content:
    content = Content(commands=commands(ctx, runs))
    rows: list[dict[str, Any]] = []
    for run in runs:
        test, history, epoch = ctx.figures(run), ctx.history(run), ctx.epoch(run)
        rows.append(
            {
                "run": run,
                "train_fraction": ctx.options(run).train_fraction,
                "training_images": len(read_rows(ctx.run(run).split_path("train"), Problems(skip=True))),
                "best_epoch": epoch,
                "train_accuracy": train_at(history, epoch),
                "val_accuracy": at_epoch(history, epoch).get("val_accuracy"),
                "test_accuracy": overall(test),
                **{f"test_{k}": v for k, v in per_label(test).items()},
            }
        )
    content.tables.append(
        (
            "Test accuracy by the share of the training split kept (training and validation figures at the best "
            "epoch, in evaluation mode)",
            pd.DataFrame(rows).astype({"training_images": "Int64", "best_epoch": "Int64"}),
        )
    )
    if len(rows) >= 2:
        first, last = rows[0], rows[-1]
        content.observations.append(
            f"From {first['train_fraction']:.0%} ({first['training_images']} images) to {last['train_fraction']:.0%} "
            f"({last['training_images']} images) of the training split, the test accuracy goes from "
            f"{f(first['test_accuracy'])} to {f(last['test_accuracy'])}."
        )
    for row in rows:
        low = weakest(ctx.figures(row["run"]))
        if low:
            content.observations.append(f"{row['run']}: weakest label {low[0]} ({f(low[1])}).")
    return content


def ablation(ctx: Context, section: Section, runs: list[str]) -> Content:
    content = Content(commands=commands(ctx, runs))
    rows: list[dict[str, Any]] = []
    for run in runs:
        options, history, epoch = ctx.options(run), ctx.history(run), ctx.epoch(run)
        losses = np.array([r["val_loss"] for r in history])
        rows.append(
            {
                "run": run,
                "dropout": options.dropout,
                "batchnorm": options.batchnorm,
                "best_epoch": epoch,
                "train_accuracy": train_at(history, epoch),
                "val_accuracy": at_epoch(history, epoch).get("val_accuracy"),
                "test_accuracy": overall(ctx.figures(run)),
                "val_loss_jumps": float(np.abs(np.diff(losses)).mean()) if len(losses) > 1 else math.nan,
                "val_loss_change": float(losses[-1] - losses[0]) if len(losses) > 1 else math.nan,
            }
        )
    content.tables.append(
        (
            "The reference run and its variants (val_loss_jumps: the mean absolute change of the validation loss from "
            "one epoch to the next; val_loss_change: its last epoch's value minus its first's; training figures in "
            "evaluation mode at the best epoch)",
            pd.DataFrame(rows).astype({"best_epoch": "Int64"}),
        )
    )
    histories = [(r, ctx.history(r)) for r in runs]
    path = ctx.write_figure(
        f"{section.id}-curves.png",
        drawn.history_png(
            histories, [("loss", "Loss", "loss"), ("accuracy", "Accuracy", "accuracy")], "The runs per epoch"
        ),
    )
    content.figures.append(
        ("Loss and accuracy per epoch (solid: training, dashed: validation, dotted: each run's best epoch)", path)
    )
    jumps = [r for r in rows if not math.isnan(r["val_loss_jumps"])]
    if jumps:
        steadiest, roughest = (
            min(jumps, key=lambda r: r["val_loss_jumps"]),
            max(jumps, key=lambda r: r["val_loss_jumps"]),
        )
        content.observations.append(
            f"The validation loss moves least from epoch to epoch with {steadiest['run']} "
            f"({f(steadiest['val_loss_jumps'], 4)}; {f(steadiest['val_loss_change'], 4)} from first to last epoch) "
            f"and most with {roughest['run']} ({f(roughest['val_loss_jumps'], 4)}; "
            f"{f(roughest['val_loss_change'], 4)} from first to last); a loss that falls fast moves much from epoch "
            "to epoch too, so read the jumps beside the net change and the curves."
        )
    for row in rows[1:]:
        diff = row["test_accuracy"] - rows[0]["test_accuracy"]
        side = "above" if diff > 0 else "below"
        relation = "the same as" if f(abs(diff)) == f(0.0) else f"{f(abs(diff))} {side}"
        content.observations.append(
            f"{row['run']}: test accuracy {f(row['test_accuracy'])}, {relation} {rows[0]['run']}."
        )
    return content


# ----------------------------------------------------------------------------------------------
# Internet images
# ----------------------------------------------------------------------------------------------
def internet(ctx: Context, section: Section, runs: list[str]) -> Content:
    from model.data.web import web_images

    web = ctx.web
    if not web_images(web):
        return Content(
            commands=[
                f"python predict.py --model {shown_path(ctx.run(r).checkpoint_path('best'))} web_images/images"
                for r in runs
            ],
            text=[
                "No internet images yet: put some in web_images/images/<label>/ (one folder per true label: airplane, "
                "face, motorcycle) and run `python compare.py --practical` again: this section scores each image for "
                "its label, and for its box where web_images/annotations.csv gives one (`python predict.py --annotate "
                "web_images/images` draws them with the mouse)."
            ],
        )
    content = Content(
        commands=[
            f"python predict.py --model {shown_path(ctx.run(r).checkpoint_path('best'))} web_images/images "
            "--failures-only"
            for r in runs
        ]
    )
    rows: list[dict[str, Any]] = []
    for run in runs:
        figures, results = ctx.internet(run)
        rows.append(
            {
                "run": ctx.label(run),
                "images": figures["overall"]["images"],
                "accuracy": overall(figures),
                "images_with_box": figures["overall"].get("images_with_box"),
                "mean_iou": overall(figures, "mean_iou"),
                **{f"accuracy_{k}": v for k, v in per_label(figures).items()},
            }
        )
        path = ctx.write_gallery(
            f"{section.id}-{run}-gallery.jpg", drawn.gallery_jpg(results, range(len(results.paths)))
        )
        if path is not None:
            content.figures.append((f"{ctx.label(run)} on every internet image (red caption: a failure)", path))
    content.tables.append(
        (
            "Internet images (web_images/images/; boxes scored only where web_images/annotations.csv gives one)",
            pd.DataFrame(rows).astype({"images": "Int64", "images_with_box": "Int64"}),
        )
    )
    worst, best = min(rows, key=lambda r: r["accuracy"]), max(rows, key=lambda r: r["accuracy"])
    content.observations.append(
        f"{worst['run']} gets {f(worst['accuracy'])} of the {worst['images']} internet images right; {best['run']} the "
        f"most ({f(best['accuracy'])})."
    )
    return content


# ----------------------------------------------------------------------------------------------
# Part 2 and 3: networks side by side
# ----------------------------------------------------------------------------------------------
def architectures(ctx: Context, section: Section, runs: list[str]) -> Content:
    content = Content(commands=[ctx.plan.shown(ctx.planned(r), ctx.dataset) for r in runs])
    for run in runs:
        checkpoint = ctx.run(run).checkpoint("best", mmap=True)
        frame = architecture_frame(
            checkpoint.model_name, checkpoint.record.model_options, len(checkpoint.classes), checkpoint.image_size
        )
        content.tables.append(
            (
                f"{ctx.label(run)}: {checkpoint.model_name} at {checkpoint.image_size} px, layer by layer (output "
                "shape for one image; parameters)",
                frame,
            )
        )
        features = frame[frame["part"] == "features"]
        total = int(frame["parameters"].iloc[-1])
        heads = "both heads" if checkpoint.record.model_options.get("box_head", True) else "its classification head"
        content.observations.append(
            f"{checkpoint.model_name}: {total:,} parameters ({int(frame['trainable'].iloc[-1]):,} trainable); the "
            f"features end as {features['output'].iloc[-1]} values per image, the input of {heads}."
        )
    return content


def network_reports(ctx: Context, runs: list[str], classic: bool = False):
    for run in runs:
        ctx.evaluation(run)  # the test evaluation beside each checkpoint, as eval.py writes it
    compared = compare_runs([ctx.run(r).folder for r in runs], ctx.inference, Problems(skip=False), classic=classic)
    for report, run in zip(compared.reports, runs):
        report.key, report.name = run, ctx.label(run)
    return compared


def comparison(ctx: Context, section: Section, runs: list[str]) -> Content:
    content = Content(commands=commands(ctx, runs))
    compared = network_reports(ctx, runs)
    frame = compared.frame.drop(columns=[c for c in HIDDEN if c in compared.frame.columns])
    content.tables.append(
        (
            "The networks on their test split (training figures in evaluation mode and validation figures at the best "
            "epoch; seconds per epoch: the training and validation passes)",
            frame,
        )
    )
    for caption, path in comparison_figures(ctx.sink, compared.reports, compared.classes, f"report/{section.id}/"):
        content.figures.append((caption, path))
    content.observations += loss_observations(compared.reports)
    content.observations += timing_observations(compared.reports)
    content.observations += score_observations(compared.reports)
    content.text.append(error_analysis_text(compared.reports))
    return content


def loss_observations(reports: list[ModelReport]) -> list[str]:
    """How each network's losses evolve (Part 2 Q4, Part 3 Q8): the training loss from the first epoch to the
    last, the validation loss's lowest epoch and where it ends."""
    lines = []
    for report in reports:
        path = validation_path(report.history)
        if path is None:
            continue
        prefix, train = training_figures(report.history)
        (low, last, rise), first = path, report.history[0]
        lines.append(
            f"{report.name}: the training loss {train.removeprefix('train').strip()} goes from "
            f"{f(first[f'{prefix}_loss'])} to {f(last[f'{prefix}_loss'])} over {len(report.history)} epochs; the "
            f"validation loss is lowest at epoch {int(low['epoch'])} ({f(low['val_loss'])}) and ends at "
            f"{f(last['val_loss'])}" + (f", {rise}." if rise else ".")
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
        mine, theirs = _seconds(report), _seconds(reference)
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
    for report in timed:
        share = cpu_share(report)
        if report.trained_on == "cpu" and share < CONTENDED:
            lines.append(
                f"{report.name}'s epochs ran under CPU contention: the process used {share:.0%} of the CPU time its "
                f"threads could have, so its epoch time says more about the machine's load than about the network."
            )
    return lines


def _seconds(report: ModelReport) -> float:
    return float(np.mean([r["seconds"] for r in report.history])) if report.history else math.nan


def cpu_share(report: ModelReport) -> float:
    """Process CPU time over the wall time × threads of the run's epochs (1: every thread busy throughout)."""
    rows = [r for r in report.history if "cpu_seconds" in r]
    wall = sum(r["seconds"] + r.get("train_eval_seconds", 0.0) for r in rows)
    if not rows or wall <= 0:
        return math.nan
    return sum(r["cpu_seconds"] for r in rows) / (wall * max(1, report.threads or usable_cpus()))


def score_observations(reports: list[ModelReport]) -> list[str]:
    lines = []
    best = max(reports, key=lambda r: _test(r)["accuracy"])
    sizes = sorted({r.image_size for r in reports if r.image_size is not None})
    seen = " and ".join(f"{size} px" for size in sizes)
    differ = f" (not like for like: the runs see {seen} images)" if len(sizes) > 1 else ""
    lines.append(f"The best test accuracy is {best.name}'s, {f(_test(best)['accuracy'])}{differ}.")
    if "mean_iou" in _test(best):
        boxes = max(reports, key=lambda r: _test(r).get("mean_iou", -1))
        lines.append(f"The best boxes are {boxes.name}'s: mean IoU {f(_test(boxes)['mean_iou'])}.")
    for report in reports:
        low = weakest_label(
            {k: v["accuracy"] for k, v in (report.test or {}).get("per_label", {}).items() if v["images"]}
        )
        if low:
            lines.append(f"{report.name}: weakest label {low[0]} ({f(low[1])}).")
    return lines


def _test(report: ModelReport) -> dict[str, Any]:
    return (report.test or {}).get("overall", {})


def classic(ctx: Context, section: Section, runs: list[str]) -> Content:
    content = Content(
        commands=[
            *commands(ctx, runs),
            f"python compare.py {' '.join(shown_path(ctx.run(r).folder) for r in runs)} --classic",
        ]
    )
    compared = network_reports(ctx, runs, classic=True)
    keep = [
        "model",
        "network",
        "parameters",
        "test_loss",
        "test_class_loss",
        "test_box_loss",
        "test_accuracy",
        "test_mean_iou",
        "test_iou_at_0.5",
    ]
    frame = compared.frame
    keep += [c for c in frame.columns if c.startswith(("accuracy_", "iou_"))]
    content.tables.append(
        (
            f"Networks and classic OpenCV approaches on the test split of {runs[0]}, on the same loss (the run's "
            "cross-entropy, on the classic methods' calibrated scores, and its box loss on their boxes)",
            frame[keep],
        )
    )
    for report in compared.reports:
        if report.note:
            content.text.append(
                f"{report.name}: {report.note}; its class loss uses P(true label | its predicted label), from "
                "held-out predictions on that training split."
            )
    for report in compared.reports[len(runs) :]:
        content.figures += model_galleries(ctx.sink, report, f"report/{section.id}/")
    networks, classics = compared.reports[: len(runs)], compared.reports[len(runs) :]
    if networks and classics:
        content.observations += classic_observations(networks, classics)
    content.text.append(error_analysis_text(compared.reports))
    return content


def classic_observations(networks: list[ModelReport], classics: list[ModelReport]) -> list[str]:
    """The best network against the best classic approach, figure by figure, each with its winner."""
    lines = []
    for key, what in (("accuracy", "test accuracy"), ("mean_iou", "mean IoU")):  # higher is better for both
        scored = [r for r in networks if not math.isnan(_test(r).get(key, math.nan))]
        old = [r for r in classics if not math.isnan(_test(r).get(key, math.nan))]
        if scored and old:
            net, classic = (max(group, key=lambda r: _test(r)[key]) for group in (scored, old))
            a, b = _test(net)[key], _test(classic)[key]
            winner = "the network" if a > b else "the classic approach" if b > a else "neither"
            lines.append(
                f"Best {what}: network {net.name} {f(a)} against classic {classic.name} {f(b)}; {winner} is ahead"
                + (f" by {f(abs(a - b))}." if a != b else ".")
            )
    losses = [(r, (r.test or {}).get("loss", math.nan)) for r in networks + classics]
    losses = [(r, value) for r, value in losses if not math.isnan(value)]
    if losses:
        lowest, value = min(losses, key=lambda pair: pair[1])
        lines.append(f"The lowest loss (the run's own loss, for every row) is {lowest.name}'s, {f(value)}.")
    return lines


def loss_weights(ctx: Context, section: Section, runs: list[str]) -> Content:
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
    content.tables.append(("The weights of the class and box terms", pd.DataFrame(rows)))
    best = max(rows, key=lambda r: -1 if math.isnan(r["test_mean_iou"]) else r["test_mean_iou"])
    accurate = max(rows, key=lambda r: r["test_accuracy"])
    content.observations += [
        f"The best boxes come with label weight {best['label_weight']:g} and box weight {best['box_weight']:g} "
        f"({best['run']}): mean IoU {f(best['test_mean_iou'])}, test accuracy {f(best['test_accuracy'])}.",
        f"The best test accuracy comes with box weight {accurate['box_weight']:g} ({accurate['run']}: "
        f"{f(accurate['test_accuracy'])}).",
    ]
    return content


def frozen_vs_fine_tuned(ctx: Context, section: Section, runs: list[str]) -> Content:
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
    content.tables.append(
        ("A frozen and a fine-tuned ResNet-18 backbone", pd.DataFrame(rows).astype({"trainable_parameters": "Int64"}))
    )
    if len(rows) == 2:
        frozen, tuned = sorted(rows, key=lambda r: r["backbone"] != "frozen")
        content.observations.append(
            f"Fine-tuning trains {tuned['trainable_parameters']:,} parameters instead of "
            f"{frozen['trainable_parameters']:,}; "
            f"test accuracy {f(tuned['test_accuracy'])} against {f(frozen['test_accuracy'])}, mean IoU "
            f"{f(tuned['test_mean_iou'])} against {f(frozen['test_mean_iou'])}."
        )
        same = frozen["image_size"] == tuned["image_size"] and frozen["trained_on"] == tuned["trained_on"]
        content.observations.append(
            f"An epoch takes {f(tuned['seconds_per_epoch'], 2)} s fine-tuned against "
            f"{f(frozen['seconds_per_epoch'], 2)} s frozen"
            + (
                f" (both at {frozen['image_size']} px on {frozen['trained_on'] or 'the same device'})."
                if same
                else " (not comparable: the runs differ in image size or device)."
            )
        )
        if not frozen["pretrained"]:
            content.observations.append(
                "Without ImageNet weights the frozen backbone keeps its random initial weights: only the heads learn, "
                "which is not the transfer learning Part 3 Q7 asks about; train with the weights to compare them."
            )
    return content


def augment(ctx: Context, section: Section, runs: list[str]) -> Content:
    content = Content(commands=commands(ctx, runs))
    rows: list[dict[str, Any]] = [
        {
            "run": run,
            "train_fraction": ctx.options(run).train_fraction,
            "augment": ctx.options(run).augment,
            "test_accuracy": overall(ctx.figures(run)),
            "test_mean_iou": overall(ctx.figures(run), "mean_iou"),
        }
        for run in runs
    ]
    content.tables.append(
        ("Augmentation policies on small training sets (one seed; the README's table has three)", pd.DataFrame(rows))
    )
    for fraction in sorted({r["train_fraction"] for r in rows}):
        group = {r["augment"]: r for r in rows if r["train_fraction"] == fraction}
        for policy in ("light", "strong"):
            if "off" in group and policy in group:
                content.observations.append(
                    f"{fraction:.0%} of the training split: --augment {policy} changes the test accuracy by "
                    f"{group[policy]['test_accuracy'] - group['off']['test_accuracy']:+.3f} and the mean IoU by "
                    f"{group[policy]['test_mean_iou'] - group['off']['test_mean_iou']:+.3f}."
                )
    return content


BUILDERS: dict[str, Callable[[Context, Section, list[str]], Content]] = {
    "best-vs-last": best_vs_last,
    "long": lambda c, s, r: best_vs_last(c, s, r, long=True),
    "fractions": fractions,
    "ablation": ablation,
    "internet": internet,
    "architectures": architectures,
    "comparison": comparison,
    "loss-weights": loss_weights,
    "frozen-vs-fine-tuned": frozen_vs_fine_tuned,
    "classic": classic,
    "augment": augment,
}
