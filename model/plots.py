"""Figures written to files; matplotlib's Agg backend needs no display."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np

from model.files import atomic_path

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator


def colours(n: int) -> list[tuple[float, float, float, float]]:
    """One distinct colour per curve (matplotlib's tab10, repeating after ten)."""
    return [plt.get_cmap("tab10")(i % 10) for i in range(n)]


def integer_epochs(ax) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def save_figure(figure, path: Path) -> None:
    try:
        with atomic_path(Path(path)) as tmp:
            figure.savefig(tmp, dpi=120, bbox_inches="tight")
    finally:
        plt.close(figure)


def convergence_plot(history: Sequence[dict], path: Path, title: str) -> None:
    """Loss (total, class, box), accuracy and mean IoU per epoch, train vs validation."""
    epochs = [row["epoch"] for row in history]
    has_boxes = any(not math.isnan(row["train_iou"]) for row in history)
    panels = [("Loss", ["loss", "class_loss"] + (["box_loss"] if has_boxes else [])), ("Accuracy", ["accuracy"])]
    if has_boxes:
        panels.append(("Mean IoU", ["iou"]))
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    styles = {"loss": "-", "class_loss": "--", "box_loss": ":"}
    for ax, (name, keys) in zip(axes, panels):
        for key in keys:
            for split, colour in (("train", "tab:blue"), ("val", "tab:orange")):
                label = f"{split} {key.replace('_', ' ')}" if name == "Loss" else split
                ax.plot(
                    epochs,
                    [row[f"{split}_{key}"] for row in history],
                    styles.get(key, "-"),
                    color=colour,
                    marker="o" if len(epochs) < 30 else None,
                    markersize=3,
                    label=label,
                )
        ax.set(title=name, xlabel="epoch", ylabel=name.lower())
        integer_epochs(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    figure.suptitle(title)
    figure.tight_layout()
    save_figure(figure, path)


def draw_confusion(ax, labels: Sequence[str], matrix: Sequence[Sequence[int]], title: str):
    """Counts, rows true and columns predicted, shaded by the share of each true label; the image."""
    counts = np.asarray(matrix)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", color="white" if shares[i, j] > 0.5 else "black")
    ax.set(
        xticks=range(len(labels)),
        yticks=range(len(labels)),
        xticklabels=labels,
        yticklabels=labels,
        xlabel="predicted label",
        ylabel="true label",
        title=title,
    )
    return image


def confusion_plot(labels: Sequence[str], matrix: Sequence[Sequence[int]], path: Path, title: str) -> None:
    """One confusion matrix (eval.py), with a colour bar of the shares."""
    figure, ax = plt.subplots(figsize=(1.2 * len(labels) + 2, 1.1 * len(labels) + 1.5))
    figure.colorbar(draw_confusion(ax, labels, matrix, title), ax=ax, label="share of the true label")
    figure.tight_layout()
    save_figure(figure, path)
