"""The training loss: label_weight * cross-entropy + box_weight * box loss (``--box-loss``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.config import DEFAULT_BOX_LOSS

Losses = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # total, class term, box term: 0-d tensors
BOX_LOSSES = ("mse", "smooth-l1", "giou", "smooth-l1+giou")
SMOOTH_L1_BETA = 0.05  # coordinates are in [0, 1]: quadratic only below 5 % of the image


def giou_loss(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """1 - generalised IoU per image: (B, 4), (B, 4) xyxy with ordered corners -> (B,), in [0, 2]."""
    from torchvision.ops import generalized_box_iou_loss  # imported on first use: torchvision loads slowly

    return generalized_box_iou_loss(pred, true, reduction="none")


class DetectionLoss(nn.Module):
    """label_weight * cross-entropy + box_weight * box loss.

    Both terms are means over the images of the batch (the box term sums its four coordinates
    per image first), so the two weights compare like with like and do not depend on the batch
    size. Returns (total, class term, box term) as 0-d tensors; the box term is 0 without boxes.
    """

    def __init__(
        self,
        label_weight: float = 1.0,
        box_weight: float = 1.0,
        box_loss: str = DEFAULT_BOX_LOSS,
        missing_boxes: bool = False,
    ):
        super().__init__()
        if box_loss not in BOX_LOSSES:
            raise ValueError(f"unknown box loss {box_loss!r}; choose one of {', '.join(BOX_LOSSES)}")
        self.label_weight, self.box_weight, self.box_loss = label_weight, box_weight, box_loss
        self.missing_boxes = missing_boxes  # some true boxes are NaN (not known): their box term is left out

    def box_term(self, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        """(B, 4), (B, 4) xyxy in [0, 1] -> (B,) per-image box loss."""
        if self.box_loss == "mse":
            return F.mse_loss(pred, true, reduction="none").sum(dim=1)
        smooth_l1 = F.smooth_l1_loss(pred, true, reduction="none", beta=SMOOTH_L1_BETA).sum(dim=1)
        if self.box_loss == "smooth-l1":
            return smooth_l1
        if self.box_loss == "giou":
            return giou_loss(pred, true)
        return smooth_l1 + giou_loss(pred, true)

    def _box_mean(self, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        """The batch mean of the box term; with ``missing_boxes``, over the images whose box is known."""
        if not self.missing_boxes:
            return self.box_term(pred, true).mean()
        known = true.isfinite().all(dim=1)
        terms = self.box_term(pred, torch.where(known[:, None], true, pred.detach()))
        return torch.where(known, terms, 0.0).sum() / known.sum().clamp(min=1)

    def forward(
        self, logits: torch.Tensor, pred_boxes: torch.Tensor | None, labels: torch.Tensor, true_boxes: torch.Tensor
    ) -> Losses:
        """(B, C) logits, (B, 4) predicted boxes or None, (B,) labels, (B, 4) true boxes -> 0-d terms."""
        class_loss = F.cross_entropy(logits.float(), labels)
        if pred_boxes is None:
            box_loss = torch.zeros((), device=logits.device)
        else:
            box_loss = self._box_mean(pred_boxes.float(), true_boxes.float())
        return self.label_weight * class_loss + self.box_weight * box_loss, class_loss, box_loss
