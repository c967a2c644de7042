"""One model's report in a comparison (a trained network, or a classic baseline), and the comparison
table's row of it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from model.metrics import ImageResults
from model.runs import training_figures

TIMING_COLUMNS = ("infer_ms_batched", "infer_ms_single")  # vary between runs; everything else is reproducible
COUNT_COLUMNS = ("parameters", "trainable", "best_epoch", "image_size")


@dataclass
class ModelReport:
    """What compare.py knows about one trained model (or one classic baseline)."""

    name: str
    model: str
    device: str
    parameters: int | None = None
    trainable: int | None = None
    history: list[dict[str, float]] = field(default_factory=list)  # history.csv rows
    image_size: int | None = None  # the network's input side
    trained_on: str = ""  # the device its epochs ran on (run.json)
    threads: int | None = None  # the CPU threads its training used (run.json)
    best_epoch: int | None = None
    test: dict | None = None  # summarize() figures plus the loss, on the test split
    results: ImageResults | None = None  # per-image test results
    extra_sets: dict[str, dict] = field(default_factory=dict)  # name -> figures, e.g. web_images
    timing: dict[str, float] = field(default_factory=dict)
    note: str = ""
    key: str = ""  # what names its files (the run's name); ``name`` is what tables and legends show
    identity: str = ""  # what its figures are drawn from (its stored evaluation's identity), for figures kept

    @property
    def file_stem(self) -> str:
        return self.key or self.name


def _at_epoch(history: list[dict[str, float]], epoch: int | None) -> dict[str, float]:
    return next((row for row in history if int(row["epoch"]) == epoch), {})


def row_of(report: ModelReport, classes: Sequence[str]) -> dict[str, object]:
    """The comparison table's row: plain values, NaN where a figure does not apply."""
    best = _at_epoch(report.history, report.best_epoch)
    prefix, _ = training_figures(report.history)
    sample = "train_sample" if prefix == "train" else "train_running"  # measured each epoch: not the whole split
    test = report.test or {}
    overall = test.get("overall", {})
    row: dict[str, object] = {
        "model": report.name,
        "network": report.model,
        "parameters": report.parameters,
        "trainable": report.trainable,
        "seconds_per_epoch": float(np.mean([r["seconds"] for r in report.history])) if report.history else math.nan,
        "best_epoch": report.best_epoch,
        "image_size": report.image_size,
        "trained_on": report.trained_on or "-",
        f"{sample}_loss": best.get(f"{prefix}_loss", math.nan),
        f"{sample}_accuracy": best.get(f"{prefix}_accuracy", math.nan),
        "val_loss": best.get("val_loss", math.nan),
        "val_accuracy": best.get("val_accuracy", math.nan),
        "test_loss": test.get("loss", math.nan),
        "test_class_loss": test.get("class_loss", math.nan),
        "test_box_loss": test.get("box_loss", math.nan),
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
