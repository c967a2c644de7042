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
from model.plots import colours, figure_bytes, plt
from model.reporting.figures import zoom
from model.reporting.tables import Sink, write_table

DEGRADATIONS = {  # name -> (unit, levels); the first level is the clean image
    "blur": ("Gaussian sigma (px at network size)", (0.0, 1.0, 2.0, 4.0)),
    "noise": ("noise std (grey levels)", (0.0, 10.0, 25.0, 50.0)),
    "resolution": ("scale factor", (1.0, 0.5, 0.25, 0.125)),
}


def degrade(images: torch.Tensor, kind: str, level: float, seed: int = 0) -> torch.Tensor:
    """(N, 3, S, S) uint8 -> the same images blurred, noised or at a lower resolution."""
    out = images.permute(0, 2, 3, 1).numpy().copy()  # (N, S, S, 3)
    size, rng = out.shape[1], np.random.default_rng(seed)
    for i in range(len(out)):
        if kind == "blur" and level > 0:
            out[i] = cv2.GaussianBlur(out[i], (0, 0), level)
        elif kind == "noise" and level > 0:
            out[i] = np.clip(out[i] + rng.normal(0, level, out[i].shape), 0, 255).astype(np.uint8)
        elif kind == "resolution" and level < 1:
            small = cv2.resize(out[i], (max(1, round(size * level)),) * 2, interpolation=cv2.INTER_AREA)
            out[i] = cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)
    return torch.stack([to_chw_uint8(im) for im in out])


def sweep(name: str, clean: dict, model: torch.nn.Module, dataset: DetectionDataset, checkpoint: Checkpoint,
          inference: Inference) -> list[dict[str, object]]:  # fmt: skip
    """Test figures per degradation level; the clean level (the first) is ``clean``, the model's figures already."""
    rows: list[dict[str, object]] = []
    for kind, (unit, levels) in DEGRADATIONS.items():
        for level in levels:
            figures = clean
            if level != levels[0]:
                degraded = copy.copy(dataset)
                degraded._cached = degrade(dataset.images, kind, level)  # (N, 3, S, S) in memory: its rows in order
                degraded._position = torch.arange(len(dataset))
                figures = summarize(run_model(model, degraded, checkpoint, inference)[1])["overall"]
            row = {"model": name, "degradation": kind, "unit": unit, "level": level, "accuracy": figures["accuracy"]}
            rows.append(row | {"mean_iou": figures.get("mean_iou", float("nan"))})
    return rows


def write_robustness(rows: Sequence[dict[str, object]], sink: Sink) -> None:
    """robustness.csv, .md, .tex and .png into ``sink``."""
    frame = pd.DataFrame(rows)
    write_table(sink, "robustness", frame.drop(columns="unit"), "Robustness (test split)")
    sink.write_bytes("robustness.png", robustness_png(frame))


def robustness_png(frame: pd.DataFrame) -> bytes:
    """Accuracy and mean IoU as the test images are degraded, one column of panels per degradation."""
    kinds, models = list(dict.fromkeys(frame["degradation"])), list(dict.fromkeys(frame["model"]))
    figure, axes = plt.subplots(2, len(kinds), figsize=(4.5 * len(kinds), 7.5), squeeze=False)
    for col, kind in enumerate(kinds):
        for ax, metric in zip(axes[:, col], ("accuracy", "mean_iou")):
            for model, colour in zip(models, colours(len(models))):
                rows = frame[(frame["degradation"] == kind) & (frame["model"] == model)]
                ax.plot(rows["level"], rows[metric], "o-", color=colour, label=model)
            what = metric.replace("_", " ")
            ax.set(title=f"{kind}: {what}", xlabel=DEGRADATIONS[kind][0], ylabel=what)
            zoom(ax, list(frame[frame["degradation"] == kind][metric]))
            ax.grid(alpha=0.3)
            ax.legend(fontsize="small")
    figure.suptitle("Robustness: test figures as the images are degraded")
    figure.tight_layout()
    return figure_bytes(figure)
