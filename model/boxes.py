"""Box operations on (B, 4) xyxy tensors (any unit, as long as both sides share it)."""
from __future__ import annotations

import torch


def ordered(boxes: torch.Tensor) -> torch.Tensor:
    """(B, 4) -> (B, 4) with x1 <= x2 and y1 <= y2 (a sigmoid head does not promise the order)."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([torch.minimum(x1, x2), torch.minimum(y1, y2), torch.maximum(x1, x2), torch.maximum(y1, y2)], -1)


def _iou_and_union(pred: torch.Tensor, true: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU and union area of pred[i] with true[i], both (B, 4) xyxy with ordered corners: -> (B,), (B,)."""
    lt = torch.maximum(pred[:, :2], true[:, :2])
    rb = torch.minimum(pred[:, 2:], true[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    union = (pred[:, 2:] - pred[:, :2]).prod(dim=1) + (true[:, 2:] - true[:, :2]).prod(dim=1) - inter
    return inter / union.clamp(min=1e-12), union


def pairwise_iou(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """IoU of pred[i] with true[i]: (B, 4), (B, 4) xyxy -> (B,)."""
    return _iou_and_union(ordered(pred), true)[0]


def giou_loss(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """1 - generalised IoU per image: (B, 4), (B, 4) -> (B,), in [0, 2]."""
    pred = ordered(pred)
    iou, union = _iou_and_union(pred, true)
    hull = (torch.maximum(pred[:, 2:], true[:, 2:]) - torch.minimum(pred[:, :2], true[:, :2])).prod(dim=1)
    hull = hull.clamp(min=1e-12)
    return 1.0 - (iou - (hull - union) / hull)
