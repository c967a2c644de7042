"""One image through the model, and what predict.py draws of it: the prediction (label, confidence, box) with
the truth where known, or the augmented versions training would feed the network (--augment-preview)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from model.data.augment import Augmenter, to_pixels
from model.data.boxes import pairwise_iou
from model.data.images import box_to_pixels, box_to_unit, network_input, resize_square, to_chw_uint8
from model.detector import Detector
from model.engine.steps import infer
from model.evaluation.inference import Inference
from model.prediction.inputs import Box, Item
from model.reporting.visualize import TRUE
from model.runs.checkpoint import Checkpoint


@dataclass
class Outcome:
    item: Item
    predicted: str
    confidence: float
    box: Box | None  # pixels
    iou: float | None
    failure: bool

    @property
    def wrong_label(self) -> bool:
        return self.item.label is not None and self.predicted != self.item.label

    def describe(self) -> str:
        item = self.item
        truth = [f"true {item.label}"] if item.label is not None else []
        truth += [f"IoU {self.iou:.3f}"] if self.iou is not None else []
        detail = f" ({', '.join(truth)})" if truth else ""
        failure = "  FAILURE" if self.failure else ""
        return f"{'/'.join(item.path.parts[-2:])}: predicted {self.predicted} {self.confidence:.3f}{detail}{failure}"


def predict_one(
    model: Detector, image_bgr: np.ndarray, checkpoint: Checkpoint, inference: Inference, item: Item, threshold: float
) -> tuple[Outcome, torch.Tensor]:
    """Run one image through the model; returns the outcome and the normalised input (1, 3, S, S)."""
    rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    x = network_input(rgb, checkpoint.image_size, inference.device, checkpoint.mean, checkpoint.std)
    logits, boxes = infer(model, x, inference.precision)
    confidence, index = logits.softmax(dim=1)[0].max(dim=0)
    predicted = checkpoint.classes[int(index)]
    height, width = image_bgr.shape[:2]
    box = iou = None
    if boxes is not None:
        pred = boxes.cpu()  # (1, 4) in [0, 1]
        x1, y1, x2, y2 = (float(v) for v in box_to_pixels(pred, torch.tensor([[width, height]]))[0])
        box = (x1, y1, x2, y2)
        if item.box is not None:
            true = torch.tensor([box_to_unit(item.box, width, height)], dtype=torch.float32)
            iou = float(pairwise_iou(pred, true)[0])
    failure = (item.label is not None and predicted != item.label) or (iou is not None and iou < threshold)
    return Outcome(item, predicted, float(confidence), box, iou, failure), x


def augmentation_sheet(
    image_bgr: np.ndarray, box: Box | None, checkpoint: Checkpoint, augmenter: Augmenter, count: int
) -> np.ndarray:
    """The image resized as the network sees it, then ``count`` augmented versions, side by side,
    each with its box (blue): what training feeds the network."""
    height, width = image_bgr.shape[:2]
    unit = box_to_unit(box, width, height) if box is not None else (0.0, 0.0, 1.0, 1.0)
    image_size, mean, std = checkpoint.image_size, checkpoint.mean, checkpoint.std
    rgb = resize_square(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB), image_size)
    images = to_chw_uint8(rgb)[None].repeat(count, 1, 1, 1)
    boxes = torch.tensor([unit] * count, dtype=torch.float32)
    augmented, moved = augmenter(images, boxes, mean, std)
    tiles = [(images[0].float(), boxes[0]), *zip(to_pixels(augmented, mean, std).clamp(0, 255), moved)]
    side = max(image_size, 160)  # small inputs are enlarged to stay visible
    drawn = []
    for picture, corners in tiles:
        tile = cv2.cvtColor(picture.round().byte().permute(1, 2, 0).numpy(), cv2.COLOR_RGB2BGR)
        tile = cv2.resize(tile, (side, side), interpolation=cv2.INTER_NEAREST)
        x1, y1, x2, y2 = (round(float(v) * side) for v in corners)
        cv2.rectangle(tile, (x1, y1), (max(x1, x2 - 1), max(y1, y2 - 1)), TRUE, 2)
        drawn.append(cv2.copyMakeBorder(tile, 2, 2, 2, 2, cv2.BORDER_CONSTANT, value=(255, 255, 255)))
    return np.hstack(drawn)
