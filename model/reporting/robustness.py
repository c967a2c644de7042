"""How the models hold up as the test images are degraded: blur, noise, lower resolution."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import cv2
import numpy as np
import pandas as pd
import torch

from model.checkpoint import Checkpoint
from model.dataset import DetectionDataset
from model.evaluate import Inference, run_model
from model.images import to_chw_uint8
from model.metrics import summarize
from model.network import Detector
from model.plots import colours, figure_bytes, plt
from model.reporting.model_report import ModelReport
from model.reporting.tables import Sink, write_table

DEGRADATIONS = {  # name -> (unit, levels); the first level is the clean image
    "blur": ("Gaussian sigma (px at network size)", (0.0, 1.0, 2.0, 4.0)),
    "noise": ("noise std (grey levels)", (0.0, 10.0, 25.0, 50.0)),
    "resolution": ("scale factor", (1.0, 0.5, 0.25, 0.125)),
}


def degrade(images: torch.Tensor, kind: str, level: float, seed: int = 0) -> torch.Tensor:
    """(N, 3, S, S) uint8 -> the same images blurred, noised or at a lower resolution."""
    out = images.permute(0, 2, 3, 1).numpy().copy()  # (N, S, S, 3)
    size = out.shape[1]
    rng = np.random.default_rng(seed)
    for i in range(len(out)):
        if kind == "blur" and level > 0:
            out[i] = cv2.GaussianBlur(out[i], (0, 0), level)
        elif kind == "noise" and level > 0:
            out[i] = np.clip(out[i] + rng.normal(0, level, out[i].shape), 0, 255).astype(np.uint8)
        elif kind == "resolution" and level < 1:
            small = cv2.resize(out[i], (max(1, round(size * level)),) * 2, interpolation=cv2.INTER_AREA)
            out[i] = cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)
    return torch.stack([to_chw_uint8(im) for im in out])


def sweep(
    report: ModelReport, model: Detector, dataset: DetectionDataset, checkpoint: Checkpoint, inference: Inference
) -> list[dict[str, object]]:
    """Test figures per degradation level; the clean level (the first) reuses the report's."""
    rows: list[dict[str, object]] = []
    assert report.test is not None
    for kind, (unit, levels) in DEGRADATIONS.items():
        for level in levels:
            if level == levels[0]:
                figures = report.test["overall"]
            else:
                degraded = copy.copy(dataset)
                degraded.images = degrade(dataset.images, kind, level)
                figures = summarize(run_model(model, degraded, checkpoint, inference)[1])["overall"]
            rows.append(
                {
                    "model": report.name,
                    "degradation": kind,
                    "unit": unit,
                    "level": level,
                    "accuracy": figures["accuracy"],
                    "mean_iou": figures.get("mean_iou", float("nan")),
                }
            )
    return rows


def write_robustness(rows: Sequence[dict[str, object]], sink: Sink) -> None:
    """robustness.csv, .md, .tex and .png into ``sink``."""
    frame = pd.DataFrame(rows)
    write_table(sink, "robustness", frame.drop(columns="unit"), "Robustness (test split)")
    sink.write_bytes("robustness.png", robustness_png(frame))


def robustness_png(frame: pd.DataFrame) -> bytes:
    """Accuracy and IoU as the test images are degraded, one panel per degradation."""
    table = frame.to_dict("records")
    kinds = list(dict.fromkeys(row["degradation"] for row in table))
    models = list(dict.fromkeys(row["model"] for row in table))
    figure, axes = plt.subplots(2, len(kinds), figsize=(4.5 * len(kinds), 7.5), squeeze=False)
    for col, kind in enumerate(kinds):
        for model, colour in zip(models, colours(len(models))):
            rows = [r for r in table if r["degradation"] == kind and r["model"] == model]
            levels = [r["level"] for r in rows]
            for row_index, metric in enumerate(("accuracy", "mean_iou")):
                values = [r[metric] for r in rows]
                axes[row_index][col].plot(levels, values, "o-", color=colour, label=model)
                axes[row_index][col].set(
                    title=f"{kind}: {metric.replace('_', ' ')}",
                    xlabel=rows[0]["unit"] if rows else "",
                    ylabel=metric.replace("_", " "),
                    ylim=(0, 1.02),
                )
        for row_index in range(2):
            axes[row_index][col].grid(alpha=0.3)
            axes[row_index][col].legend(fontsize="small")
    figure.suptitle("Robustness: test figures as the images are degraded")
    figure.tight_layout()
    return figure_bytes(figure)
