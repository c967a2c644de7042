"""Part 1 Q1-Q8 of the practical: the dataset and where the code lives (Q1), the template's training and
evaluation (Q2-Q3), its failures (Q4), plots (Q5), the best model (Q6-Q7), more epochs
(Q8). (Q9: variants.py; Q10: internet.py.)

    dataset        Q1: images and boxes per class, their sizes, examples with their boxes, the split; where each
                   question's code lives (doc/design.md's table)
    training       Q2: the command and each epoch's figures
    evaluation     Q3: eval.py's printout of the last model, character for character, on the three splits
    failures       Q4: the misclassified test images, drawn as predict.py --failures-only draws them
    curves         Q5: loss and accuracy per epoch
    best-model     Q6: the rule that chooses best.pth, and the epoch it chose
    best-vs-last   Q7, Q9.3: the best and the last model on the three splits (and the curves, if not shown yet)
    long           Q8: the same over more epochs, and whether the validation loss turned up (overfitting)
"""

from __future__ import annotations

import functools
import math
import statistics
from collections import Counter
from typing import Any

import numpy as np

from model import config
from model.annotations import Problems, read_annotations, read_rows
from model.evaluate import SET_NAMES
from model.images import stored_size
from model.metrics import ImageResults, accuracy_block
from model.practical.plan import Section, shown_path
from model.practical.report import Content, Context
from model.practical.sections.common import (
    at_epoch,
    builder,
    checkpoint_row,
    code_map,
    commands,
    curves,
    frame,
    leaders,
    names,
    num,
    overall,
    per_label,
    sample_column,
    setting,
    weakest,
    where,
)
from model.reporting import figures as drawn
from model.runs import best_epoch, improves, training_figures

OVERFITTING = 1.05  # a final validation loss this many times its lowest, with a falling training loss, is overfitting
VERDICT_EPOCHS = 5  # fewer epochs tell nothing of overfitting: a step or two of a noisy curve
DATASET_EXAMPLES = 2  # images per class drawn with their box in Q1


@builder("dataset")
def dataset(ctx: Context, section: Section, runs: list[str]) -> Content:
    """Q1: the dataset as the runs read it (images and boxes per class with their sizes, a few images with their box,
    the split of the first run), and where each question's code lives."""
    root = ctx.dataset
    assert root is not None
    rows = read_annotations(root, Problems(skip=True))
    text = (
        f"The dataset is {shown_path(root)}: `images/<label>/<file>` and `annotations/<label>.csv`, one row per image, "
        "`filename,startX,startY,endX,endY,label` in pixels of the original image (no header). An image is known by "
        "`label/filename`: file names repeat across classes. The class index is the sorted label."
    )
    content = Content(commands=[f"ls {shown_path(root)}/images {shown_path(root)}/annotations"], text=[text])
    by_class: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        size = stored_size(root / "images" / row.label / row.filename)
        by_class.setdefault(row.label, []).append({"key": row.key, "image": size, "box": row.box})
    table = [class_row(label, sizes) for label, sizes in sorted(by_class.items())]
    table.append(class_row("all", [s for sizes in by_class.values() for s in sizes]))
    shares = "sizes in pixels, as min / median / max; box share: the median share of its image's area the box covers"
    content.tables.append((f"Images and boxes per class ({shares})", frame(table, ("images", "boxes"))))
    content.tables.append((f"The split of {runs[0]}: images per class", split_table(ctx, runs[0])))
    content.tables.append(("Where each question's code lives (doc/design.md): the file and the function", code_map()))
    sizes = ctx.split_sizes(runs[0])
    content.observations.append(
        f"{len(rows)} images, one box each, in {len(by_class)} classes: "
        + ", ".join(f"{r['label']} {r['images']}" for r in table[:-1])
        + f". {runs[0]}'s split (the template's: shuffled with seed 0, cut at 80 % and 90 %): {sizes['train']} "
        f"training, {sizes['val']} validation and {sizes['test']} test images."
    )
    examples = [row for label in sorted(by_class) for row in [r for r in rows if r.label == label][:DATASET_EXAMPLES]]
    caption = f"The first {DATASET_EXAMPLES} images of each class with their box (blue)"
    draw = lambda: drawn.rows_gallery_jpg(root, examples)  # noqa: E731
    ctx.figure(content, f"{section.id}-examples.jpg", caption, draw, [r.key for r in examples])
    return content


def class_row(label: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One class's images and boxes: their count and their sizes (min / median / max)."""
    widths, heights = [r["image"][0] for r in rows], [r["image"][1] for r in rows]
    box_widths, box_heights = [r["box"][2] - r["box"][0] for r in rows], [r["box"][3] - r["box"][1] for r in rows]
    shares = [bw * bh / (w * h) for bw, bh, w, h in zip(box_widths, box_heights, widths, heights)]
    spread = lambda values: " / ".join(f"{v:.0f}" for v in (min(values), statistics.median(values), max(values)))  # noqa: E731
    return {
        "label": label, "images": len({r["key"] for r in rows}), "boxes": len(rows), "image width": spread(widths),
        "image height": spread(heights), "box width": spread(box_widths), "box height": spread(box_heights),
        "box share": f"{statistics.median(shares):.0%}",
    }  # fmt: skip


def split_table(ctx: Context, run: str) -> Any:
    """The run's training, validation and test splits: images per class, and in all."""
    found = []
    for split, name in (("train", "training"), ("val", "validation"), ("test", "test")):
        labels = Counter(r.label for r in read_rows(ctx.run(run).split_path(split), Problems(skip=True)))
        found.append({"split": name, **dict(sorted(labels.items())), "all": sum(labels.values())})
    table = frame(found).fillna(0)
    return table.astype({c: "Int64" for c in table.columns if c != "split"})


@builder("training")
def training(ctx: Context, section: Section, runs: list[str]) -> Content:
    """Q2: the command, the setting, and the figures of each epoch as train.py prints them."""
    content = Content(commands=commands(ctx, runs, evaluate=False))
    for run in runs:
        history, label = ctx.history(run), ctx.label(run)
        prefix, _ = training_figures(history)
        rows = [
            {"epoch": int(r["epoch"]), sample_column(history, "loss"): r[f"{prefix}_loss"],
             sample_column(history): r[f"{prefix}_accuracy"], "val_loss": r["val_loss"],
             "val_accuracy": r["val_accuracy"], "seconds": r["seconds"]}
            for r in history
        ]  # fmt: skip
        content.tables.append((f"{label}: each epoch as train.py prints it", frame(rows, ("epoch",))))
        if ctx.once(f"setting:{run}") is None:
            content.observations.append(setting(ctx, run))
        last = history[-1]
        content.observations.append(
            f"{label}: after its last epoch ({int(last['epoch'])}) the training sample's accuracy is "
            f"{num(last[f'{prefix}_accuracy'])} and the validation accuracy {num(last['val_accuracy'])}; last.pth "
            "holds that model."
        )
    return content


@builder("evaluation")
def evaluation(ctx: Context, section: Section, runs: list[str]) -> Content:
    """Q3: eval.py on the last model: the course template's printout, then the same figures as a table."""
    content = Content(commands=[f"python eval.py {shown_path(ctx.run(r).checkpoint_path('last'))}" for r in runs])
    for run in runs:
        label, sets = ctx.label(run), {split: ctx.figures(run, "last", split) for split in SET_NAMES}
        block = [line for split, figures in sets.items() for line in accuracy_block(SET_NAMES[split], figures)]
        content.text.append(f"{label}, last.pth, as eval.py prints it:\n\n```text\n" + "\n".join(block) + "\n```")
        rows = [
            {"split": SET_NAMES[s], "images": f["overall"]["images"], "accuracy": overall(f), **per_label(f)}
            for s, f in sets.items()
        ]
        content.tables.append((f"{label}, last.pth: accuracy per split and per label", frame(rows, ("images",))))
        low = weakest(sets["test"])
        content.observations.append(
            f"{label}: the last model's accuracy is {num(overall(sets['train']))} on the training split, "
            f"{num(overall(sets['val']))} on the validation split and {num(overall(sets['test']))} on the test split"
            + (f"; its weakest label on the test split is {low[0]} ({num(low[1])})." if low else ".")
        )
    return content


@builder("failures")
def failures(ctx: Context, section: Section, runs: list[str]) -> Content:
    """Q4: the misclassified test images of the last model, drawn as predict.py --failures-only draws them."""
    paths = [(shown_path(ctx.run(r).checkpoint_path("last")), shown_path(ctx.run(r).split_path("test"))) for r in runs]
    content = Content(commands=[f"python predict.py --model {model} --failures-only {test}" for model, test in paths])
    for run in runs:
        failure_cases(ctx, content, run, "last")
    return content


def failure_cases(ctx: Context, content: Content, run: str, which: str) -> None:
    """The run's misclassified test images (its ``which``.pth) as a gallery, and its most frequent mistakes."""
    results, label = ctx.per_image(run, which), ctx.label(run)
    wrong, total = drawn.label_failures(results)
    if not wrong:
        content.text.append(f"{label}: the {which} model gets every test image right: no failure to show.")
        return
    caption = f"{label}, {which}.pth: {drawn.failures_caption(results, wrong, total)}"
    draw = functools.partial(drawn.gallery_jpg, results, wrong)
    name = f"{ctx.section.id if ctx.section else 'x'}-{run}-failures.jpg"
    ctx.figure(content, name, caption, draw, ctx.evaluation(run, which)["identity"], wrong)
    content.observations.append(
        f"{label}: {total} of {len(results.paths)} test images misclassified; {mistakes(results)}."
    )


def mistakes(results: ImageResults) -> str:
    """The most frequent mistake ("airplane taken for face (3)"), or the mistakes that tie for the most."""
    wrong = np.flatnonzero(results.predicted_labels != results.true_labels)
    said = lambda label: results.classes[label]  # noqa: E731
    pairs = Counter(f"{said(results.true_labels[i])} taken for {said(results.predicted_labels[i])}" for i in wrong)
    tied, most = leaders(dict(pairs.most_common()))
    if len(tied) == 1:
        return f"the most frequent mistake: {tied[0]} ({most:.0f})"
    return f"the most frequent mistakes, tied at {most:.0f} each: {names(tied)}"


@builder("curves")
def curves_section(ctx: Context, section: Section, runs: list[str]) -> Content:
    """Q5: loss and accuracy per epoch, the best epoch marked."""
    plots = [shown_path(ctx.run(r).folder / config.PLOT_FILE) for r in runs]
    content = Content(text=[f"train.py draws the same curves after each epoch, in {plot}." for plot in plots])
    for run in runs:
        ctx.once(f"curves:{run}")
        curves(ctx, content, run)
        history = ctx.history(run)
        prefix, _ = training_figures(history)
        first, last = history[0], history[-1]
        content.observations.append(
            f"{ctx.label(run)}: from epoch 1 to {int(last['epoch'])} the training sample's loss goes from "
            f"{num(first[f'{prefix}_loss'], 4)} to {num(last[f'{prefix}_loss'], 4)} and the validation loss from "
            f"{num(first['val_loss'], 4)} to {num(last['val_loss'], 4)}; the validation accuracy from "
            f"{num(first['val_accuracy'])} to {num(last['val_accuracy'])} (best epoch {best_epoch(history)})."
        )
    return content


@builder("best-model")
def best_model(ctx: Context, section: Section, runs: list[str]) -> Content:
    """Q6: the rule that picks best.pth (the code's own), and the epoch it picked."""
    rule = (improves.__doc__ or "").strip().splitlines()[0]
    text = f"The rule ({where('improves')}): {rule} train.py saves best.pth at each epoch that is so."
    content = Content(commands=commands(ctx, runs), text=[text])
    for run in runs:
        history = ctx.history(run)
        row = at_epoch(history, best_epoch(history))
        ties = [str(int(r["epoch"])) for r in history if r["val_accuracy"] == row["val_accuracy"] and r is not row]
        same = "reach the same validation accuracy with a higher validation loss"
        tie = f"; epochs {', '.join(ties)} {same}" if ties else ""
        content.observations.append(
            f"{ctx.label(run)}: best.pth holds epoch {int(row['epoch'])} of {len(history)} (validation accuracy "
            f"{num(row['val_accuracy'])}, validation loss {num(row['val_loss'], 4)}){tie}."
        )
    return content


@builder("best-vs-last")
def best_vs_last(ctx: Context, section: Section, runs: list[str], long: bool = False) -> Content:
    """Q7, Q9.3: the best and the last model as eval.py scores them on the three splits, side by side."""
    content = Content(commands=commands(ctx, runs, ("last", "best")))
    for run in runs:
        if twin := ctx.twin(run, "best-vs-last"):
            same = f"{run} trained with the same options as {twin[0]} at this scale, to the same numbers"
            content.text.append(ctx.pointer(twin[1], same))
            continue
        ctx.once(f"best-vs-last:{run}")
        rows = [checkpoint_row(ctx, run, which) for which in ("best", "last")]
        scored = "as eval.py scores them on the whole splits (evaluation mode)"
        content.tables.append((f"{ctx.label(run)}: the best and the last model, {scored}", frame(rows, ("epoch",))))
        if earlier := ctx.once(f"curves:{run}"):
            content.text.append(ctx.pointer(earlier, f"The curves of {ctx.label(run)}"))
        else:
            curves(ctx, content, run)
        if ctx.once(f"setting:{run}") is None:
            content.observations.append(setting(ctx, run))
        content.observations += best_vs_last_observations(ctx.label(run), *rows)
        if long:
            content.observations.append(overfitting(ctx, run))
    return content


def best_vs_last_observations(label: str, best: dict[str, Any], last: dict[str, Any]) -> list[str]:
    gap = best["test_accuracy"] - last["test_accuracy"]
    fit = (
        f"{label}: the best model's accuracy is {num(best['train_accuracy'])} on the training split against "
        f"{num(best['val_accuracy'])} on the validation split: training minus validation, "
        f"{num(best['train_accuracy'] - best['val_accuracy'])}"
        + (" (validation above training)." if best["train_accuracy"] < best["val_accuracy"] else ".")
    )
    if best["epoch"] == last["epoch"]:
        return [
            f"{label}: the best model is the last, epoch {last['epoch']}: best.pth and last.pth hold the same model, "
            "so there is no best against last to compare here (more epochs would part them).",
            fit,
        ]
    same = num(gap) in (num(0.0), num(-0.0))
    return [
        f"{label}: the best model is epoch {best['epoch']} of {last['epoch']} (validation accuracy "
        f"{num(best['val_accuracy'])}); the last epoch's validation accuracy is {num(last['val_accuracy'])}.",
        f"{label}: on the test split the best model scores {num(best['test_accuracy'])} and the last "
        f"{num(last['test_accuracy'])}"
        + (": the same." if same else f": the best is {num(abs(gap))} {'higher' if gap > 0 else 'lower'}."),
        fit,
    ]


@builder("long")
def long_run(ctx: Context, section: Section, runs: list[str]) -> Content:
    """Q8: best against last over more epochs, and the overfitting verdict where the epochs support one."""
    return best_vs_last(ctx, section, runs, long=True)


def validation_path(history: list[dict[str, float]]) -> tuple[dict[str, float], dict[str, float], str] | None:
    """The epoch of lowest validation loss, the last epoch, and how far above the lowest the last ends ("" when within
    OVERFITTING of it); epochs whose validation loss is not finite left out; None without two of them."""
    finite = [r for r in history if math.isfinite(r["val_loss"])]
    if len(finite) < 2:
        return None
    low, end = min(finite, key=lambda r: r["val_loss"]), finite[-1]
    if end["val_loss"] <= OVERFITTING * low["val_loss"]:
        return low, end, ""
    rise = f"{end['val_loss'] / low['val_loss'] - 1:.0%}" if low["val_loss"] > 0 else "far"
    return low, end, f"{rise} above its lowest"


def overfitting(ctx: Context, run: str) -> str:
    history, label = ctx.history(run), ctx.label(run)
    path = validation_path(history)
    if path is None or len(history) < VERDICT_EPOCHS:
        return (
            f"{label}: {len(history)} epoch(s) tell nothing of overfitting (a step or two of a noisy curve): train for "
            "more epochs to see whether the validation loss turns up while the training loss falls."
        )
    prefix, _ = training_figures(history)
    low, end, rise = path
    fell = end[f"{prefix}_loss"] < low[f"{prefix}_loss"]
    if rise and fell:
        verdict = f"the validation loss ends {rise} while the training loss kept falling, the mark of overfitting."
    elif rise:
        verdict = f"the validation loss ends {rise}, but the training loss did not fall meanwhile: not the usual mark"
        verdict += " of overfitting."
    else:
        verdict = f"the validation loss ends within {OVERFITTING - 1:.0%} of its lowest: no clear overfitting."
    return (
        f"{label}: the validation loss is lowest at epoch {int(low['epoch'])} ({num(low['val_loss'], 4)}) and ends at "
        f"epoch {int(end['epoch'])} at {num(end['val_loss'], 4)}; over those epochs the training sample's loss goes "
        f"from {num(low[f'{prefix}_loss'], 4)} to {num(end[f'{prefix}_loss'], 4)}: {verdict}"
    )
