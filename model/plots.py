"""Figures as PNG bytes (written whole by the caller's writer); matplotlib's Agg backend needs no display.

The convergence plot training writes, the confusion matrix of each evaluation, and the helpers the report's
figures draw with.

Every curve of a run's epochs marks the best epoch (the one best.pth holds), every figure names its
run and what it shows, and no legend repeats an entry.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Sequence

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from model.runs import best_epoch, training_figures


def colours(n: int) -> list[tuple[float, float, float, float]]:
    """One distinct colour per curve (matplotlib's tab10, repeating after ten)."""
    return [plt.get_cmap("tab10")(i % 10) for i in range(n)]


def integer_epochs(ax) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def figure_bytes(figure) -> bytes:
    """The figure as PNG bytes, and closed. No date or software version is in the file (the same figure
    gives the same bytes); its "Axes" text says where each panel is (left, bottom, right, top as shares of
    the image), so that a test can look inside every panel for a blank one."""
    try:
        panels = ";".join(",".join(f"{v:.4f}" for v in ax.get_position().extents) for ax in figure.axes)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=120, metadata={"Software": None, "Axes": panels})
        return buffer.getvalue()
    finally:
        plt.close(figure)


def convergence_png(history: Sequence[dict], title: str) -> bytes:
    """Loss (total, class, box), accuracy and mean IoU per epoch, training against validation, the best
    epoch marked; the training curves are the evaluation-mode figures when the run measured them."""
    prefix, train_label = training_figures(history)
    epochs = [row["epoch"] for row in history]
    has_boxes = any(not math.isnan(row["val_iou"]) for row in history)
    losses = ["loss", "class_loss", "box_loss"] if has_boxes else ["loss"]  # without boxes the loss is the class loss
    panels = [("Loss", losses), ("Accuracy", ["accuracy"]), *([("Mean IoU", ["iou"])] if has_boxes else [])]
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    styles = {"loss": "-", "class_loss": "--", "box_loss": ":"}
    best, marker = best_epoch(history), "o" if len(epochs) < 30 else None
    for ax, (name, keys) in zip(axes[0], panels):
        for key in keys:
            for column, label, colour in ((prefix, train_label, "tab:blue"), ("val", "validation", "tab:orange")):
                values = [row[f"{column}_{key}"] for row in history]
                legend = label if name != "Loss" else f"{label}: {key.replace('_', ' ')}"
                ax.plot(epochs, values, styles.get(key, "-"), color=colour, marker=marker, markersize=3, label=legend)
        if best is not None:
            ax.axvline(best, color="grey", linestyle=":", linewidth=1.2, label="best epoch")
        ax.set(title=name, xlabel="epoch", ylabel=name.lower())
        integer_epochs(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")  # each label once: a panel's curves differ by split (and loss term)
    figure.suptitle(f"{title}: training and validation per epoch (best epoch {best})")
    figure.tight_layout()
    return figure_bytes(figure)


def draw_confusion(ax, labels: Sequence[str], matrix: Sequence[Sequence[int]], title: str):
    """Counts, rows true and columns predicted, shaded by the share of each true label; the image."""
    counts, n = np.asarray(matrix), len(labels)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i, j in np.ndindex(n, n):
        ax.text(j, i, str(counts[i, j]), ha="center", va="center", color="white" if shares[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), labels)
    ax.set_yticks(range(n), labels)
    ax.set(xlabel="predicted label", ylabel="true label")
    ax.set_title(textwrap.fill(title, 30), fontsize="medium")  # a long run name wraps instead of being cut
    return image


def confusion_png(labels: Sequence[str], matrix: Sequence[Sequence[int]], title: str) -> bytes:
    """One confusion matrix (eval.py), with a colour bar of the shares."""
    figure, ax = plt.subplots(figsize=(1.2 * len(labels) + 2, 1.1 * len(labels) + 1.5))
    figure.colorbar(draw_confusion(ax, labels, matrix, title), ax=ax, label="share of the true label")
    figure.tight_layout()
    return figure_bytes(figure)


__all__ = ["Line2D", "plt"]
