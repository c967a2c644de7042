"""The comparison's figures (Part 2 Q4, Part 3 Q6 and Q8): curves of every model, per-label bars,
confusion matrices, IoU histograms, galleries of failures and of boxes; each as PNG bytes (the galleries,
photographs, as JPEG) into a sink.

Curves show the training figures measured in evaluation mode (when the runs measured them) against
validation, with each model's best epoch marked; a panel is drawn only when some model has its figures
(no blank IoU panel for classification-only networks), and a legend names each entry once.
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
from model.reporting.model_report import ModelReport
from model.reporting.tables import Sink
from model.runs import best_epoch, training_figures

SplitHistory = tuple[str, list[dict[str, float]]]  # (model name, history rows)


WIDTH = 8.0  # inches: at 120 dpi, placed no larger than 150 dpi allows, a figure prints at 0.8 of its size (text ~8 pt)
PANEL_HEIGHT = 3.2  # inches per row of panels
BOX_EXAMPLES = 3  # the best and the lowest boxes shown: a gallery row each


def has_boxes(history: Sequence[dict[str, float]]) -> bool:
    return any(not math.isnan(row["val_iou"]) for row in history)


def training_label(history: Sequence[dict[str, float]]) -> str:
    """What a history's training curve is, named as the report's tables name it: the per-epoch sample measured
    in evaluation mode, or the training pass itself."""
    _, label = training_figures(history)
    if label.endswith("(evaluation mode)"):
        return "training sample (evaluation mode)"
    return label.replace("train", "training pass", 1)


def panel_grid(panels: int, columns: int = 2, extra: float = 0.0) -> tuple[Any, list[Any]]:
    """A figure WIDTH wide with ``panels`` axes, ``columns`` to a row (the unused cells of the last row removed),
    ``extra`` inches of height kept for a title and a key."""
    columns = min(columns, panels)
    rows = math.ceil(panels / columns)
    figure, grid = plt.subplots(rows, columns, figsize=(WIDTH, PANEL_HEIGHT * rows + extra), squeeze=False)
    cells = [ax for row in grid for ax in row]
    for unused in cells[panels:]:
        unused.remove()
    return figure, cells[:panels]


def key_below(figure: Any, handles: Sequence[Any], labels: Sequence[str] | None = None, columns: int = 3) -> None:
    """The figure's key under its panels, never on them (inside, it would hide curves or the tops of bars), and the
    panels laid out in the space left above it."""
    shown = {"labels": list(labels)} if labels is not None else {}
    key = figure.legend(
        handles=list(handles), loc="lower center", ncol=min(columns, len(handles)), fontsize="small", **shown
    )
    key.set_frame_on(False)
    height = key.get_window_extent(figure.canvas.get_renderer()).height / figure.bbox.height
    figure.tight_layout(rect=(0, min(0.5, height + 0.01), 1, 1))


def history_png(
    histories: Sequence[SplitHistory], panels: Sequence[tuple[str, str, str]], title: str, unit: bool = False
) -> bytes:
    """One panel per (history key, panel title, y label): training (solid) and validation (dashed) per
    epoch, one colour per model, each model's best epoch marked with a dotted line of its colour."""
    handles = [Line2D([], [], color=c, label=name) for (name, _), c in zip(histories, colours(len(histories)))]
    handles += [
        Line2D([], [], color="black", linestyle="-", label=training_label(histories[0][1])),
        Line2D([], [], color="black", linestyle="--", label="validation"),
        Line2D([], [], color="black", linestyle=":", label="best epoch"),
    ]
    figure, axes = panel_grid(len(panels), extra=0.4 + 0.2 * math.ceil(len(handles) / 3))
    for ax, (key, panel_title, y_label) in zip(axes, panels):
        for (_name, history), colour in zip(histories, colours(len(histories))):
            prefix, _ = training_figures(history)
            epochs = [r["epoch"] for r in history]
            marker = "o" if len(epochs) < 30 else None  # a run of one or two epochs is a point or two, not a line
            ax.plot(epochs, [r[f"{prefix}_{key}"] for r in history], "-", color=colour, marker=marker, markersize=3)
            ax.plot(epochs, [r[f"val_{key}"] for r in history], "--", color=colour, marker=marker, markersize=3)
            best = best_epoch(history)
            if best is not None:
                ax.axvline(best, color=colour, linestyle=":", linewidth=1)
        ax.set(title=panel_title, xlabel="epoch", ylabel=y_label, **({"ylim": (0, 1.02)} if unit else {}))
        integer_epochs(ax)
        ax.grid(alpha=0.3)
    figure.suptitle(title)
    key_below(figure, handles)
    return figure_bytes(figure)


def run_curves_png(history: Sequence[dict[str, float]], name: str) -> bytes:
    """One run's loss, accuracy and (with a box head) mean IoU per epoch."""
    panels = [("loss", "Loss", "loss"), ("accuracy", "Accuracy", "accuracy")]
    if has_boxes(history):
        panels.append(("iou", "Mean IoU", "mean IoU"))
    return history_png([(name, list(history))], panels, f"{name} per epoch (best epoch {best_epoch(history)})")


def loss_curves_png(histories: Sequence[SplitHistory]) -> bytes:
    """Class and box loss of every model on one figure (Part 3 Q8)."""
    boxed = any(has_boxes(h) for _, h in histories)
    panels = [("class_loss", "Class loss (cross-entropy)", "loss")] + (
        [("box_loss", "Box loss", "loss")] if boxed else []
    )
    return history_png(histories, panels, "Loss of every model per epoch")


def metric_curves_png(histories: Sequence[SplitHistory]) -> bytes:
    boxed = any(has_boxes(h) for _, h in histories)
    panels = [("accuracy", "Accuracy", "accuracy")] + ([("iou", "Mean IoU", "mean IoU")] if boxed else [])
    return history_png(histories, panels, "Accuracy and IoU of every model per epoch", unit=True)


def per_label_png(names: Sequence[str], tests: Sequence[dict], classes: Sequence[str], split: str = "test") -> bytes:
    """Accuracy (and, where some model has boxes, mean IoU) per label, one bar per model."""
    metrics = [("accuracy", f"Accuracy per label ({split} split)")]
    if any("mean_iou" in (t or {}).get("overall", {}) for t in tests):
        metrics.append(("mean_iou", f"Mean IoU per label ({split} split)"))
    figure, axes = panel_grid(len(metrics), extra=0.2 + 0.2 * math.ceil(len(names) / 3))
    width = 0.8 / max(1, len(names))
    x = np.arange(len(classes))
    for ax, (metric, title) in zip(axes, metrics):
        for k, (name, test, colour) in enumerate(zip(names, tests, colours(len(names)))):
            per_label = (test or {}).get("per_label", {})
            values = [per_label.get(c, {}).get(metric) for c in classes]
            values = [0.0 if v is None or math.isnan(v) else v for v in values]
            ax.bar(x + (k - (len(names) - 1) / 2) * width, values, width, color=colour, label=name)
        ax.set(
            title=title, xticks=x, xticklabels=classes, xlabel="label", ylabel=metric.replace("_", " "), ylim=(0, 1.05)
        )
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    key_below(figure, handles, labels)
    return figure_bytes(figure)


def confusion_grid_png(names: Sequence[str], confusions: Sequence[dict], split: str = "test") -> bytes:
    """One confusion matrix per model (rows true, columns predicted), two to a row: four in one row would print
    their counts and labels too small to read."""
    figure, axes = panel_grid(len(names), extra=0.5)
    for ax, name, confusion in zip(axes, names, confusions):
        draw_confusion(ax, confusion["labels"], confusion["matrix"], name)
    figure.suptitle(f"Confusion matrices ({split} split; rows: true label, columns: predicted)")
    figure.tight_layout()
    return figure_bytes(figure)


def iou_histograms_png(names: Sequence[str], ious: Sequence[np.ndarray], split: str = "test") -> bytes:
    """Distribution of the IoU of predicted and true boxes, per model."""
    figure, (ax,) = panel_grid(1, extra=1.0 + 0.2 * math.ceil((len(names) + 1) / 3))
    bins = [i / 20 for i in range(21)]
    for name, iou, colour in zip(names, ious, colours(len(names))):
        ax.hist(iou[np.isfinite(iou)], bins=bins, histtype="step", linewidth=2, color=colour, label=name)
    ax.axvline(0.5, color="grey", linestyle=":", label="IoU 0.5")
    ax.set(title=f"IoU of predicted and true boxes ({split} split)", xlabel="IoU", ylabel="images")
    handles, labels = ax.get_legend_handles_labels()
    key_below(figure, handles, labels)
    return figure_bytes(figure)


def accuracy_by_iou_png(reports: Sequence[ModelReport], split: str = "test") -> bytes:
    """Each model's detection accuracy (right label and IoU >= t) against the IoU threshold t, 0.5 to 0.95."""
    figure, (ax,) = panel_grid(1, extra=1.0 + 0.2 * math.ceil(len(reports) / 3))
    for report, colour in zip(reports, colours(len(reports))):
        assert report.results is not None
        ax.plot(IOU_THRESHOLDS, accuracy_by_iou(report.results), "o-", color=colour, label=report.name)
    ax.set(
        title=f"Detection accuracy against the IoU threshold ({split} split)",
        xlabel="IoU threshold",
        ylabel="right label and IoU >= threshold",
        ylim=(0, 1.02),
    )
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    key_below(figure, handles, labels)
    return figure_bytes(figure)


def _tile(results: ImageResults, i: int, iou_threshold: float) -> np.ndarray | None:
    image = cv2.imread(str(results.paths[i]))
    if image is None:
        return None
    box = results.predicted_boxes[i] if results.predicted_boxes is not None else None
    true_box = results.true_boxes[i] if results.has_true_box(i) else None
    iou = None if results.iou is None or true_box is None else float(results.iou[i])
    return draw_prediction(
        image,
        results.classes[results.predicted_labels[i]],
        float(results.confidence[i]),
        box,
        results.classes[results.true_labels[i]],
        true_box,
        iou,
        failure=bool(results.failures(iou_threshold)[i]),
    )


def gallery_jpg(results: ImageResults, chosen: Sequence[int], iou_threshold: float = 0.5) -> bytes | None:
    """A grid of the images ``chosen``, drawn as predict.py draws them (true and predicted label and box,
    IoU), as a JPEG: photographs, 5 times smaller than as PNG, which keeps report.pdf small enough to hand
    in; None when none of them can be read."""
    tiles = [tile for i in chosen if (tile := _tile(results, int(i), iou_threshold)) is not None]
    return encode_image(gallery(tiles), ".jpg") if tiles else None


def rows_gallery_jpg(root: Path, rows: Sequence[Annotation]) -> bytes | None:
    """Annotation rows drawn with their true box (blue) and label, as a JPEG grid (the dataset's examples)."""
    tiles = []
    for row in rows:
        image = cv2.imread(str(image_path(root, row)))
        if image is not None:
            tiles.append(draw_truth(image, f"{row.label}/{row.filename}", row.box))
    return encode_image(gallery(tiles), ".jpg") if tiles else None


def label_failures(results: ImageResults, limit: int = 9) -> list[int]:
    """The misclassified images, most confident first (Part 1 Q4); at most ``limit``, three rows of a gallery: more
    would shrink it, a page high, past reading its captions."""
    wrong = np.flatnonzero(results.predicted_labels != results.true_labels)
    return [int(i) for i in wrong[np.argsort(-results.confidence[wrong], kind="stable")][:limit]]


def failures_shown(results: ImageResults, shown: Sequence[int]) -> str:
    """What a gallery of ``shown`` (label_failures') holds, as its caption says it."""
    total = int((results.predicted_labels != results.true_labels).sum())
    if len(shown) < total:
        return f"the {len(shown)} most confident of the {total} misclassified test images, most confident first"
    return f"the {total} misclassified test image{'s' if total > 1 else ''}, most confident first"


def box_examples(results: ImageResults, each: int = BOX_EXAMPLES) -> tuple[list[int], list[int]]:
    """Among the images of right label with a known box, the ``each`` of the best IoU and the ``each`` of the
    lowest IoU (Part 3 Q6), as (best first, lowest first); ([], []) without boxes. With fewer than twice
    ``each`` such images, the lowest are those the best did not take."""
    if results.iou is None:
        return [], []
    right = np.flatnonzero((results.predicted_labels == results.true_labels) & results.boxed)
    by_iou = [int(i) for i in right[np.argsort(-results.iou[right], kind="stable")]]
    best = by_iou[:each]
    lowest = [i for i in reversed(by_iou) if i not in best][:each]
    return best, lowest


def iou_range(results: ImageResults, chosen: Sequence[int]) -> str:
    """The IoUs of ``chosen`` as a caption says them, e.g. "IoU 0.96 to 0.91"."""
    assert results.iou is not None
    values = [float(results.iou[i]) for i in chosen]
    return f"IoU {values[0]:.2f}" if len(values) == 1 else f"IoU {values[0]:.2f} to {values[-1]:.2f}"


def write_named(sink: Sink, name: str, data: bytes | None) -> Path | None:
    return sink.write_bytes(name, data) if data is not None else None
