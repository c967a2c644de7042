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

import cv2
import numpy as np

from model.data.annotations import Annotation, image_path
from model.evaluation.metrics import IOU_THRESHOLDS, ImageResults, accuracy_by_iou
from model.reporting.model_report import ModelReport
from model.reporting.tables import Sink
from model.reporting.visualize import draw_prediction, draw_truth, encode_image, gallery
from model.runs.plots import Line2D, colours, draw_confusion, figure_bytes, integer_epochs, plt
from model.runs.run import best_epoch, training_figures

SplitHistory = tuple[str, list[dict[str, float]]]  # (model name, history rows)


def has_boxes(history: Sequence[dict[str, float]]) -> bool:
    return any(not math.isnan(row["val_iou"]) for row in history)


def history_png(
    histories: Sequence[SplitHistory], panels: Sequence[tuple[str, str, str]], title: str, unit: bool = False
) -> bytes:
    """One panel per (history key, panel title, y label): training (solid) and validation (dashed) per
    epoch, one colour per model, each model's best epoch marked with a dotted line of its colour."""
    figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels) + 2.5, 4.5), squeeze=False)
    for ax, (key, panel_title, y_label) in zip(axes[0], panels):
        for (_name, history), colour in zip(histories, colours(len(histories))):
            prefix, _ = training_figures(history)
            epochs = [r["epoch"] for r in history]
            ax.plot(epochs, [r[f"{prefix}_{key}"] for r in history], "-", color=colour)
            ax.plot(epochs, [r[f"val_{key}"] for r in history], "--", color=colour)
            best = best_epoch(history)
            if best is not None:
                ax.axvline(best, color=colour, linestyle=":", linewidth=1)
        ax.set(title=panel_title, xlabel="epoch", ylabel=y_label, **({"ylim": (0, 1.02)} if unit else {}))
        integer_epochs(ax)
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=c, label=name) for (name, _), c in zip(histories, colours(len(histories)))]
    _, train_label = training_figures(histories[0][1])
    handles += [
        Line2D([], [], color="black", linestyle="-", label=train_label),
        Line2D([], [], color="black", linestyle="--", label="validation"),
        Line2D([], [], color="black", linestyle=":", label="best epoch"),
    ]
    # beside the panels, not on them: with a few models the key would hide their curves
    axes[0][-1].legend(handles=handles, fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    figure.suptitle(title)
    figure.tight_layout()
    return figure_bytes(figure)


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
    figure, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4.5), squeeze=False)
    width = 0.8 / max(1, len(names))
    x = np.arange(len(classes))
    for ax, (metric, title) in zip(axes[0], metrics):
        for k, (name, test, colour) in enumerate(zip(names, tests, colours(len(names)))):
            per_label = (test or {}).get("per_label", {})
            values = [per_label.get(c, {}).get(metric) for c in classes]
            values = [0.0 if v is None or math.isnan(v) else v for v in values]
            ax.bar(x + (k - (len(names) - 1) / 2) * width, values, width, color=colour, label=name)
        ax.set(
            title=title, xticks=x, xticklabels=classes, xlabel="label", ylabel=metric.replace("_", " "), ylim=(0, 1.05)
        )
        ax.grid(axis="y", alpha=0.3)
    # below the panels, not on them: bars reach 1.0, where a key inside would hide their tops
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, fontsize="small", loc="lower center", ncol=min(4, len(names)), frameon=False)
    figure.tight_layout(rect=(0, 0.06 * math.ceil(len(names) / 4), 1, 1))
    return figure_bytes(figure)


def confusion_grid_png(names: Sequence[str], confusions: Sequence[dict], split: str = "test") -> bytes:
    """One confusion matrix per model (rows true, columns predicted)."""
    figure, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4), squeeze=False)
    for ax, name, confusion in zip(axes[0], names, confusions):
        draw_confusion(ax, confusion["labels"], confusion["matrix"], name)
    figure.suptitle(f"Confusion matrices ({split} split; rows: true label, columns: predicted)")
    figure.tight_layout()
    return figure_bytes(figure)


def iou_histograms_png(names: Sequence[str], ious: Sequence[np.ndarray], split: str = "test") -> bytes:
    """Distribution of the IoU of predicted and true boxes, per model."""
    figure, ax = plt.subplots(figsize=(7, 4.5))
    bins = [i / 20 for i in range(21)]
    for name, iou, colour in zip(names, ious, colours(len(names))):
        ax.hist(iou[np.isfinite(iou)], bins=bins, histtype="step", linewidth=2, color=colour, label=name)
    ax.axvline(0.5, color="grey", linestyle=":", label="IoU 0.5")
    ax.set(title=f"IoU of predicted and true boxes ({split} split)", xlabel="IoU", ylabel="images")
    ax.legend(fontsize="small")
    figure.tight_layout()
    return figure_bytes(figure)


def accuracy_by_iou_png(reports: Sequence[ModelReport], split: str = "test") -> bytes:
    """Each model's detection accuracy (right label and IoU >= t) against the IoU threshold t, 0.5 to 0.95."""
    figure, ax = plt.subplots(figsize=(9, 4.5))
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
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)  # beside: no curve hidden
    figure.tight_layout()
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


def label_failures(results: ImageResults, limit: int = 12) -> list[int]:
    """The misclassified images, most confident first (Part 1 Q4)."""
    wrong = np.flatnonzero(results.predicted_labels != results.true_labels)
    return [int(i) for i in wrong[np.argsort(-results.confidence[wrong], kind="stable")][:limit]]


def box_examples(results: ImageResults, each: int = 4) -> tuple[list[int], list[int]]:
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
