"""The loops over a split: ``train_step`` (one optimizer step: the one training step of the toolkit,
reused by the compile warm-up, the plan's time probe and the benchmark), ``train_one_epoch`` and
``evaluate``, with their figures; and ``infer``, the one inference step (evaluate's, eval.py's through it,
and predict.py's one image at a time).

Batches come as uint8 on the device (model/engine/batches.py), are augmented there when asked to and
normalised there. The forward pass runs under the run's autocast (model/core/precision.py), the
backward pass through its gradient scaler. Running sums stay on the device and are read once per
epoch, so the loops never wait for the accelerator between batches (no host sync per batch on CUDA:
the constants and the epoch's order are on the device before the first batch).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

import torch
from torch import nn

from model.core.precision import Precision
from model.core.runtime import synchronize
from model.data.boxes import pairwise_iou
from model.engine.batches import DeviceBatches
from model.experiment.loss import DetectionLoss, Losses


@dataclass
class EpochStats:
    loss: float
    class_loss: float
    box_loss: float  # NaN for a classification-only network (it has no box loss, not a box loss of 0)
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

    def add(self, losses: Losses, logits, pred_boxes, labels, true_boxes) -> None:
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
        if not has_boxes:
            box_loss = iou = math.nan
        return EpochStats(loss, class_loss, box_loss, correct, iou, seconds, self.count)


def network_batch(images: torch.Tensor, batches: DeviceBatches, channels_last: bool) -> torch.Tensor:
    """(B, 3, S, S) uint8 on the device -> normalised float32, in the layout the model runs in."""
    x = batches.normalize(images)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


class Augment(Protocol):
    """Changes a training batch and its boxes together, and normalises it (model/data/augment.py)."""

    def __call__(
        self, images: torch.Tensor, boxes: torch.Tensor, mean: Sequence[float], std: Sequence[float]
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


def train_step(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    boxes: torch.Tensor,
    loss_fn: DetectionLoss,
    optimizer: torch.optim.Optimizer,
    precision: Precision,
    scaler: torch.amp.GradScaler,
) -> tuple[Losses, torch.Tensor, torch.Tensor | None]:
    """One optimizer step on a normalised batch ``x`` (B, 3, S, S): forward under autocast, the loss in
    float32, backward through the scaler; returns the losses and the outputs."""
    with precision.autocast():
        logits, pred_boxes = model(x)
    losses = loss_fn(logits, pred_boxes, labels, boxes)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(losses[0]).backward()
    scaler.step(optimizer)
    scaler.update()
    return losses, logits, pred_boxes


def has_box_head(model: nn.Module) -> bool:
    module = getattr(model, "_orig_mod", model)  # a torch.compile'd wrapper
    return getattr(module, "box_regressor", None) is not None


def train_one_epoch(
    model: nn.Module,
    batches: DeviceBatches,
    loss_fn: DetectionLoss,
    optimizer: torch.optim.Optimizer,
    batch_size: int,
    generator: torch.Generator,
    precision: Precision,
    scaler: torch.amp.GradScaler,
    channels_last: bool = False,
    on_batch: Callable[[], None] = lambda: None,
    augment: Augment | None = None,
) -> EpochStats:
    """One pass over the split in random order; its running loss, accuracy and IoU (dropout on, the
    weights changing as it goes: what the pass itself saw, not what the model scores afterwards)."""
    model.train()
    totals = _Totals(batches.device)
    synchronize(batches.device)
    start = time.perf_counter()
    for batch in batches.batches(batch_size, shuffle=True, generator=generator):
        boxes = batch.boxes
        if augment is None:
            x = network_batch(batch.images, batches, channels_last)
        else:
            x, boxes = augment(batch.images, batch.boxes_on_host(), batches.dataset.mean, batches.dataset.std)
            x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        losses, logits, pred_boxes = train_step(model, x, batch.labels, boxes, loss_fn, optimizer, precision, scaler)
        totals.add(losses, logits, pred_boxes, batch.labels, boxes)
        on_batch()
    synchronize(batches.device)
    return totals.stats(time.perf_counter() - start, has_box_head(model))


def infer(model: nn.Module, x: torch.Tensor, precision: Precision) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A trained model's outputs on a normalised batch ``x`` (B, 3, S, S), in evaluation mode under the run's
    autocast: (B, C) logits and (B, 4) boxes xyxy in [0, 1] (None without a box head), as float32."""
    with torch.no_grad(), precision.autocast():
        logits, boxes = model(x)
    return logits.float(), boxes.float() if boxes is not None else None


@dataclass
class Predictions:
    """Per-image outputs of ``evaluate``: probabilities (N, C), boxes (N, 4) xyxy in [0, 1] or None."""

    probabilities: torch.Tensor
    boxes: torch.Tensor | None


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: DeviceBatches,
    loss_fn: DetectionLoss,
    batch_size: int,
    precision: Precision,
    channels_last: bool = False,
    on_batch: Callable[[], None] = lambda: None,
    keep_predictions: bool = False,
) -> tuple[EpochStats, Predictions | None]:
    """Loss, accuracy and mean IoU of ``model`` on the split in eval mode (and, on request, the
    per-image predictions, on the CPU, in the split's order)."""
    model.eval()
    totals = _Totals(batches.device)
    has_boxes = has_box_head(model)
    probabilities, predicted_boxes = [], []
    synchronize(batches.device)
    start = time.perf_counter()
    for batch in batches.batches(batch_size):
        logits, pred_boxes = infer(model, network_batch(batch.images, batches, channels_last), precision)
        totals.add(
            loss_fn(logits, pred_boxes, batch.labels, batch.boxes), logits, pred_boxes, batch.labels, batch.boxes
        )
        if keep_predictions:  # kept on the device, copied once at the end
            probabilities.append(logits.softmax(dim=1))
            if pred_boxes is not None:
                predicted_boxes.append(pred_boxes)
        on_batch()
    stats = totals.stats(time.perf_counter() - start, has_boxes)  # reads the sums: waits for the device
    if not keep_predictions:
        return stats, None
    num_classes = len(batches.dataset.classes)
    probs = torch.cat(probabilities).cpu() if probabilities else torch.zeros((0, num_classes))
    pred = (torch.cat(predicted_boxes).cpu() if predicted_boxes else torch.zeros((0, 4))) if has_boxes else None
    return stats, Predictions(probs, pred)
