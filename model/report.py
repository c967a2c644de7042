"""The comparison report: one row per model, tables in Markdown / CSV / LaTeX, figures, error analysis."""
from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.metrics import ImageResults
from model.plots import integer_epochs, plt, save_figure

TIMING_COLUMNS = ("infer_ms_batched", "infer_ms_single")  # vary between runs; everything else is reproducible


@dataclass
class ModelReport:
    """What compare.py knows about one trained model (or one classic baseline)."""

    name: str
    model: str
    device: str
    parameters: int | None = None
    trainable: int | None = None
    history: list[dict] = field(default_factory=list)  # history.csv rows, floats
    best_epoch: int | None = None
    test: dict | None = None  # summarize() figures plus loss terms, on the test split
    results: ImageResults | None = None  # per-image test results
    extra_sets: dict[str, dict] = field(default_factory=dict)  # name -> figures, e.g. web_images
    timing: dict[str, float] = field(default_factory=dict)
    note: str = ""


def read_history(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path) as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def _at_epoch(history: list[dict], epoch: int | None) -> dict:
    return next((row for row in history if int(row["epoch"]) == epoch), {})


def row_of(report: ModelReport, classes: Sequence[str]) -> dict[str, object]:
    """The comparison table's row: plain values, NaN where a figure does not apply."""
    best = _at_epoch(report.history, report.best_epoch)
    test = report.test or {}
    overall = test.get("overall", {})
    row: dict[str, object] = {
        "model": report.name, "network": report.model,
        "parameters": report.parameters if report.parameters is not None else math.nan,
        "trainable": report.trainable if report.trainable is not None else math.nan,
        "seconds_per_epoch": float(np.mean([r["seconds"] for r in report.history])) if report.history else math.nan,
        "best_epoch": report.best_epoch if report.best_epoch is not None else math.nan,
        "train_loss": best.get("train_loss", math.nan), "train_accuracy": best.get("train_accuracy", math.nan),
        "val_loss": best.get("val_loss", math.nan), "val_accuracy": best.get("val_accuracy", math.nan),
        "test_loss": test.get("loss", math.nan), "test_accuracy": overall.get("accuracy", math.nan),
        "test_mean_iou": overall.get("mean_iou", math.nan), "test_iou_at_0.5": overall.get("iou_at_threshold", math.nan),
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


def _cell(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def write_tables(rows: list[dict], folder: Path) -> dict[str, Path]:
    """comparison.csv, comparison.md and comparison.tex in ``folder``."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    paths = {ext: folder / f"comparison.{ext}" for ext in ("csv", "md", "tex")}
    with open(paths["csv"], "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c, math.nan)) for c in columns) + " |" for row in rows]
    paths["md"].write_text("# Model comparison\n\nTest figures on each run's own test split; train and validation "
                           "figures at the best epoch.\n\n" + "\n".join(lines) + "\n")
    escape = lambda text: str(text).replace("_", r"\_").replace("%", r"\%")  # noqa: E731
    tex = [r"\begin{tabular}{" + "l" + "r" * (len(columns) - 1) + "}", r"\hline",
           " & ".join(escape(c) for c in columns) + r" \\", r"\hline"]
    tex += [" & ".join(escape(_cell(row.get(c, math.nan))).replace(",", "{,}") for c in columns) + r" \\" for row in rows]
    tex += [r"\hline", r"\end{tabular}"]
    paths["tex"].write_text("% Model comparison (generated by compare.py)\n" + "\n".join(tex) + "\n")
    return paths


# ----------------------------------------------------------------------------------------------
# Error analysis
# ----------------------------------------------------------------------------------------------
def error_analysis(report: ModelReport, iou_threshold: float = 0.5, examples: int = 3, worst: int = 5) -> str:
    """Markdown: misclassifications by (true -> predicted) with example files, box failures per
    label, and the worst cases (wrong label first, then lowest IoU)."""
    r = report.results
    lines = [f"## {report.name}", ""]
    if r is None:
        return "\n".join(lines + ["No per-image results.", ""])
    key = lambda i: "/".join(Path(r.paths[i]).parts[-2:])  # noqa: E731
    pairs = Counter()
    samples: dict[tuple[str, str], list[str]] = {}
    for i in np.flatnonzero(r.predicted_labels != r.true_labels):
        pair = (r.classes[r.true_labels[i]], r.classes[r.predicted_labels[i]])
        pairs[pair] += 1
        samples.setdefault(pair, []).append(key(i))
    lines += ["| true → predicted | images | examples |", "|---|---|---|"]
    for (true, predicted), count in sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"| {true} → {predicted} | {count} | {', '.join(samples[(true, predicted)][:examples])} |")
    if not pairs:
        lines.append("| (none) | 0 | |")
    if r.iou is not None:
        lines += ["", f"Box failures (IoU < {iou_threshold}) per label:", "", "| label | failures | of | mean IoU |",
                  "|---|---|---|---|"]
        for index, label in enumerate(r.classes):
            selected = r.true_labels == index
            failing = int((r.iou[selected] < iou_threshold).sum())
            mean = float(r.iou[selected].mean()) if selected.any() else math.nan
            lines.append(f"| {label} | {failing} | {int(selected.sum())} | {_cell(mean)} |")
    order = np.lexsort(((r.iou if r.iou is not None else -r.confidence), r.predicted_labels == r.true_labels))
    lines += ["", "Worst cases:", "", "| image | true | predicted | confidence | IoU |", "|---|---|---|---|---|"]
    for i in order[:worst]:
        iou = "-" if r.iou is None else f"{r.iou[i]:.3f}"
        lines.append(f"| {key(i)} | {r.classes[r.true_labels[i]]} | {r.classes[r.predicted_labels[i]]} | "
                     f"{r.confidence[i]:.3f} | {iou} |")
    return "\n".join(lines + [""])


# ----------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------
def _colours(n: int):
    return [plt.get_cmap("tab10")(i % 10) for i in range(n)]


def history_figure(reports: Sequence[ModelReport], panels: Sequence[tuple[str, str, str]], title: str, path: Path,
                   unit_range: bool = False) -> None:
    """One panel per (history key, panel title, y label): train (solid) and validation (dashed)
    per epoch, one colour per model."""
    figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for ax, (key, panel_title, y_label) in zip(axes[0], panels):
        for report, colour in zip(reports, _colours(len(reports))):
            epochs = [r["epoch"] for r in report.history]
            for split, style in (("train", "-"), ("val", "--")):
                ax.plot(epochs, [r[f"{split}_{key}"] for r in report.history], style, color=colour,
                        label=f"{report.name} {split}")
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
    history_figure(reports, [("accuracy", "Accuracy", "accuracy"), ("iou", "Mean IoU", "mean IoU")],
                   "Accuracy and IoU of every model", path, unit_range=True)


def per_label_bars(reports: Sequence[ModelReport], classes: Sequence[str], path: Path) -> None:
    """Test accuracy and mean IoU per label, one bar per model."""
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / max(1, len(reports))
    x = np.arange(len(classes))
    for ax, metric, title in ((axes[0], "accuracy", "Test accuracy per label"), (axes[1], "mean_iou", "Test mean IoU per label")):
        for k, (report, colour) in enumerate(zip(reports, _colours(len(reports)))):
            per_label = (report.test or {}).get("per_label", {})
            values = [per_label.get(c, {}).get(metric, math.nan) for c in classes]
            values = [0.0 if v is None or math.isnan(v) else v for v in values]
            ax.bar(x + (k - (len(reports) - 1) / 2) * width, values, width, color=colour, label=report.name)
        ax.set(title=title, xticks=x, xticklabels=classes, xlabel="label", ylabel=metric.replace("_", " "), ylim=(0, 1.05))
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize="small")
    figure.tight_layout()
    save_figure(figure, path)


def confusion_grid(reports: Sequence[ModelReport], path: Path) -> None:
    """One test confusion matrix per model (rows true, columns predicted)."""
    shown = [r for r in reports if r.test and "confusion" in r.test]
    figure, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 4), squeeze=False)
    for ax, report in zip(axes[0], shown):
        labels, counts = report.test["confusion"]["labels"], np.asarray(report.test["confusion"]["matrix"])
        shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        for i in range(len(labels)):
            for j in range(len(labels)):
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", color="white" if shares[i, j] > 0.5 else "black")
        ax.set(title=report.name, xticks=range(len(labels)), yticks=range(len(labels)), xticklabels=labels,
               yticklabels=labels, xlabel="predicted", ylabel="true")
    figure.suptitle("Test confusion matrices")
    figure.tight_layout()
    save_figure(figure, path)


def iou_histograms(reports: Sequence[ModelReport], path: Path) -> None:
    """Distribution of the test IoU per model."""
    shown = [r for r in reports if r.results is not None and r.results.iou is not None]
    figure, ax = plt.subplots(figsize=(7, 4.5))
    bins = np.linspace(0, 1, 21)
    for report, colour in zip(shown, _colours(len(shown))):
        ax.hist(report.results.iou, bins=bins, histtype="step", linewidth=2, color=colour, label=report.name)
    ax.axvline(0.5, color="grey", linestyle=":", label="IoU 0.5")
    ax.set(title="Test IoU of predicted and true boxes", xlabel="IoU", ylabel="images")
    ax.legend(fontsize="small")
    figure.tight_layout()
    save_figure(figure, path)


def robustness_plot(table: list[dict], path: Path) -> None:
    """Accuracy and IoU as the test images are degraded, one panel per degradation."""
    kinds = list(dict.fromkeys(row["degradation"] for row in table))
    models = list(dict.fromkeys(row["model"] for row in table))
    figure, axes = plt.subplots(2, len(kinds), figsize=(4.5 * len(kinds), 7.5), squeeze=False)
    for col, kind in enumerate(kinds):
        for model, colour in zip(models, _colours(len(models))):
            rows = [r for r in table if r["degradation"] == kind and r["model"] == model]
            levels = [r["level"] for r in rows]
            for row_index, metric in enumerate(("accuracy", "mean_iou")):
                values = [r[metric] for r in rows]
                axes[row_index][col].plot(levels, values, "o-", color=colour, label=model)
                axes[row_index][col].set(title=f"{kind}: {metric.replace('_', ' ')}", xlabel=rows[0]["unit"] if rows else "",
                                         ylabel=metric.replace("_", " "), ylim=(0, 1.02))
        for row_index in range(2):
            axes[row_index][col].grid(alpha=0.3)
            axes[row_index][col].legend(fontsize="small")
    figure.suptitle("Robustness: test figures as the images are degraded")
    figure.tight_layout()
    save_figure(figure, path)
