"""Part 1 of the practical: the dataset (Q1), the template's training and evaluation (Q2-Q3), its failures
(Q4), plots (Q5), the best model (Q6-Q7), 200 epochs (Q8), the Q9 variants, internet images (Q10).

    dataset        Q1: images and boxes per class, image and box sizes, examples with their boxes, the split
    training       Q2: the command and each epoch's figures
    evaluation     Q3: eval.py's printout of the last model, character for character, on the three splits
    failures       Q4: the misclassified test images, drawn as predict.py --failures-only draws them
    curves         Q5: loss and accuracy per epoch
    best-model     Q6: the rule that chooses best.pth, and the epoch it chose
    best-vs-last   Q7, Q9.3: the best and the last model on the three splits (and the curves, if not shown yet)
    long           Q8: the same over 200 epochs, and whether the validation loss turned up (overfitting)
    fractions      Q9.1: test accuracy by the share of the training split
    ablation       Q9.2: dropout and batch normalisation removed
    internet       Q10 (and Part 2 Q4, Part 3 Q9): every internet image, with or without a drawn box
"""

from __future__ import annotations

import functools
import math
import statistics
from typing import Any

import numpy as np

from model import config
from model.annotations import Problems, read_annotations, read_rows
from model.evaluate import SET_NAMES
from model.images import stored_size
from model.metrics import accuracy_block
from model.practical.context import Content, Context, num, overall, per_label, weakest
from model.practical.plan import Section, shown_path
from model.practical.sections.common import (
    builder,
    checkpoint_row,
    commands,
    curves,
    frame,
    names,
    pointer,
    sample_column,
    sample_figure,
    setting,
)
from model.reporting import figures as drawn
from model.runs import best_epoch, improves, training_figures

DEFAULT_GALLERY_MAX = 24  # predict.py --gallery's default

OVERFITTING = 1.05  # a final validation loss this many times its lowest, with a falling training loss, is overfitting
DATASET_EXAMPLES = 2  # images per class drawn with their box in Q1


# ----------------------------------------------------------------------------------------------
# Q1: the dataset
# ----------------------------------------------------------------------------------------------
@builder("dataset")
def dataset(ctx: Context, section: Section, runs: list[str]) -> Content:
    """The dataset as the runs read it: images and boxes per class with their sizes, a few images with their box,
    and the split of the first run."""
    root = ctx.dataset
    assert root is not None
    rows = read_annotations(root, Problems(skip=True))
    content = Content(
        commands=[f"ls {shown_path(root)}/images {shown_path(root)}/annotations"],
        text=[
            f"The dataset is {shown_path(root)}: `images/<label>/<file>` and `annotations/<label>.csv`, one row "
            "per image, `filename,startX,startY,endX,endY,label` in pixels of the original image (no header). An image "
            "is known by `label/filename`: file names repeat across classes. The class index is the sorted label."
        ],
    )
    by_class: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        width, height = stored_size(root / "images" / row.label / row.filename)
        by_class.setdefault(row.label, []).append({"key": row.key, "image": (width, height), "box": row.box})
    table = [class_row(label, sizes) for label, sizes in sorted(by_class.items())]
    table.append(class_row("all", [s for sizes in by_class.values() for s in sizes]))
    content.tables.append(
        (
            "Images and boxes per class (sizes in pixels, as min / median / max; box share: the median share of its "
            "image's area the box covers)",
            frame(table, ("images", "boxes")),
        )
    )
    content.tables.append((f"The split of {runs[0]}: images per class", split_table(ctx, runs[0])))
    sizes = ctx.split_sizes(runs[0])
    content.observations.append(
        f"{len(rows)} images, one box each, in {len(by_class)} classes: "
        + ", ".join(f"{r['label']} {r['images']}" for r in table[:-1])
        + f". {runs[0]}'s split (the template's: shuffled with seed 0, cut at 80 % and 90 %): {sizes['train']} "
        f"training, {sizes['val']} validation and {sizes['test']} test images."
    )
    examples = [row for label in sorted(by_class) for row in [r for r in rows if r.label == label][:DATASET_EXAMPLES]]
    path = ctx.write_figure(
        f"{section.id}-examples.jpg", lambda: drawn.rows_gallery_jpg(root, examples), [r.key for r in examples]
    )
    if path is not None:
        content.figures.append((f"The first {DATASET_EXAMPLES} images of each class with their box (blue)", path))
    return content


def class_row(label: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One class's images and boxes: their count and their sizes (min / median / max)."""
    widths, heights = [r["image"][0] for r in rows], [r["image"][1] for r in rows]
    box_widths = [r["box"][2] - r["box"][0] for r in rows]
    box_heights = [r["box"][3] - r["box"][1] for r in rows]
    shares = [bw * bh / (w * h) for bw, bh, w, h in zip(box_widths, box_heights, widths, heights)]
    return {
        "label": label,
        "images": len({r["key"] for r in rows}),
        "boxes": len(rows),
        "image width": spread(widths),
        "image height": spread(heights),
        "box width": spread(box_widths),
        "box height": spread(box_heights),
        "box share": f"{statistics.median(shares):.0%}",
    }


def spread(values: list[float]) -> str:
    """Min / median / max, as whole pixels."""
    return " / ".join(f"{v:.0f}" for v in (min(values), statistics.median(values), max(values)))


def split_table(ctx: Context, run: str) -> Any:
    """The run's training, validation and test splits: images per class, and in all."""
    found = []
    for split, name in (("train", "training"), ("val", "validation"), ("test", "test")):
        labels = [r.label for r in read_rows(ctx.run(run).split_path(split), Problems(skip=True))]
        counts = {label: labels.count(label) for label in sorted(set(labels))}
        found.append({"split": name, **counts, "all": len(labels)})
    table = frame(found).fillna(0)
    return table.astype({c: "Int64" for c in table.columns if c != "split"})


# ----------------------------------------------------------------------------------------------
# Q2-Q7: the template's run
# ----------------------------------------------------------------------------------------------
@builder("training")
def training(ctx: Context, section: Section, runs: list[str]) -> Content:
    """Q2: the command, the setting, and the figures of each epoch as train.py prints them."""
    content = Content(commands=commands(ctx, runs, evaluate=False))
    for run in runs:
        history = ctx.history(run)
        prefix, _ = training_figures(history)
        rows = [
            {
                "epoch": int(r["epoch"]),
                sample_column(history, "loss"): r[f"{prefix}_loss"],
                sample_column(history): r[f"{prefix}_accuracy"],
                "val_loss": r["val_loss"],
                "val_accuracy": r["val_accuracy"],
                "seconds": r["seconds"],
            }
            for r in history
        ]
        content.tables.append((f"{ctx.label(run)}: each epoch as train.py prints it", frame(rows, ("epoch",))))
        if ctx.once(f"setting:{run}") is None:
            content.observations.append(setting(ctx, run))
        last = history[-1]
        content.observations.append(
            f"{ctx.label(run)}: after its last epoch ({int(last['epoch'])}) the training sample's accuracy is "
            f"{num(last[f'{prefix}_accuracy'])} and the validation accuracy {num(last['val_accuracy'])}; last.pth "
            "holds that model."
        )
    return content


@builder("evaluation")
def evaluation(ctx: Context, section: Section, runs: list[str]) -> Content:
    """Q3: eval.py on the last model: the course template's printout, then the same figures as a table."""
    content = Content(commands=[f"python eval.py {shown_path(ctx.run(r).checkpoint_path('last'))}" for r in runs])
    for run in runs:
        block = [
            line for split in SET_NAMES for line in accuracy_block(SET_NAMES[split], ctx.figures(run, "last", split))
        ]
        content.text.append(
            f"{ctx.label(run)}, last.pth, as eval.py prints it:\n\n```text\n" + "\n".join(block) + "\n```"
        )
        rows = [
            {"split": SET_NAMES[split], "images": f["overall"]["images"], "accuracy": overall(f), **per_label(f)}
            for split in SET_NAMES
            for f in [ctx.figures(run, "last", split)]
        ]
        content.tables.append(
            (f"{ctx.label(run)}, last.pth: accuracy per split and per label", frame(rows, ("images",)))
        )
        test = ctx.figures(run, "last", "test")
        low = weakest(test)
        train, val = (overall(ctx.figures(run, "last", split)) for split in ("train", "val"))
        content.observations.append(
            f"{ctx.label(run)}: the last model's accuracy is {num(train)} on the training split, {num(val)} on the "
            f"validation split and {num(overall(test))} on the test split"
            + (f"; its weakest label on the test split is {low[0]} ({num(low[1])})." if low else ".")
        )
    return content


@builder("failures")
def failures(ctx: Context, section: Section, runs: list[str]) -> Content:
    """Q4: the misclassified test images of the last model, drawn as predict.py --failures-only draws them."""
    content = Content(
        commands=[
            f"python predict.py --model {shown_path(ctx.run(r).checkpoint_path('last'))} --failures-only "
            f"{shown_path(ctx.run(r).split_path('test'))}"
            for r in runs
        ]
    )
    for run in runs:
        results = ctx.per_image(run, "last", "test")
        wrong = drawn.label_failures(results)
        total = int((results.predicted_labels != results.true_labels).sum())
        path = ctx.write_figure(
            f"{section.id}-{run}-failures.jpg",
            functools.partial(drawn.gallery_jpg, results, wrong),
            ctx.evaluation(run, "last")["identity"],
            wrong,
        )
        if path is None:
            content.text.append(f"{ctx.label(run)}: the last model gets every test image right: no failure to show.")
            continue
        caption = drawn.failures_shown(results, wrong)
        content.figures.append((f"{ctx.label(run)}, last.pth: {caption} (true and predicted label)", path))
        pairs: dict[str, int] = {}
        for i in np.flatnonzero(results.predicted_labels != results.true_labels):
            key = f"{results.classes[results.true_labels[i]]} taken for {results.classes[results.predicted_labels[i]]}"
            pairs[key] = pairs.get(key, 0) + 1
        common = max(pairs, key=lambda k: pairs[k])
        content.observations.append(
            f"{ctx.label(run)}: {total} of {len(results.paths)} test images misclassified; the most frequent mistake: "
            f"{common} ({pairs[common]})."
        )
    return content


@builder("curves")
def curves_section(ctx: Context, section: Section, runs: list[str]) -> Content:
    """Q5: loss and accuracy per epoch, the best epoch marked."""
    content = Content(
        text=[
            f"train.py draws the same curves after each epoch, in {shown_path(ctx.run(r).folder / config.PLOT_FILE)}."
            for r in runs
        ]
    )
    for run in runs:
        ctx.once(f"curves:{run}")
        figure = curves(ctx, run)
        if figure is not None:
            content.figures.append(figure)
        content.observations += trend(ctx, run)
    return content


def trend(ctx: Context, run: str) -> list[str]:
    history = ctx.history(run)
    prefix, _ = training_figures(history)
    first, last = history[0], history[-1]
    return [
        f"{ctx.label(run)}: from epoch 1 to {int(last['epoch'])} the training sample's loss goes from "
        f"{num(first[f'{prefix}_loss'], 4)} to {num(last[f'{prefix}_loss'], 4)} and the validation loss from "
        f"{num(first['val_loss'], 4)} to {num(last['val_loss'], 4)}; the validation accuracy from "
        f"{num(first['val_accuracy'])} to {num(last['val_accuracy'])} (best epoch {best_epoch(history)})."
    ]


@builder("best-model")
def best_model(ctx: Context, section: Section, runs: list[str]) -> Content:
    """Q6: the rule that picks best.pth (the code's own), and the epoch it picked."""
    rule = (improves.__doc__ or "").strip().splitlines()[0]
    content = Content(
        commands=commands(ctx, runs, evaluate=True),
        text=[f"The rule (model/runs/run.py, `improves`): {rule} train.py saves best.pth at each epoch that is so."],
    )
    for run in runs:
        history = ctx.history(run)
        best = best_epoch(history)
        assert best is not None
        row = next(r for r in history if int(r["epoch"]) == best)
        ties = [
            int(r["epoch"]) for r in history if r["val_accuracy"] == row["val_accuracy"] and int(r["epoch"]) != best
        ]
        tie = (
            f"; epochs {', '.join(map(str, ties))} reach the same validation accuracy with a higher validation loss"
            if ties
            else ""
        )
        content.observations.append(
            f"{ctx.label(run)}: best.pth holds epoch {best} of {len(history)} (validation accuracy "
            f"{num(row['val_accuracy'])}, validation loss {num(row['val_loss'], 4)}){tie}."
        )
    return content


@builder("best-vs-last")
def best_vs_last(ctx: Context, section: Section, runs: list[str], long: bool = False) -> Content:
    """Q7, Q9.3: the best and the last model as eval.py scores them on the three splits, side by side."""
    content = Content(commands=commands(ctx, runs, ("last", "best")))
    for run in runs:
        rows = [checkpoint_row(ctx, run, which) for which in ("best", "last")]
        content.tables.append(
            (
                f"{ctx.label(run)}: the best and the last model, as eval.py scores them on the whole splits "
                "(evaluation mode)",
                frame(rows, ("epoch",)),
            )
        )
        earlier = ctx.once(f"curves:{run}")
        figure = curves(ctx, run) if earlier is None else None
        if figure is not None:
            content.figures.append(figure)
        elif earlier is not None:
            content.text.append(pointer(earlier, f"The curves of {ctx.label(run)}"))
        if ctx.once(f"setting:{run}") is None:
            content.observations.append(setting(ctx, run))
        content.observations += best_vs_last_observations(ctx, run, rows)
        if long:
            content.observations += overfitting(ctx, run)
    return content


def best_vs_last_observations(ctx: Context, run: str, rows: list[dict[str, Any]]) -> list[str]:
    best, last = rows
    label = ctx.label(run)
    gap = best["test_accuracy"] - last["test_accuracy"]
    return [
        f"{label}: the best model is epoch {best['epoch']} of {last['epoch']} (validation accuracy "
        f"{num(best['val_accuracy'])}); the last epoch's validation accuracy is {num(last['val_accuracy'])}.",
        f"{label}: on the test split the best model scores {num(best['test_accuracy'])} and the last "
        f"{num(last['test_accuracy'])}"
        + (
            ": the same."
            if num(gap) in (num(0.0), num(-0.0))
            else f": the best is {num(abs(gap))} {'higher' if gap > 0 else 'lower'}."
        ),
        f"{label}: the best model's accuracy is {num(best['train_accuracy'])} on the training split against "
        f"{num(best['val_accuracy'])} on the validation split: training minus validation, "
        f"{num(best['train_accuracy'] - best['val_accuracy'])}"
        + (" (validation above training)." if best["train_accuracy"] < best["val_accuracy"] else "."),
    ]


@builder("long")
def long_run(ctx: Context, section: Section, runs: list[str]) -> Content:
    """Q8: best against last over many epochs, and the overfitting verdict."""
    return best_vs_last(ctx, section, runs, long=True)


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
    prefix, _ = training_figures(history)
    low, end, rise = path
    fell = end[f"{prefix}_loss"] < low[f"{prefix}_loss"]
    above = f"the validation loss ends {rise}"
    if rise and fell:
        verdict = f"{above} while the training loss kept falling, the mark of overfitting."
    elif rise:
        verdict = f"{above}, but the training loss did not fall meanwhile: not the usual mark of overfitting."
    else:
        verdict = f"the validation loss ends within {OVERFITTING - 1:.0%} of its lowest: no clear overfitting."
    return [
        f"{ctx.label(run)}: the validation loss is lowest at epoch {int(low['epoch'])} ({num(low['val_loss'], 4)}) and "
        f"ends at epoch {int(end['epoch'])} at {num(end['val_loss'], 4)}; over those epochs the training sample's loss "
        f"goes from {num(low[f'{prefix}_loss'], 4)} to {num(end[f'{prefix}_loss'], 4)}: {verdict}"
    ]


# ----------------------------------------------------------------------------------------------
# Q9: variants
# ----------------------------------------------------------------------------------------------
@builder("fractions")
def fractions(ctx: Context, section: Section, runs: list[str]) -> Content:
    """Q9.1: test accuracy by the share of the training split kept."""
    content = Content(commands=commands(ctx, runs))
    rows: list[dict[str, Any]] = []
    for run in runs:
        history, epoch = ctx.history(run), ctx.epoch(run)
        rows.append(
            {
                "run": run,
                "train_fraction": ctx.options(run).train_fraction,
                "training_images": ctx.split_sizes(run)["train"],
                "best_epoch": epoch,
                sample_column(history): sample_figure(history, epoch),
                "val_accuracy": _val(history, epoch),
                "test_accuracy": overall(ctx.figures(run)),
                **{f"test_{k}": v for k, v in per_label(ctx.figures(run)).items()},
            }
        )
    content.tables.append(
        (
            "Test accuracy by the share of the training split kept (figures at each run's best epoch)",
            frame(rows, ("training_images", "best_epoch")),
        )
    )
    if len(rows) >= 2:
        first, last = rows[0], rows[-1]
        content.observations.append(
            f"From {first['train_fraction']:.0%} ({first['training_images']} images) to {last['train_fraction']:.0%} "
            f"({last['training_images']} images) of the training split, the test accuracy goes from "
            f"{num(first['test_accuracy'])} to {num(last['test_accuracy'])}."
        )
    for row in rows:
        low = weakest(ctx.figures(row["run"]))
        if low:
            content.observations.append(f"{row['run']}: weakest label {low[0]} ({num(low[1])}).")
    return content


def _val(history: list[dict[str, float]], epoch: int) -> float:
    return next((r["val_accuracy"] for r in history if int(r["epoch"]) == epoch), math.nan)


@builder("ablation")
def ablation(ctx: Context, section: Section, runs: list[str]) -> Content:
    """Q9.2: the reference run against its variants without dropout or batch normalisation."""
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
                sample_column(history): sample_figure(history, epoch),
                "val_accuracy": _val(history, epoch),
                "test_accuracy": overall(ctx.figures(run)),
                "val_loss_jumps": float(np.abs(np.diff(losses)).mean()) if len(losses) > 1 else math.nan,
                "val_loss_change": float(losses[-1] - losses[0]) if len(losses) > 1 else math.nan,
            }
        )
    content.tables.append(
        (
            "The reference run and its variants (val_loss_jumps: the mean absolute change of the validation loss from "
            "one epoch to the next; val_loss_change: its last epoch's value minus its first's)",
            frame(rows, ("best_epoch",)),
        )
    )
    histories = [(ctx.label(r), ctx.history(r)) for r in runs]
    path = ctx.write_figure(
        f"{section.id}-curves.png",
        lambda: drawn.history_png(
            histories, [("loss", "Loss", "loss"), ("accuracy", "Accuracy", "accuracy")], "The runs per epoch"
        ),
        histories,
    )
    if path is not None:
        content.figures.append(
            (
                "Loss and accuracy per epoch (solid: training sample, dashed: validation, dotted: each run's best "
                "epoch)",
                path,
            )
        )
    content.observations += ablation_observations(rows)
    return content


def ablation_observations(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    jumps = [r for r in rows if not math.isnan(r["val_loss_jumps"])]
    if jumps:
        steadiest = min(jumps, key=lambda r: r["val_loss_jumps"])
        roughest = max(jumps, key=lambda r: r["val_loss_jumps"])
        lines.append(
            f"The validation loss moves least from epoch to epoch with {steadiest['run']} "
            f"({num(steadiest['val_loss_jumps'], 4)}; {num(steadiest['val_loss_change'], 4)} from first to last epoch) "
            f"and most with {roughest['run']} ({num(roughest['val_loss_jumps'], 4)}; "
            f"{num(roughest['val_loss_change'], 4)} from first to last); a loss that falls fast moves much from epoch "
            "to epoch too, so read the jumps beside the net change and the curves."
        )
    for row in rows[1:]:
        diff = row["test_accuracy"] - rows[0]["test_accuracy"]
        relation = (
            "the same as" if num(abs(diff)) == num(0.0) else f"{num(abs(diff))} {'above' if diff > 0 else 'below'}"
        )
        lines.append(f"{row['run']}: test accuracy {num(row['test_accuracy'])}, {relation} {rows[0]['run']}.")
    return lines


# ----------------------------------------------------------------------------------------------
# Q10 (and Part 2 Q4, Part 3 Q9): internet images
# ----------------------------------------------------------------------------------------------
@builder("internet")
def internet(ctx: Context, section: Section, runs: list[str]) -> Content:
    """Every internet image through each run's best model, for its label and, where a box was drawn, its box."""
    from model.annotations import web_images

    found = web_images(ctx.web)
    content = Content(commands=[internet_command(ctx, section, r, len(found)) for r in runs])
    if not found:
        earlier = ctx.once("no-web-images")
        content.text.append(NO_WEB_IMAGES if earlier is None else pointer(earlier, "No internet images yet"))
        return content
    rows: list[dict[str, Any]] = []
    for run in runs:
        figures, results = ctx.internet(run)
        rows.append(
            {
                "run": ctx.label(run),
                "images": figures["overall"]["images"],
                "right": figures["overall"]["correct"],
                "accuracy": overall(figures),
                "images_with_box": figures["overall"].get("images_with_box"),
                "mean_iou": overall(figures, "mean_iou"),
                **{f"accuracy_{k}": v for k, v in per_label(figures).items()},
            }
        )
        order = list(range(len(results.paths)))  # every image, in predict.py's order: its gallery is this one
        path = ctx.write_figure(
            f"{section.id}-{run}-gallery.jpg",
            functools.partial(drawn.gallery_jpg, results, order),
            ctx.evaluation(run)["identity"],
            [str(p) for p in results.paths],
        )
        if path is not None:
            content.figures.append(
                (f"{ctx.label(run)} on every internet image, as its command draws them (red caption: a failure)", path)
            )
    content.tables.append(
        (
            "Internet images (web_images/images/; boxes scored only where web_images/annotations.csv gives one)",
            frame(rows, ("images", "right", "images_with_box")),
        )
    )
    content.observations.append(internet_observation(rows))
    return content


def internet_command(ctx: Context, section: Section, run: str, images: int) -> str:
    """predict.py on every internet image, writing the gallery the section shows (every image, in its order)."""
    web = ctx.plan.output_dir / "web" / section.id
    most = f" --gallery-max {images}" if images > DEFAULT_GALLERY_MAX else ""
    return (
        f"python predict.py --model {shown_path(ctx.run(run).checkpoint_path('best'))} --save {shown_path(web / run)} "
        f"--gallery {shown_path(web / f'{run}.jpg')}{most} {shown_path(ctx.web / 'images')}"
    )


NO_WEB_IMAGES = (
    "No internet images yet: put some in web_images/images/<label>/ (one folder per true label: airplane, face, "
    "motorcycle) and run `python compare.py --practical` again: this section scores each image for its label, and "
    "for its box where web_images/annotations.csv gives one (`python predict.py --annotate web_images/images` draws "
    "them with the mouse)."
)


def internet_observation(rows: list[dict[str, Any]]) -> str:
    """Who gets how many right, in words that fit the numbers (networks that tie are named together)."""
    images = rows[0]["images"]
    scores = {r["run"]: int(r["right"]) for r in rows}
    if len(set(scores.values())) == 1:
        who = "The network" if len(rows) == 1 else f"All {len(rows)} networks"
        right = next(iter(scores.values()))
        return f"{who} get{'s' if len(rows) == 1 else ''} {right} of the {images} internet images right."
    best, worst = max(scores.values()), min(scores.values())
    leaders = [name for name, s in scores.items() if s == best]
    trailing = [name for name, s in scores.items() if s == worst]
    return (
        f"{names(leaders)} get{'s' if len(leaders) == 1 else ''} the most internet images right ({best} of "
        f"{images}{', a tie' if len(leaders) > 1 else ''}); {names(trailing)} the fewest ({worst})."
    )
