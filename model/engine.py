"""The two loops over a split: ``train_one_epoch`` and ``evaluate``, with their running figures.

Batches come from a ``DetectionDataset`` already in memory as uint8; they are moved to the device
and normalised there. Running sums stay on the device and are read once per epoch, so the loops
never wait for the accelerator between batches.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from model.boxes import pairwise_iou
from model.dataset import DetectionDataset
from model.images import normalize
from model.losses import DetectionLoss
from model.runtime import to_device as move


@dataclass
class EpochStats:
    loss: float
    class_loss: float
    box_loss: float
    accuracy: float
    iou: float  # mean IoU; NaN for a classification-only network
    seconds: float
    images: int

    def as_dict(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}_{k}": v for k, v in asdict(self).items() if k not in ("seconds", "images")}


class _Totals:
    """Per-epoch running sums kept on the device: loss, class loss, box loss, correct, IoU."""

    def __init__(self, device: torch.device):
        self.dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
        self.sums = torch.zeros(5, dtype=self.dtype, device=device)
        self.count = 0

    def add(self, losses, logits, pred_boxes, labels, true_boxes) -> None:
        n = labels.shape[0]
        total, class_loss, box_loss = (v.detach().to(self.dtype) * n for v in losses)
        correct = (logits.detach().argmax(dim=1) == labels).sum().to(self.dtype)
        iou = (
            pairwise_iou(pred_boxes.detach().float(), true_boxes).sum().to(self.dtype)
            if pred_boxes is not None
            else torch.zeros((), dtype=self.dtype, device=labels.device)
        )
        self.sums += torch.stack([total, class_loss, box_loss, correct, iou])
        self.count += n

    def stats(self, seconds: float, has_boxes: bool) -> EpochStats:
        if self.count == 0:  # an empty set (e.g. --cut-test 1.0) has no figures
            return EpochStats(math.nan, math.nan, math.nan, math.nan, math.nan, seconds, 0)
        loss, class_loss, box_loss, correct, iou = (self.sums / self.count).tolist()
        return EpochStats(loss, class_loss, box_loss, correct, iou if has_boxes else math.nan, seconds, self.count)


def to_device(
    images: torch.Tensor, dataset: DetectionDataset, device: torch.device, channels_last: bool
) -> torch.Tensor:
    """(B, 3, S, S) uint8 on the host -> normalised float32 on ``device``."""
    images = normalize(move(images, device), dataset.mean, dataset.std)
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


def train_one_epoch(
    model: nn.Module,
    dataset: DetectionDataset,
    loss_fn: DetectionLoss,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    batch_size: int,
    generator: torch.Generator,
    channels_last: bool = False,
    on_batch: Callable[[], None] = lambda: None,
) -> EpochStats:
    """One pass over ``dataset`` in random order; loss, accuracy and IoU accumulated as it goes."""
    model.train()
    totals = _Totals(device)
    has_boxes = getattr(model, "box_regressor", None) is not None
    start = time.perf_counter()
    for _, images, labels, boxes in dataset.batches(batch_size, shuffle=True, generator=generator):
        images = to_device(images, dataset, device, channels_last)
        labels, boxes = move(labels, device), move(boxes, device)
        logits, pred_boxes = model(images)
        losses = loss_fn(logits, pred_boxes, labels, boxes)
        optimizer.zero_grad(set_to_none=True)
        losses[0].backward()
        optimizer.step()
        totals.add(losses, logits, pred_boxes, labels, boxes)
        on_batch()
    return totals.stats(time.perf_counter() - start, has_boxes)


@dataclass
class Predictions:
    """Per-image outputs of ``evaluate``: probabilities (N, C), boxes (N, 4) xyxy in [0, 1] or None."""

    probabilities: torch.Tensor
    boxes: torch.Tensor | None


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: DetectionDataset,
    loss_fn: DetectionLoss,
    device: torch.device,
    batch_size: int,
    channels_last: bool = False,
    on_batch: Callable[[], None] = lambda: None,
    keep_predictions: bool = False,
) -> tuple[EpochStats, Predictions | None]:
    """Loss, accuracy and mean IoU of ``model`` on ``dataset`` in eval mode (and, on request, the
    per-image predictions, on the CPU, in dataset order)."""
    model.eval()
    totals = _Totals(device)
    has_boxes = getattr(model, "box_regressor", None) is not None
    probabilities, predicted_boxes = [], []
    start = time.perf_counter()
    for _, images, labels, boxes in dataset.batches(batch_size):
        images = to_device(images, dataset, device, channels_last)
        labels, boxes = move(labels, device), move(boxes, device)
        logits, pred_boxes = model(images)
        totals.add(loss_fn(logits, pred_boxes, labels, boxes), logits, pred_boxes, labels, boxes)
        if keep_predictions:
            probabilities.append(logits.float().softmax(dim=1).cpu())
            if pred_boxes is not None:
                predicted_boxes.append(pred_boxes.float().cpu())
        on_batch()
    stats = totals.stats(time.perf_counter() - start, has_boxes)
    if not keep_predictions:
        return stats, None
    num_classes = len(dataset.classes)
    probs = torch.cat(probabilities) if probabilities else torch.zeros((0, num_classes))
    pred = (torch.cat(predicted_boxes) if predicted_boxes else torch.zeros((0, 4))) if has_boxes else None
    return stats, Predictions(probs, pred)
