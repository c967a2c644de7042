"""The training loss: label_weight * cross-entropy + box_weight * box loss (``--box-loss``), built from a
run's options in one place (``loss_for``) for training, evaluation, the plan's estimate and the classic
baselines alike, so that a loss option reaches every one of them.

    loss_fn = loss_for(options)
    total, class_term, box_term = loss_fn(logits, boxes, labels, true_boxes)   # 0-d tensors
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from model import config
from model.core.lazy import LazyModule

if TYPE_CHECKING:  # torch is imported on first use: the command line reads BOX_LOSSES from here
    import torch
    import torch.nn.functional as F
else:
    torch, F = LazyModule("torch"), LazyModule("torch.nn.functional")

Losses = tuple["torch.Tensor", "torch.Tensor", "torch.Tensor"]  # total, class term, box term: 0-d tensors
BOX_LOSSES = ("mse", "smooth-l1", "giou", "smooth-l1+giou")
SMOOTH_L1_BETA = 0.05  # coordinates are in [0, 1]: quadratic only below 5 % of the image
GIOU_EPS = 1e-7


def giou_loss(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """1 - generalised IoU per image: (B, 4), (B, 4) xyxy with ordered corners -> (B,), in [0, 2].

    The same arithmetic as torchvision's generalized_box_iou_loss (tests/test_losses.py checks them equal),
    written here so that training needs no torchvision (a second of start-up) and no host sync on CUDA (its
    boolean-mask assignment waits for the GPU)."""
    x1, y1, x2, y2 = pred.unbind(dim=-1)
    x1g, y1g, x2g, y2g = true.unbind(dim=-1)
    left, top, right, bottom = torch.max(x1, x1g), torch.max(y1, y1g), torch.min(x2, x2g), torch.min(y2, y2g)
    overlaps = (bottom > top) & (right > left)
    intersection = torch.where(overlaps, (right - left) * (bottom - top), torch.zeros_like(x1))
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - intersection
    iou = intersection / (union + GIOU_EPS)
    enclosing = (torch.max(x2, x2g) - torch.min(x1, x1g)) * (torch.max(y2, y2g) - torch.min(y1, y1g))
    return 1 - (iou - (enclosing - union) / (enclosing + GIOU_EPS))


class DetectionLoss:
    """label_weight * cross-entropy + box_weight * box loss.

    Both terms are means over the images of the batch (the box term sums its four coordinates
    per image first), so the two weights compare like with like and do not depend on the batch
    size. Returns (total, class term, box term) as 0-d tensors; the box term is 0 without boxes.
    """

    def __init__(
        self,
        label_weight: float = config.LABEL_WEIGHT,
        box_weight: float = config.BOX_WEIGHT,
        box_loss: str = config.DEFAULT_BOX_LOSS,
        missing_boxes: bool = False,
    ):
        if box_loss not in BOX_LOSSES:
            raise ValueError(f"unknown box loss {box_loss!r}; choose one of {', '.join(BOX_LOSSES)}")
        self.label_weight, self.box_weight, self.box_loss = label_weight, box_weight, box_loss
        self.missing_boxes = missing_boxes  # some true boxes are NaN (not known): their box term is left out

    def describe(self) -> str:
        """The loss as a formula, in words (the report shows it as this code computes it)."""
        box = {
            "mse": "the squared error of the 4 corners",
            "smooth-l1": f"the smooth L1 error of the 4 corners (beta {SMOOTH_L1_BETA})",
            "giou": "the GIoU loss (1 - generalised IoU)",
            "smooth-l1+giou": f"the smooth L1 error of the 4 corners (beta {SMOOTH_L1_BETA}) + the GIoU loss",
        }[self.box_loss]
        total = f"{self.label_weight:g} x cross-entropy"
        if self.box_weight:
            total += f" + {self.box_weight:g} x box loss, the box loss being {box}"
        return (
            f"{total}; each term is a mean over the images of the batch (the box term sums its 4 coordinates per "
            "image first), the boxes as xyxy in [0, 1]"
        )

    def box_term(self, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        """(B, 4), (B, 4) xyxy in [0, 1] -> (B,) per-image box loss."""
        if self.box_loss == "mse":
            return F.mse_loss(pred, true, reduction="none").sum(dim=1)
        if self.box_loss == "giou":
            return giou_loss(pred, true)
        smooth_l1 = F.smooth_l1_loss(pred, true, reduction="none", beta=SMOOTH_L1_BETA).sum(dim=1)
        return smooth_l1 if self.box_loss == "smooth-l1" else smooth_l1 + giou_loss(pred, true)

    def _box_mean(self, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        """The batch mean of the box term; with ``missing_boxes``, over the images whose box is known."""
        if not self.missing_boxes:
            return self.box_term(pred, true).mean()
        known = true.isfinite().all(dim=1)
        terms = self.box_term(pred, torch.where(known[:, None], true, pred.detach()))
        return torch.where(known, terms, 0.0).sum() / known.sum().clamp(min=1)

    def __call__(
        self, logits: torch.Tensor, pred_boxes: torch.Tensor | None, labels: torch.Tensor, true_boxes: torch.Tensor
    ) -> Losses:
        """(B, C) logits, (B, 4) predicted boxes or None, (B,) labels, (B, 4) true boxes -> 0-d terms."""
        class_loss = F.cross_entropy(logits.float(), labels)
        if pred_boxes is None:
            box_loss = torch.zeros((), device=logits.device)
        else:
            box_loss = self._box_mean(pred_boxes.float(), true_boxes.float())
        return self.label_weight * class_loss + self.box_weight * box_loss, class_loss, box_loss


class LossOptions(Protocol):
    """What the loss reads of a run's options (TrainOptions: model/experiment/options.py, which reads the loss's
    names from here)."""

    @property
    def box_head(self) -> bool: ...

    @property
    def label_weight(self) -> float: ...

    @property
    def box_weight(self) -> float | None: ...

    @property
    def box_loss(self) -> str | None: ...


def loss_for(options: LossOptions, missing_boxes: bool = False) -> DetectionLoss:
    """The loss a run with ``options`` minimises (and scores every set with): the one place it is built."""
    if not options.box_head:
        return DetectionLoss(options.label_weight, 0.0, missing_boxes=missing_boxes)
    assert options.box_weight is not None and options.box_loss is not None
    return DetectionLoss(options.label_weight, options.box_weight, options.box_loss, missing_boxes)
