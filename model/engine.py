"""Where a detector computes: the loss, the optimizer and its learning rate, a split's batches on the device,
one training step, ``train_one_epoch`` and ``evaluate``.

    loss_fn = loss_for(options)                         label_weight * cross-entropy + box_weight * box loss
    running = train_one_epoch(model, batches, loss_fn, optimizer, ...)     # EpochStats of the pass itself
    val, _ = evaluate(model, val_batches, loss_fn, ...)                     # in evaluation mode

Batches are uint8 on the device, normalised (and augmented) there. Running sums stay on the device and are read
once per epoch: the loops never wait for an accelerator between batches.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from model.dataset import DetectionDataset
from model.device import Precision, synchronize
from model.images import pairwise_iou

BOX_LOSSES = ("mse", "smooth-l1", "giou", "smooth-l1+giou")
SMOOTH_L1_BETA = 0.05  # coordinates are in [0, 1]: quadratic only below 5 % of the image
OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("none", "cosine", "plateau")


# ----------------------------------------------------------------------------------------------
# The loss
# ----------------------------------------------------------------------------------------------
def giou_loss(pred: torch.Tensor, true: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """1 - generalised IoU: (B, 4), (B, 4) xyxy with ordered corners -> (B,), in [0, 2]. torchvision's
    generalized_box_iou_loss's arithmetic (tests/test_losses.py compares them), without its host sync on CUDA."""
    x1, y1, x2, y2 = pred.unbind(dim=-1)
    x1g, y1g, x2g, y2g = true.unbind(dim=-1)
    left, top, right, bottom = torch.max(x1, x1g), torch.max(y1, y1g), torch.min(x2, x2g), torch.min(y2, y2g)
    intersection = torch.where((bottom > top) & (right > left), (right - left) * (bottom - top), torch.zeros_like(x1))
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - intersection
    enclosing = (torch.max(x2, x2g) - torch.min(x1, x1g)) * (torch.max(y2, y2g) - torch.min(y1, y1g))
    return 1 - (intersection / (union + eps) - (enclosing - union) / (enclosing + eps))


Losses = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # total, class term, box term: 0-d tensors


@dataclass(frozen=True)
class DetectionLoss:
    """label_weight * cross-entropy + box_weight * box loss; each term a mean over the batch's images (the box
    term sums its 4 coordinates per image first), so the weights compare like with like at any batch size.
    ``missing_boxes``: some true boxes are NaN (internet images known by their label alone): left out."""

    label_weight: float = 1.0
    box_weight: float = 1.0
    box_loss: str = "smooth-l1+giou"
    missing_boxes: bool = False

    def describe(self) -> str:
        """The loss as a formula, in words (the report shows what this code computes)."""
        smooth = f"the smooth L1 error of the 4 corners (beta {SMOOTH_L1_BETA})"
        box = {"mse": "the squared error of the 4 corners", "smooth-l1": smooth, "giou": "the GIoU loss (1 - GIoU)"}
        total = f"{self.label_weight:g} x cross-entropy"
        if self.box_weight:
            total += f" + {self.box_weight:g} x box loss, the box loss being "
            total += box.get(self.box_loss, f"{smooth} + the GIoU loss")
        return f"{total}; each term a mean over the images of the batch, the boxes as xyxy in [0, 1]"

    def box_term(self, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        """(B, 4), (B, 4) xyxy in [0, 1] -> (B,) per-image box loss."""
        if self.box_loss == "mse":
            return F.mse_loss(pred, true, reduction="none").sum(dim=1)
        if self.box_loss == "giou":
            return giou_loss(pred, true)
        smooth_l1 = F.smooth_l1_loss(pred, true, reduction="none", beta=SMOOTH_L1_BETA).sum(dim=1)
        return smooth_l1 if self.box_loss == "smooth-l1" else smooth_l1 + giou_loss(pred, true)

    def __call__(self, logits, pred_boxes, labels, true_boxes) -> Losses:
        """(B, C) logits, (B, 4) predicted boxes or None, (B,) labels, (B, 4) true boxes -> 0-d terms."""
        class_loss = F.cross_entropy(logits.float(), labels)
        if pred_boxes is None:
            box_loss = torch.zeros((), device=logits.device)
        elif not self.missing_boxes:
            box_loss = self.box_term(pred_boxes.float(), true_boxes.float()).mean()
        else:
            known = true_boxes.isfinite().all(dim=1)
            terms = self.box_term(pred_boxes.float(), torch.where(known[:, None], true_boxes, pred_boxes.detach()))
            box_loss = torch.where(known, terms, 0.0).sum() / known.sum().clamp(min=1)
        return self.label_weight * class_loss + self.box_weight * box_loss, class_loss, box_loss


def loss_for(options: Any, missing_boxes: bool = False) -> DetectionLoss:
    """The loss a run with ``options`` minimises and is scored with: training, evaluation, the estimate, the
    classic baselines (one place: a loss option reaches every one)."""
    box_weight = options.box_weight if options.box_head else 0.0
    return DetectionLoss(options.label_weight, box_weight, options.box_loss, missing_boxes)


# ----------------------------------------------------------------------------------------------
# The optimizer and the learning rate
# ----------------------------------------------------------------------------------------------
def make_optimizer(name: str, parameters: list, lr: float, weight_decay: float, device: torch.device):
    """adam, adamw, or sgd with momentum 0.9; Adam's fused kernel on CUDA (the small networks' steps are
    bound by kernel launches there)."""
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=0.9, weight_decay=weight_decay)
    kind = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    return kind(parameters, lr=lr, weight_decay=weight_decay, fused=True if device.type == "cuda" else None)


class LearningRate:
    """The learning rate of each epoch (--lr-schedule), and the state a resumed run needs.

    cosine: epoch e of E trains at lr (1 + cos(pi (e - 1) / E)) / 2 (a run resumed with more epochs follows its new
    total's curve from where it stands); plateau: halved after 3 epochs in a row without a new best validation loss.
    """

    def __init__(self, kind: str, base: float, epochs: int):
        self.kind, self.base, self.epochs = kind, base, epochs
        self.best_loss, self.stale, self.scale = math.inf, 0, 1.0

    def at(self, epoch: int) -> float:
        if self.kind == "cosine":
            return self.base * 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / self.epochs))
        return self.base * self.scale

    def observe(self, val_loss: float) -> None:
        self.best_loss, self.stale = (val_loss, 0) if val_loss < self.best_loss else (self.best_loss, self.stale + 1)
        if self.kind == "plateau" and self.stale >= 3:
            self.scale, self.stale = self.scale * 0.5, 0

    def state_dict(self) -> dict[str, float]:
        return {"best_loss": self.best_loss, "stale": self.stale, "scale": self.scale}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.best_loss, self.stale, self.scale = float(state["best_loss"]), int(state["stale"]), float(state["scale"])


# ----------------------------------------------------------------------------------------------
# A split's batches on the device
# ----------------------------------------------------------------------------------------------
@dataclass
class Batch:
    images: torch.Tensor  # (B, 3, S, S) uint8 on the device
    labels: torch.Tensor  # (B,) int64 on the device
    boxes: torch.Tensor  # (B, 4) float32 xyxy in [0, 1] on the device
    host_boxes: torch.Tensor  # (B, 4) the same on the CPU (augmentation draws from them)


class DeviceBatches:
    """The batches of one split on ``device``: resident (copied once; on a CPU, the dataset's own tensors) when
    the splits fit in half the device's free memory, else copied batch by batch."""

    def __init__(self, dataset: DetectionDataset, device: torch.device, resident: bool = True):
        self.dataset, self.device, self.resident = dataset, device, resident
        self.labels, self.boxes = dataset.labels.to(device), dataset.boxes.to(device)
        mean, std = (torch.tensor(v, dtype=torch.float32).view(1, 3, 1, 1) * 255.0 for v in (dataset.mean, dataset.std))
        self.mean, self.std = mean.to(device), std.to(device)  # the normalisation's constants, on the device once
        self.images = dataset.images.to(device) if resident and device.type != "cpu" else None

    def __len__(self) -> int:
        return len(self.dataset)

    def num_batches(self, batch_size: int) -> int:
        return math.ceil(len(self) / batch_size)

    def normalize(self, images: torch.Tensor, channels_last: bool) -> torch.Tensor:
        """(B, 3, S, S) uint8 on the device -> float32, normalised, in the layout the model runs in."""
        x = (images.float() - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x

    def batches(self, batch_size: int, generator: torch.Generator | None = None) -> Iterator[Batch]:
        """In random order (drawn from ``generator`` on the CPU, so the order does not depend on the device),
        or in order without one."""
        order = torch.randperm(len(self), generator=generator) if generator is not None else torch.arange(len(self))
        for start in range(0, len(self), batch_size):
            indices = order[start : start + batch_size]
            if generator is not None and start and len(indices) == 1:  # BatchNorm cannot train on one image:
                break  # a last batch of one is left out of this epoch (another image the next time)
            on_device = indices.to(self.device)
            if self.images is not None:
                images = self.images[on_device]
            else:
                images = self.dataset.gather(indices)  # (B, 3, S, S) uint8 on the CPU
                if self.device.type == "cuda":  # page-locked: the copy runs without the host waiting for it
                    images = images.pin_memory()
                images = images.to(self.device, non_blocking=True)
            yield Batch(images, self.labels[on_device], self.boxes[on_device], self.dataset.boxes[indices])

    def describe(self) -> str:
        size = f"{self.dataset.images_nbytes / 2**20:.0f} MB"
        if self.device.type == "cpu":
            return f"in host memory, the CPU's own ({size})"
        return f"resident on {self.device} ({size}, copied once)" if self.resident else f"copied per batch ({size})"


def place_splits(datasets: list[DetectionDataset], device: torch.device) -> list[DeviceBatches]:
    """The splits' batches on ``device``: all resident when together they fit in half its free memory."""
    nbytes = sum(d.images_nbytes for d in datasets)
    free: int | None = None  # a CPU's batches are the dataset's own tensors
    if device.type == "cuda":
        free = int(torch.cuda.mem_get_info(device)[0])
    elif device.type == "mps":
        free = int(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
    return [DeviceBatches(d, device, free is None or nbytes <= 0.5 * free) for d in datasets]


# ----------------------------------------------------------------------------------------------
# The loops
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Compute:
    """How the loops compute: the batch size, the autocast, the memory layout."""

    batch_size: int
    precision: Precision
    channels_last: bool


@dataclass
class EpochStats:
    loss: float
    class_loss: float
    box_loss: float  # NaN for a classification-only network (it has no box loss, not one of 0)
    accuracy: float
    iou: float  # mean IoU; NaN for a classification-only network
    seconds: float
    images: int

    def as_dict(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}_{k}": v for k, v in asdict(self).items() if k not in ("seconds", "images")}


class Totals:
    """An epoch's running sums, kept on the device: loss, class loss, box loss, correct, IoU."""

    def __init__(self, device: torch.device):
        self.dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
        self.sums = torch.zeros(5, dtype=self.dtype, device=device)
        self.count = 0

    def add(self, losses: Losses, logits, pred_boxes, labels, true_boxes) -> None:
        n = labels.shape[0]
        total, class_loss, box_loss = (v.detach().to(self.dtype) * n for v in losses)
        correct = (logits.detach().argmax(dim=1) == labels).sum().to(self.dtype)
        iou = torch.zeros((), dtype=self.dtype, device=labels.device)
        if pred_boxes is not None:
            iou = pairwise_iou(pred_boxes.detach().float(), true_boxes).sum().to(self.dtype)
        self.sums += torch.stack([total, class_loss, box_loss, correct, iou])
        self.count += n

    def stats(self, seconds: float, has_boxes: bool) -> EpochStats:
        if self.count == 0:  # an empty set (e.g. --cut-test 1.0) has no figures
            return EpochStats(math.nan, math.nan, math.nan, math.nan, math.nan, seconds, 0)
        loss, class_loss, box_loss, correct, iou = (self.sums / self.count).tolist()
        if not has_boxes:
            box_loss = iou = math.nan
        return EpochStats(loss, class_loss, box_loss, correct, iou, seconds, self.count)


def train_step(model: nn.Module, x, labels, boxes, loss_fn: DetectionLoss, optimizer, precision: Precision, scaler):
    """One optimizer step on a normalised batch ``x`` (B, 3, S, S): forward under autocast, the loss in float32,
    backward through the gradient scaler; the losses and the outputs."""
    with precision.autocast():
        logits, pred_boxes = model(x)
    losses = loss_fn(logits, pred_boxes, labels, boxes)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(losses[0]).backward()
    scaler.step(optimizer)
    scaler.update()
    return losses, logits, pred_boxes


def has_box_head(model: nn.Module) -> bool:
    return getattr(getattr(model, "_orig_mod", model), "box_regressor", None) is not None  # a torch.compile'd one too


def train_one_epoch(model: nn.Module, batches: DeviceBatches, loss_fn: DetectionLoss, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler, generator: torch.Generator, settings: Compute,
                    augment: Callable | None = None,
                    on_batch: Callable[[], None] = lambda: None) -> EpochStats:  # fmt: skip
    """One pass over the split in random order; its running loss, accuracy and IoU (dropout on, the weights
    changing as it goes: what the pass itself saw, not what the model scores afterwards)."""
    model.train()
    totals = Totals(batches.device)
    synchronize(batches.device)
    start = time.perf_counter()
    for batch in batches.batches(settings.batch_size, generator):
        boxes = batch.boxes
        if augment is None:
            x = batches.normalize(batch.images, settings.channels_last)
        else:
            x, boxes = augment(batch.images, batch.host_boxes, batches.dataset.mean, batches.dataset.std)
            x = x.contiguous(memory_format=torch.channels_last) if settings.channels_last else x
        losses, logits, pred_boxes = train_step(
            model, x, batch.labels, boxes, loss_fn, optimizer, settings.precision, scaler
        )
        totals.add(losses, logits, pred_boxes, batch.labels, boxes)
        on_batch()
    synchronize(batches.device)
    return totals.stats(time.perf_counter() - start, has_box_head(model))


@dataclass
class Predictions:
    probabilities: torch.Tensor  # (N, C)
    boxes: torch.Tensor | None  # (N, 4) xyxy in [0, 1]


@torch.no_grad()
def evaluate(model: nn.Module, batches: DeviceBatches, loss_fn: DetectionLoss, settings: Compute,
             on_batch: Callable[[], None] = lambda: None,
             keep_predictions: bool = False) -> tuple[EpochStats, Predictions | None]:  # fmt: skip
    """Loss, accuracy and mean IoU of ``model`` on the split in evaluation mode (and, when asked, the per-image
    predictions on the CPU, in the split's order)."""
    model.eval()
    totals = Totals(batches.device)
    kept: list[tuple[torch.Tensor, torch.Tensor | None]] = []
    synchronize(batches.device)
    start = time.perf_counter()
    for batch in batches.batches(settings.batch_size):
        with settings.precision.autocast():
            logits, pred_boxes = model(batches.normalize(batch.images, settings.channels_last))
        logits, pred_boxes = logits.float(), pred_boxes.float() if pred_boxes is not None else None
        losses = loss_fn(logits, pred_boxes, batch.labels, batch.boxes)
        totals.add(losses, logits, pred_boxes, batch.labels, batch.boxes)
        if keep_predictions:  # kept on the device, copied once at the end
            kept.append((logits.softmax(dim=1), pred_boxes))
        on_batch()
    stats = totals.stats(time.perf_counter() - start, has_box_head(model))  # reads the sums: waits for the device
    if not keep_predictions:
        return stats, None
    probabilities = torch.cat([p for p, _ in kept]).cpu() if kept else torch.zeros((0, len(batches.dataset.classes)))
    boxes = [b for _, b in kept if b is not None]
    predicted = (torch.cat(boxes).cpu() if boxes else torch.zeros((0, 4))) if has_box_head(model) else None
    return stats, Predictions(probabilities, predicted)
