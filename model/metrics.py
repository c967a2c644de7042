"""Per-image results of an evaluated set, and the figures eval.py, compare.py and the report read from them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model.dataset import DetectionDataset
from model.engine import Predictions
from model.images import box_to_pixels, pairwise_iou


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
        true_px = box_to_pixels(dataset.boxes.double(), dataset.sizes).numpy()
        labels = dataset.labels.numpy(), predicted.numpy()
        return cls(dataset.paths(), list(dataset.classes), *labels, confidence.numpy(), iou, true_px, pred_px)

    @property
    def boxed(self) -> np.ndarray:
        """(N,) bool: the images whose true box is known."""
        return np.isfinite(self.true_boxes).all(axis=1)

    def failures(self, iou_threshold: float) -> np.ndarray:
        """(N,) bool: wrong label, or (with boxes) IoU below the threshold; an image whose true box is unknown
        fails by its label alone."""
        wrong = self.predicted_labels != self.true_labels
        return wrong if self.iou is None else wrong | (self.boxed & (self.iou < iou_threshold))


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else math.nan


def _figures(results: ImageResults, selected: np.ndarray, iou_threshold: float) -> dict:
    right = results.predicted_labels == results.true_labels
    figures = {"images": int(selected.sum()), "correct": int(right[selected].sum()), "accuracy": _mean(right[selected])}
    if results.iou is not None and results.predicted_boxes is not None:
        boxed = selected & results.boxed  # images known by their label alone have no box figures
        iou, error = results.iou[boxed], np.abs(results.predicted_boxes[boxed] - results.true_boxes[boxed])
        hit = iou >= iou_threshold
        figures.update(images_with_box=int(boxed.sum()), mean_iou=_mean(iou), iou_at_threshold=_mean(hit),
                       detection_accuracy=_mean(right[boxed] & hit), corner_error_px=_mean(error))  # fmt: skip
    return figures


def summarize(results: ImageResults, iou_threshold: float = 0.5) -> dict:
    """Overall and per-label figures, and the confusion matrix (rows: true, columns: predicted).

    accuracy: right label; mean_iou: mean IoU of predicted and true box; iou_at_threshold: share
    of boxes with IoU >= threshold; detection_accuracy: right label and IoU >= threshold;
    corner_error_px: mean absolute error of the four corner coordinates, in original pixels.
    """
    n = len(results.classes)
    confusion = np.bincount(results.true_labels * n + results.predicted_labels, minlength=n * n).reshape(n, n)
    return {
        "iou_threshold": iou_threshold,
        "overall": _figures(results, np.full(len(results.true_labels), True), iou_threshold),
        "per_label": {
            name: _figures(results, results.true_labels == i, iou_threshold) for i, name in enumerate(results.classes)
        },
        "confusion": {"labels": list(results.classes), "matrix": confusion.tolist()},
    }


def to_json_ready(value):
    """JSON-ready copy of nested figures (NaN becomes None); summarize() and the losses give plain Python
    numbers already."""
    if isinstance(value, dict):
        return {k: to_json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_ready(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


# ----------------------------------------------------------------------------------------------
# The detection view (Part 3 Q8): accuracy against the IoU threshold, and COCO's average precision
# ----------------------------------------------------------------------------------------------
IOU_THRESHOLDS = tuple(float(t) for t in np.linspace(0.5, 0.95, 10))  # COCO's ten, 0.5 to 0.95 by 0.05


def accuracy_by_iou(results: ImageResults) -> list[float]:
    """For each IoU threshold t of IOU_THRESHOLDS, the share of the images with a known box whose label is right and
    whose box has IoU >= t (the "detection accuracy" at t; at 0.5 it is summarize()'s detection_accuracy)."""
    if results.iou is None:
        return []
    right, iou = (results.predicted_labels == results.true_labels)[results.boxed], results.iou[results.boxed]
    return [_mean(right & (iou >= t)) for t in IOU_THRESHOLDS]


def average_precision(results: ImageResults) -> dict[str, float]:
    """COCO's mean average precision of the one box each image gets (scored by its confidence, labelled by its
    predicted class) against its one true box: mAP over IoU 0.5-0.95, AP at 0.5 and at 0.75, computed with
    torchmetrics' MeanAveragePrecision (COCO's thresholds given exactly: its own defaults are float32)."""
    from torchmetrics.detection import MeanAveragePrecision  # a second or so to import: only where it is used

    if results.iou is None or results.predicted_boxes is None:
        return {}
    recall = [float(r) for r in np.linspace(0, 1, 101)]  # xyxy boxes, max. 1, 10, 100 detections: its defaults
    metric = MeanAveragePrecision(iou_thresholds=list(IOU_THRESHOLDS), rec_thresholds=recall)

    def each(values: np.ndarray, dtype=torch.float32) -> list[torch.Tensor]:  # per image with a known box: (1, ...)
        return list(torch.as_tensor(values[results.boxed], dtype=dtype).unsqueeze(1))

    found = zip(each(results.predicted_boxes), each(results.confidence), each(results.predicted_labels, torch.int64))
    true = zip(each(results.true_boxes), each(results.true_labels, torch.int64))
    metric.update(
        [{"boxes": b, "scores": s, "labels": c} for b, s, c in found], [{"boxes": b, "labels": c} for b, c in true]
    )
    scores = metric.compute()
    return {"map": float(scores["map"]), "map_50": float(scores["map_50"]), "map_75": float(scores["map_75"])}


def accuracy_block(name: str, figures: dict) -> list[str]:
    """The course template's printout of one set, character for character: an empty line before the header and
    before each label; every class, also one with no image in the set (numpy prints ``nan`` and ``0.0`` then)."""

    def mean(f: dict) -> str:  # numpy's mean of the per-image booleans, as print() shows it
        return str(f["accuracy"]) if f["images"] else "nan"

    lines = ["", f"*** {name} set accuracy", f"\tMean accuracy for all labels: {mean(figures['overall'])}"]
    for label, f in figures["per_label"].items():
        count = str(f["correct"]) if f["images"] else "0.0"  # numpy's sum of an empty list of booleans
        lines += ["", f"\tMean accuracy for label {label}: {mean(f)}", f"\t\t {count} over {f['images']} samples"]
    return lines
