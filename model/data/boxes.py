"""Box operations on (B, 4) xyxy tensors (any unit, as long as both sides share it)."""

from __future__ import annotations

import torch


def ordered(boxes: torch.Tensor) -> torch.Tensor:
    """(B, 4) -> (B, 4) with x1 <= x2 and y1 <= y2 (a sigmoid head does not promise the order)."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([torch.minimum(x1, x2), torch.minimum(y1, y2), torch.maximum(x1, x2), torch.maximum(y1, y2)], -1)


def pairwise_iou(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """IoU of pred[i] with true[i]: (B, 4), (B, 4) xyxy -> (B,); 0 where the union is empty.

    (torchvision's box_iou computes every pair, (B, B); only the diagonal is wanted here.)
    """
    pred = ordered(pred)
    lt = torch.maximum(pred[:, :2], true[:, :2])
    rb = torch.minimum(pred[:, 2:], true[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    union = (pred[:, 2:] - pred[:, :2]).prod(dim=1) + (true[:, 2:] - true[:, :2]).prod(dim=1) - inter
    return inter / union.clamp(min=1e-12)
