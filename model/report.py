"""The comparison of trained models (Part 2 Q4, Part 3 Q8, Part 4): one row per model, the error
analysis and the figures, written by compare.py and by the practical's report."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from model.files import write_text
from model.metrics import ImageResults
from model.plots import colours, draw_confusion, integer_epochs, plt, save_figure
from model.tables import to_markdown, write_table
from model.visualize import draw_prediction, gallery, save_image

TIMING_COLUMNS = ("infer_ms_batched", "infer_ms_single")  # vary between runs; everything else is reproducible
COUNT_COLUMNS = ("parameters", "trainable", "best_epoch")


@dataclass
class ModelReport:
    """What compare.py knows about one trained model (or one classic baseline)."""

    name: str
    model: str
    device: str
    parameters: int | None = None
    trainable: int | None = None
    history: list[dict[str, float]] = field(default_factory=list)  # history.csv rows
    best_epoch: int | None = None
    test: dict | None = None  # summarize() figures plus the loss, on the test split
    results: ImageResults | None = None  # per-image test results
    extra_sets: dict[str, dict] = field(default_factory=dict)  # name -> figures, e.g. web_images
    timing: dict[str, float] = field(default_factory=dict)
    note: str = ""


def read_history(path: Path) -> list[dict[str, float]]:
    """A run's history.csv as rows of floats ([] when there is none)."""
    if not Path(path).exists():
        return []
    return [{str(k): float(v) for k, v in row.items()} for row in pd.read_csv(path).to_dict("records")]


def _at_epoch(history: list[dict[str, float]], epoch: int | None) -> dict[str, float]:
    return next((row for row in history if int(row["epoch"]) == epoch), {})


def row_of(report: ModelReport, classes: Sequence[str]) -> dict[str, object]:
    """The comparison table's row: plain values, NaN where a figure does not apply."""
    best = _at_epoch(report.history, report.best_epoch)
    test = report.test or {}
    overall = test.get("overall", {})
    row: dict[str, object] = {
        "model": report.name,
        "network": report.model,
        "parameters": report.parameters,
        "trainable": report.trainable,
        "seconds_per_epoch": float(np.mean([r["seconds"] for r in report.history])) if report.history else math.nan,
        "best_epoch": report.best_epoch,
        "train_loss": best.get("train_loss", math.nan),
        "train_accuracy": best.get("train_accuracy", math.nan),
        "val_loss": best.get("val_loss", math.nan),
        "val_accuracy": best.get("val_accuracy", math.nan),
        "test_loss": test.get("loss", math.nan),
        "test_accuracy": overall.get("accuracy", math.nan),
        "test_mean_iou": overall.get("mean_iou", math.nan),
        "test_iou_at_0.5": overall.get("iou_at_threshold", math.nan),
    }
    for label in classes:
        figures = test.get("per_label", {}).get(label, {})
        row[f"accuracy_{label}"] = figures.get("accuracy", math.nan)
        row[f"iou_{label}"] = figures.get("mean_iou", math.nan)
    for name, figures in report.extra_sets.items():
        row[f"{name}_accuracy"] = figures["overall"]["accuracy"]
        row[f"{name}_mean_iou"] = figures["overall"].get("mean_iou", math.nan)
    row["infer_ms_batched"] = report.timing.get("batched_ms", math.nan)
    row["infer_ms_single"] = report.timing.get("single_ms", math.nan)
    row["device"] = report.device
    row["note"] = report.note
    return row


def comparison_frame(reports: Sequence[ModelReport], classes: Sequence[str]) -> pd.DataFrame:
    """One row per model; counts as integers, NaN where a figure does not apply."""
    frame = pd.DataFrame([row_of(r, classes) for r in reports])
    return frame.astype(dict.fromkeys(COUNT_COLUMNS, "Int64"))


def write_comparison(frame: pd.DataFrame, out: Path) -> dict[str, Path]:
    """comparison.csv, .md and .tex in ``out``."""
    return write_table(
        frame,
        Path(out) / "comparison",
        "Model comparison",
        "Test figures on each run's own test split; train and validation figures at the best epoch.",
    )


# ----------------------------------------------------------------------------------------------
# Error analysis
# ----------------------------------------------------------------------------------------------
def error_analysis(report: ModelReport, iou_threshold: float = 0.5, examples: int = 3, worst: int = 5) -> str:
    """Markdown: misclassifications by (true -> predicted) with example files, box failures per
    label, and the worst cases (wrong label first, then lowest IoU)."""
    r = report.results
    lines = [f"## {report.name}", ""]
    if r is None:
        return "\n".join([*lines, "No per-image results.", ""])

    def key(i: int) -> str:
        return "/".join(Path(r.paths[i]).parts[-2:])

    pairs: Counter[tuple[str, str]] = Counter()
    samples: dict[tuple[str, str], list[str]] = {}
    for i in np.flatnonzero(r.predicted_labels != r.true_labels):
        pair = (r.classes[r.true_labels[i]], r.classes[r.predicted_labels[i]])
        pairs[pair] += 1
        samples.setdefault(pair, []).append(key(int(i)))
    confusions = pd.DataFrame(
        [
            {
                "true → predicted": f"{true} → {predicted}",
                "images": count,
                "examples": ", ".join(samples[(true, predicted)][:examples]),
            }
            for (true, predicted), count in sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        ]
        or [{"true → predicted": "(none)", "images": 0, "examples": ""}]
    )
    lines.append(to_markdown(confusions))
    if r.iou is not None:
        per_label = pd.DataFrame(
            [
                {
                    "label": label,
                    "failures": int((r.iou[r.true_labels == i] < iou_threshold).sum()),
                    "of": int((r.true_labels == i).sum()),
                    "mean IoU": float(r.iou[r.true_labels == i].mean()) if (r.true_labels == i).any() else math.nan,
                }
                for i, label in enumerate(r.classes)
            ]
        )
        lines += ["", f"Box failures (IoU < {iou_threshold}) per label:", "", to_markdown(per_label)]
    order = np.lexsort(((r.iou if r.iou is not None else -r.confidence), r.predicted_labels == r.true_labels))
    cases = pd.DataFrame(
        [
            {
                "image": key(i),
                "true": r.classes[r.true_labels[i]],
                "predicted": r.classes[r.predicted_labels[i]],
                "confidence": float(r.confidence[i]),
                "IoU": math.nan if r.iou is None else float(r.iou[i]),
            }
            for i in order[:worst]
        ]
    )
    lines += ["", "Worst cases:", "", to_markdown(cases, digits=3)]
    return "\n".join([*lines, ""])


def write_error_analysis(reports: Sequence[ModelReport], path: Path) -> None:
    write_text(path, "# Error analysis (test split)\n\n" + "\n".join(error_analysis(r) for r in reports))


# ----------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------
def history_figure(
    reports: Sequence[ModelReport],
    panels: Sequence[tuple[str, str, str]],
    title: str,
    path: Path,
    unit_range: bool = False,
) -> None:
    """One panel per (history key, panel title, y label): train (solid) and validation (dashed)
    per epoch, one colour per model."""
    figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for ax, (key, panel_title, y_label) in zip(axes[0], panels):
        for report, colour in zip(reports, colours(len(reports))):
            epochs = [r["epoch"] for r in report.history]
            for split, style in (("train", "-"), ("val", "--")):
                ax.plot(
                    epochs,
                    [r[f"{split}_{key}"] for r in report.history],
                    style,
                    color=colour,
                    label=f"{report.name} {split}",
                )
        ax.set(title=panel_title, xlabel="epoch", ylabel=y_label, **({"ylim": (0, 1.02)} if unit_range else {}))
        integer_epochs(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", ncol=2)
    figure.suptitle(f"{title} (solid: train, dashed: validation)")
    figure.tight_layout()
    save_figure(figure, path)


def loss_curves(reports: Sequence[ModelReport], path: Path) -> None:
    """Class and box loss of every model on one figure (Part 3 Q8)."""
    has_box = any(r.history and not math.isnan(r.history[0]["train_iou"]) for r in reports)
    panels = [("class_loss", "Class loss", "loss")] + ([("box_loss", "Box loss", "loss")] if has_box else [])
    history_figure(reports, panels, "Loss of every model", path)


def metric_curves(reports: Sequence[ModelReport], path: Path) -> None:
    """Accuracy and mean IoU of every model."""
    history_figure(
        reports,
        [("accuracy", "Accuracy", "accuracy"), ("iou", "Mean IoU", "mean IoU")],
        "Accuracy and IoU of every model",
        path,
        unit_range=True,
    )


def per_label_bars(reports: Sequence[ModelReport], classes: Sequence[str], path: Path) -> None:
    """Test accuracy and mean IoU per label, one bar per model."""
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / max(1, len(reports))
    x = np.arange(len(classes))
    for ax, metric, title in (
        (axes[0], "accuracy", "Test accuracy per label"),
        (axes[1], "mean_iou", "Test mean IoU per label"),
    ):
        for k, (report, colour) in enumerate(zip(reports, colours(len(reports)))):
            per_label = (report.test or {}).get("per_label", {})
            values = [per_label.get(c, {}).get(metric, math.nan) for c in classes]
            values = [0.0 if v is None or math.isnan(v) else v for v in values]
            ax.bar(x + (k - (len(reports) - 1) / 2) * width, values, width, color=colour, label=report.name)
        ax.set(
            title=title, xticks=x, xticklabels=classes, xlabel="label", ylabel=metric.replace("_", " "), ylim=(0, 1.05)
        )
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize="small")
    figure.tight_layout()
    save_figure(figure, path)


def confusion_grid(reports: Sequence[ModelReport], path: Path) -> None:
    """One test confusion matrix per model (rows true, columns predicted)."""
    shown = [(r.name, r.test["confusion"]) for r in reports if r.test and "confusion" in r.test]
    figure, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 4), squeeze=False)
    for ax, (name, confusion) in zip(axes[0], shown):
        draw_confusion(ax, confusion["labels"], confusion["matrix"], name)
    figure.suptitle("Test confusion matrices")
    figure.tight_layout()
    save_figure(figure, path)


def iou_histograms(reports: Sequence[ModelReport], path: Path) -> None:
    """Distribution of the test IoU per model."""
    shown = [(r.name, r.results.iou) for r in reports if r.results is not None and r.results.iou is not None]
    figure, ax = plt.subplots(figsize=(7, 4.5))
    bins = [i / 20 for i in range(21)]
    for (name, iou), colour in zip(shown, colours(len(shown))):
        ax.hist(iou, bins=bins, histtype="step", linewidth=2, color=colour, label=name)
    ax.axvline(0.5, color="grey", linestyle=":", label="IoU 0.5")
    ax.set(title="Test IoU of predicted and true boxes", xlabel="IoU", ylabel="images")
    ax.legend(fontsize="small")
    figure.tight_layout()
    save_figure(figure, path)


def failure_gallery(results: ImageResults, path: Path, limit: int = 12) -> bool:
    """A grid of (at most ``limit``) failures, drawn as predict.py draws them; whether there were any."""
    tiles = []
    for i in np.flatnonzero(results.failures(0.5))[:limit]:
        image = cv2.imread(str(results.paths[i]))
        if image is None:
            continue
        box = results.predicted_boxes[i] if results.predicted_boxes is not None else None
        tiles.append(
            draw_prediction(
                image,
                results.classes[results.predicted_labels[i]],
                float(results.confidence[i]),
                box,
                results.classes[results.true_labels[i]],
                results.true_boxes[i],
                None if results.iou is None else float(results.iou[i]),
                failure=True,
            )
        )
    if tiles:
        save_image(path, gallery(tiles))
    return bool(tiles)


def write_figures(reports: Sequence[ModelReport], classes: Sequence[str], out: Path) -> list[Path]:
    """Every comparison figure into ``out``; the files written."""
    out = Path(out)
    written = []
    trained = [r for r in reports if r.history]
    if trained:
        loss_curves(trained, out / "loss_curves.png")
        metric_curves(trained, out / "accuracy_iou_curves.png")
        written += [out / "loss_curves.png", out / "accuracy_iou_curves.png"]
    per_label_bars(reports, classes, out / "per_label.png")
    confusion_grid(reports, out / "confusion_matrices.png")
    iou_histograms(reports, out / "iou_histograms.png")
    written += [out / "per_label.png", out / "confusion_matrices.png", out / "iou_histograms.png"]
    for report in reports:
        if report.results is not None and failure_gallery(report.results, out / f"failures_{report.name}.png"):
            written.append(out / f"failures_{report.name}.png")
    return written
