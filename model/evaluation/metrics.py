"""Per-image results and the figures eval.py and compare.py report from them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model.data.boxes import pairwise_iou
from model.data.images import box_to_pixels
from model.dataset import DetectionDataset
from model.training.engine import Predictions


@dataclass
class ImageResults:
    """Everything known per image of one evaluated set, in dataset order (N images)."""

    paths: list[Path]
    classes: list[str]
    true_labels: np.ndarray  # (N,) int
    predicted_labels: np.ndarray  # (N,) int
    confidence: np.ndarray  # (N,) softmax probability of the predicted label
    iou: np.ndarray | None  # (N,) IoU of predicted and true box; None without a box head
    true_boxes: np.ndarray  # (N, 4) pixels of the original image
    predicted_boxes: np.ndarray | None  # (N, 4) pixels

    @classmethod
    def from_predictions(cls, dataset: DetectionDataset, predictions: Predictions) -> ImageResults:
        confidence, predicted = predictions.probabilities.max(dim=1)
        iou = pred_px = None
        if predictions.boxes is not None:
            iou = pairwise_iou(predictions.boxes, dataset.boxes).numpy()
            pred_px = box_to_pixels(predictions.boxes.double(), dataset.sizes).numpy()
        return cls(
            dataset.paths(),
            list(dataset.classes),
            dataset.labels.numpy(),
            predicted.numpy(),
            confidence.numpy(),
            iou,
            box_to_pixels(dataset.boxes.double(), dataset.sizes).numpy(),
            pred_px,
        )

    def has_true_box(self, i: int) -> bool:
        """Whether image ``i``'s true box is known (an internet image may come with its label only)."""
        return bool(np.isfinite(self.true_boxes[i]).all())

    @property
    def boxed(self) -> np.ndarray:
        """(N,) bool: the images whose true box is known."""
        return np.isfinite(self.true_boxes).all(axis=1)

    def box_failures(self, iou_threshold: float) -> np.ndarray:
        """(N,) bool: right label, but the box's IoU below the threshold."""
        if self.iou is None:
            return np.zeros(len(self.true_labels), dtype=bool)
        with np.errstate(invalid="ignore"):
            return (self.predicted_labels == self.true_labels) & self.boxed & (self.iou < iou_threshold)

    def failures(self, iou_threshold: float) -> np.ndarray:
        """(N,) bool: wrong label, or (with boxes) IoU below the threshold."""
        wrong = self.predicted_labels != self.true_labels
        if self.iou is None:
            return wrong
        with np.errstate(invalid="ignore"):  # an unknown true box (NaN IoU) fails by its label alone
            return wrong | (self.boxed & (self.iou < iou_threshold))


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else math.nan


def _figures(results: ImageResults, selected: np.ndarray, iou_threshold: float) -> dict:
    correct = results.predicted_labels[selected] == results.true_labels[selected]
    figures = {"images": int(selected.sum()), "correct": int(correct.sum()), "accuracy": _mean(correct)}
    if results.iou is not None and results.predicted_boxes is not None:
        boxed = selected & results.boxed  # images known by their label alone have no box figures
        iou = results.iou[boxed]
        corner_error = np.abs(results.predicted_boxes[boxed] - results.true_boxes[boxed])
        figures.update(
            images_with_box=int(boxed.sum()),
            mean_iou=_mean(iou),
            iou_at_threshold=_mean(iou >= iou_threshold),
            detection_accuracy=_mean(
                (results.predicted_labels[boxed] == results.true_labels[boxed]) & (iou >= iou_threshold)
            ),
            corner_error_px=_mean(corner_error),
        )
    return figures


def summarize(results: ImageResults, iou_threshold: float = 0.5) -> dict:
    """Overall and per-label figures, and the confusion matrix (rows: true, columns: predicted).

    accuracy: right label; mean_iou: mean IoU of predicted and true box; iou_at_threshold: share
    of boxes with IoU >= threshold; detection_accuracy: right label and IoU >= threshold;
    corner_error_px: mean absolute error of the four corner coordinates, in original pixels.
    """
    n = len(results.classes)
    confusion = np.zeros((n, n), dtype=int)
    np.add.at(confusion, (results.true_labels, results.predicted_labels), 1)
    everything = np.ones(len(results.true_labels), dtype=bool)
    return {
        "iou_threshold": iou_threshold,
        "overall": _figures(results, everything, iou_threshold),
        "per_label": {
            name: _figures(results, results.true_labels == i, iou_threshold) for i, name in enumerate(results.classes)
        },
        "confusion": {"labels": list(results.classes), "matrix": confusion.tolist()},
    }


def to_json_ready(value):
    """JSON-ready copy of nested figures (NaN becomes None)."""
    if isinstance(value, dict):
        return {k: to_json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_ready(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return value
