"""The loss terms on boxes whose values are known by hand, for each --box-loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from model.engine import BOX_LOSSES, SMOOTH_L1_BETA, DetectionLoss

PRED = torch.tensor([[0.0, 0.0, 0.2, 0.2], [0.1, 0.1, 0.6, 0.6]])  # (B, 4) xyxy in [0, 1]
TRUE = torch.tensor([[0.5, 0.5, 0.7, 0.7], [0.1, 0.1, 0.6, 0.6]])  # disjoint from the first, equal to the second
LOGITS = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
LABELS = torch.tensor([0, 2])


def by_hand(box_loss: str) -> list[float]:
    """The per-image box loss, from its definition."""
    mse = [4 * 0.5**2, 0.0]  # four coordinates off by 0.5, then none
    smooth_l1 = [4 * (0.5 - SMOOTH_L1_BETA / 2), 0.0]  # |d| > beta: the linear part
    hull, union = 0.7 * 0.7, 2 * 0.2 * 0.2  # disjoint boxes: IoU 0, GIoU = -(hull - union) / hull
    giou = [1 + (hull - union) / hull, 0.0]
    return {
        "mse": mse,
        "smooth-l1": smooth_l1,
        "giou": giou,
        "smooth-l1+giou": [a + b for a, b in zip(smooth_l1, giou)],
    }[box_loss]


@pytest.mark.parametrize("box_loss", BOX_LOSSES)
def test_each_box_loss_has_its_value_by_hand(box_loss):
    assert DetectionLoss(box_loss=box_loss).box_term(PRED, TRUE).tolist() == pytest.approx(by_hand(box_loss), abs=1e-6)


@pytest.mark.parametrize("box_loss", BOX_LOSSES)
def test_total_is_the_weighted_sum_of_two_batch_means(box_loss):
    loss = DetectionLoss(label_weight=2.0, box_weight=0.5, box_loss=box_loss)
    total, class_term, box_term = loss(LOGITS, PRED, LABELS, TRUE)
    assert class_term.item() == pytest.approx(F.cross_entropy(LOGITS, LABELS).item())
    assert box_term.item() == pytest.approx(sum(by_hand(box_loss)) / 2, abs=1e-6)
    assert total.item() == pytest.approx(2.0 * class_term.item() + 0.5 * box_term.item())
    doubled = loss(LOGITS.repeat(2, 1), PRED.repeat(2, 1), LABELS.repeat(2), TRUE.repeat(2, 1))[0]
    assert doubled.item() == pytest.approx(total.item())  # means: the batch size does not change the balance


def test_classification_only_networks_have_no_box_term():
    total, class_term, box_term = DetectionLoss()(LOGITS, None, LABELS, TRUE)
    assert box_term.item() == 0.0 and total.item() == pytest.approx(class_term.item())


@pytest.mark.parametrize("box_loss", BOX_LOSSES)
def test_a_zero_height_true_box_gives_a_finite_loss_and_gradient(box_loss):
    """Caltech-101's airplane image_0118 box has zero height: it must train like any other."""
    pred = torch.tensor([[0.3, 0.2, 0.5, 0.4]], requires_grad=True)
    true = torch.tensor([[0.3, 0.25, 0.5, 0.25]])
    loss = DetectionLoss(box_loss=box_loss)(LOGITS[:1], pred, LABELS[:1], true)[0]
    loss.backward()
    assert pred.grad is not None
    assert math.isfinite(loss.item()) and torch.isfinite(pred.grad).all()


def test_giou_is_torchvisions_value_and_gradient():
    """The toolkit's GIoU loss (written to spare training torchvision's import and CUDA's host sync) against the
    reference, torchvision's generalized_box_iou_loss: overlapping, disjoint, nested and zero-size boxes."""
    from torchvision.ops import generalized_box_iou_loss

    from model.engine import giou_loss
    from model.images import ordered

    torch.manual_seed(0)
    pred = ordered(torch.rand(256, 4)).requires_grad_(True)
    true = ordered(torch.rand(256, 4))
    true[:8, 2] = true[:8, 0]  # zero width, as the course data's airplane 118 has zero height
    mine, theirs = giou_loss(pred, true), generalized_box_iou_loss(pred, true, reduction="none")
    assert torch.equal(mine, theirs)
    (ours,) = torch.autograd.grad(mine.sum(), pred)
    (reference,) = torch.autograd.grad(generalized_box_iou_loss(pred, true, reduction="sum"), pred)
    assert torch.allclose(ours, reference, atol=1e-7)
