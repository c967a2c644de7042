"""The report's and the comparison's figures, as PNG bytes (galleries, photographs, as JPEG): curves per epoch,
per-label bars, confusion matrices, IoU histograms, accuracy against the IoU threshold, galleries of images.

Curves show the training figures measured in evaluation mode (when the runs measured them) against validation,
each model's best epoch dotted; a panel is drawn only when some model has its figures (no IoU panel for
classification-only networks); an accuracy or IoU axis spans the data, not 0 to 1, so that close curves part.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from model.annotations import Annotation, image_path
from model.draw import draw_prediction, draw_truth, encode_image, gallery
from model.metrics import IOU_THRESHOLDS, ImageResults, accuracy_by_iou
from model.plots import Line2D, colours, draw_confusion, figure_bytes, integer_epochs, plt
from model.runs import best_epoch, training_figures

History = Sequence[dict[str, float]]
WIDTH = 8.0  # inches: at 120 dpi, placed no larger than 150 dpi allows, a figure prints at 0.8 of its size (text ~8 pt)
PANEL_HEIGHT = 3.2  # inches per row of panels
BOX_EXAMPLES = 3  # the best and the lowest boxes shown: a gallery row each
FAILURES_SHOWN = 9  # misclassified images in a gallery: three rows; more would shrink it past reading its captions


def has_boxes(history: History) -> bool:
    return any(not math.isnan(row["val_iou"]) for row in history)


def training_label(history: History) -> str:
    """What a history's training curve is: the per-epoch sample measured in evaluation mode, or the training pass."""
    _, label = training_figures(history)
    return "training sample (evaluation mode)" if label.endswith("(evaluation mode)") else "training pass (running)"


def zoom(ax: Any, values: Sequence[float]) -> None:
    """A fraction's axis (accuracy, IoU) spanning the values with a margin, within 0 to 1."""
    if finite := [v for v in values if v is not None and math.isfinite(v)]:
        low, high = min(finite), max(finite)
        margin = max(0.02, 0.1 * (high - low))
        ax.set_ylim(max(0.0, low - margin), min(1.0, high + margin) + 0.005)


def panel_grid(panels: int, extra: float, columns: int = 2) -> tuple[Any, list[Any]]:
    """A figure WIDTH wide with ``panels`` axes, ``columns`` to a row, ``extra`` inches kept for a title and a key."""
    columns = min(columns, panels)
    rows = math.ceil(panels / columns)
    figure, grid = plt.subplots(rows, columns, figsize=(WIDTH, PANEL_HEIGHT * rows + extra), squeeze=False)
    cells = [ax for row in grid for ax in row]
    for unused in cells[panels:]:
        unused.remove()
    return figure, cells[:panels]


def key_below(figure: Any, handles: Sequence[Any], labels: Sequence[str] | None = None) -> bytes:
    """The figure's key under its panels (never on them), the panels laid out above it; the figure's PNG."""
    shown = {"labels": list(labels)} if labels is not None else {}
    key = figure.legend(handles=list(handles), loc="lower center", ncol=min(3, len(handles)), fontsize="small", **shown)
    key.set_frame_on(False)
    height = key.get_window_extent(figure.canvas.get_renderer()).height / figure.bbox.height
    figure.tight_layout(rect=(0, min(0.5, height + 0.01), 1, 1))
    return figure_bytes(figure)


def history_png(histories: Sequence[tuple[str, History]], panels: Sequence[tuple[str, str]], title: str) -> bytes:
    """One panel per (history key, panel title): training (solid) and validation (dashed) per epoch, one colour per
    model, each model's best epoch dotted in its colour."""
    palette = colours(len(histories))
    handles = [Line2D([], [], color=c, label=name) for (name, _), c in zip(histories, palette)]
    styles: list[tuple[Any, str]] = [("-", training_label(histories[0][1])), ("--", "validation"), (":", "best epoch")]
    handles += [Line2D([], [], color="black", linestyle=style, label=label) for style, label in styles]
    figure, axes = panel_grid(len(panels), 0.4 + 0.2 * math.ceil(len(handles) / 3))
    for ax, (key, panel_title) in zip(axes, panels):
        shown: list[float] = []
        for (_, history), colour in zip(histories, palette):
            prefix, _ = training_figures(history)
            epochs = [r["epoch"] for r in history]
            marker = "o" if len(epochs) < 30 else None  # a run of one or two epochs is a point or two, not a line
            for source, style in ((prefix, "-"), ("val", "--")):
                values = [r[f"{source}_{key}"] for r in history]
                ax.plot(epochs, values, style, color=colour, marker=marker, markersize=3)
                shown += values
            if (best := best_epoch(history)) is not None:
                ax.axvline(best, color=colour, linestyle=":", linewidth=1)
        ax.set(title=panel_title, xlabel="epoch", ylabel={"iou": "mean IoU"}.get(key, key.replace("_", " ")))
        if "loss" not in key:
            zoom(ax, shown)
        integer_epochs(ax)
        ax.grid(alpha=0.3)
    figure.suptitle(title)
    return key_below(figure, handles)


def run_curves_png(history: History, name: str) -> bytes:
    """One run's loss, accuracy and (with a box head) mean IoU per epoch."""
    panels = [("loss", "Loss"), ("accuracy", "Accuracy")] + ([("iou", "Mean IoU")] if has_boxes(history) else [])
    return history_png([(name, history)], panels, f"{name} per epoch (best epoch {best_epoch(history)})")


def losses_png(histories: Sequence[tuple[str, History]]) -> bytes:
    """Class and (where some model has a box head) box loss of every model."""
    boxed = any(has_boxes(h) for _, h in histories)
    panels = [("class_loss", "Class loss (cross-entropy)")] + ([("box_loss", "Box loss")] if boxed else [])
    return history_png(histories, panels, f"{'Class and box loss' if boxed else 'Class loss'}{every(histories)}")


def accuracy_png(histories: Sequence[tuple[str, History]]) -> bytes:
    """Accuracy and (where some model has a box head) mean IoU of every model."""
    boxed = any(has_boxes(h) for _, h in histories)
    panels = [("accuracy", "Accuracy")] + ([("iou", "Mean IoU")] if boxed else [])
    return history_png(histories, panels, f"{'Accuracy and mean IoU' if boxed else 'Accuracy'}{every(histories)}")


def every(items: Sequence[Any]) -> str:
    return " of every model per epoch" if len(items) > 1 else " per epoch"


def per_label_png(names: Sequence[str], tests: Sequence[dict], classes: Sequence[str]) -> bytes:
    """Accuracy (and, where some model has boxes, mean IoU) per label on the test split, one bar per model."""
    metrics = [("accuracy", "Accuracy per label")]
    if any("mean_iou" in t.get("overall", {}) for t in tests):
        metrics.append(("mean_iou", "Mean IoU per label"))
    figure, axes = panel_grid(len(metrics), 0.2 + 0.2 * math.ceil(len(names) / 3))
    width, x = 0.8 / max(1, len(names)), np.arange(len(classes))
    for ax, (metric, title) in zip(axes, metrics):
        for k, (name, test, colour) in enumerate(zip(names, tests, colours(len(names)))):
            values = [test.get("per_label", {}).get(c, {}).get(metric) for c in classes]
            values = [0.0 if v is None or math.isnan(v) else v for v in values]
            ax.bar(x + (k - (len(names) - 1) / 2) * width, values, width, color=colour, label=name)
        ax.set(title=f"{title} (test split)", xticks=x, xticklabels=classes, ylabel=metric.replace("_", " "))
        ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3)
    return key_below(figure, *axes[0].get_legend_handles_labels())


def confusion_grid_png(names: Sequence[str], confusions: Sequence[dict]) -> bytes:
    """One confusion matrix per model (rows true, columns predicted), two to a row: readable counts and labels."""
    figure, axes = panel_grid(len(names), 0.5)
    for ax, name, confusion in zip(axes, names, confusions):
        draw_confusion(ax, confusion["labels"], confusion["matrix"], name)
    figure.suptitle("Confusion matrices (test split; rows: true label, columns: predicted)")
    figure.tight_layout()
    return figure_bytes(figure)


def iou_histograms_png(names: Sequence[str], ious: Sequence[np.ndarray]) -> bytes:
    """Distribution of the IoU of predicted and true boxes, per model."""
    figure, (ax,) = panel_grid(1, 1.0 + 0.2 * math.ceil((len(names) + 1) / 3))
    for name, iou, colour in zip(names, ious, colours(len(names))):
        finite = iou[np.isfinite(iou)]
        ax.hist(finite, bins=np.linspace(0, 1, 21), histtype="step", linewidth=2, color=colour, label=name)
    ax.axvline(0.5, color="grey", linestyle=":", label="IoU 0.5")
    ax.set(title="IoU of predicted and true boxes (test split)", xlabel="IoU", ylabel="images")
    return key_below(figure, *ax.get_legend_handles_labels())


def accuracy_by_iou_png(names: Sequence[str], results: Sequence[ImageResults]) -> bytes:
    """Each model's detection accuracy (right label and IoU >= t) against the IoU threshold t, 0.5 to 0.95."""
    figure, (ax,) = panel_grid(1, 1.0 + 0.2 * math.ceil(len(names) / 3))
    shown: list[float] = []
    for name, result, colour in zip(names, results, colours(len(names))):
        shown += (values := accuracy_by_iou(result))
        ax.plot(IOU_THRESHOLDS, values, "o-", color=colour, label=name)
    ax.set(title="Detection accuracy against the IoU threshold (test split)", xlabel="IoU threshold")
    ax.set(ylabel="right label and IoU >= threshold")
    zoom(ax, shown)
    ax.grid(alpha=0.3)
    return key_below(figure, *ax.get_legend_handles_labels())


def gallery_jpg(results: ImageResults, chosen: Sequence[int], iou_threshold: float = 0.5) -> bytes | None:
    """The images ``chosen`` drawn as predict.py draws them (true and predicted label and box, IoU), as a JPEG grid
    (photographs: 5 times smaller than as PNG, which keeps report.pdf small); None when none can be read."""
    failed, boxed = results.failures(iou_threshold), results.boxed
    tiles = []
    for i in map(int, chosen):
        image = cv2.imread(str(results.paths[i]))
        if image is None:
            continue
        true_box = results.true_boxes[i] if boxed[i] else None
        box = results.predicted_boxes[i] if results.predicted_boxes is not None else None
        iou = None if results.iou is None or true_box is None else float(results.iou[i])
        predicted, true = results.classes[results.predicted_labels[i]], results.classes[results.true_labels[i]]
        conf = float(results.confidence[i])
        tiles.append(draw_prediction(image, predicted, conf, box, true, true_box, iou, failure=bool(failed[i])))
    return encode_image(gallery(tiles), ".jpg") if tiles else None


def rows_gallery_jpg(root: Path, rows: Sequence[Annotation]) -> bytes | None:
    """Annotation rows drawn with their true box (blue) and label, as a JPEG grid (the dataset's examples)."""
    tiles = [
        draw_truth(image, f"{row.label}/{row.filename}", row.box)
        for row in rows
        if (image := cv2.imread(str(image_path(root, row)))) is not None
    ]
    return encode_image(gallery(tiles), ".jpg") if tiles else None


def label_failures(results: ImageResults) -> tuple[list[int], int]:
    """The misclassified images to show, most confident first (at most FAILURES_SHOWN), and how many there are."""
    wrong = np.flatnonzero(results.predicted_labels != results.true_labels)
    order = wrong[np.argsort(-results.confidence[wrong], kind="stable")]
    return [int(i) for i in order[:FAILURES_SHOWN]], len(wrong)


def failures_caption(results: ImageResults, shown: Sequence[int], total: int) -> str:
    """What a gallery of ``shown`` (label_failures') holds, and how its images are drawn."""
    boxes = "orange: predicted box, blue: true box" if results.iou is not None else "blue: true box"
    which = f"{len(shown)} most confident of the {total}" if len(shown) < total else str(total)
    return (
        f"the {which} misclassified test image{'s' if total > 1 else ''}, most confident first (true and predicted "
        f"label; {boxes})"
    )


def box_examples(results: ImageResults, among: np.ndarray | None = None) -> tuple[list[int], list[int]]:
    """Among the images of right label with a known box (and in ``among`` where given), the BOX_EXAMPLES of the best
    IoU and those of the lowest (Part 3 Q6), best first and lowest first; the lowest never repeat the best."""
    if results.iou is None:
        return [], []
    right = (results.predicted_labels == results.true_labels) & results.boxed
    right = np.flatnonzero(right if among is None else right & among)
    by_iou = [int(i) for i in right[np.argsort(-results.iou[right], kind="stable")]]
    best = by_iou[:BOX_EXAMPLES]
    return best, [i for i in reversed(by_iou) if i not in best][:BOX_EXAMPLES]


def iou_range(results: ImageResults, chosen: Sequence[int]) -> str:
    """The IoUs of ``chosen`` as a caption says them, e.g. "IoU 0.96 to 0.91"."""
    assert results.iou is not None
    values = [float(results.iou[i]) for i in chosen]
    return f"IoU {values[0]:.2f}" if len(values) == 1 else f"IoU {values[0]:.2f} to {values[-1]:.2f}"
