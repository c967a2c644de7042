"""What is drawn on images: a prediction with the truth (predict.py, the report's galleries), the augmented
versions training feeds the network (--augment-preview), galleries, and Grad-CAM heat maps."""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch import nn

from model.augment import Augmenter, to_pixels
from model.images import resize_square, to_chw_uint8
from model.network import Detector

# BGR colours, distinct for colour-blind readers too (blue vs orange)
PREDICTED = (0, 140, 255)  # orange
TRUE = (230, 160, 0)  # blue
FAILURE = (40, 40, 220)  # red caption background
SUCCESS = (60, 160, 60)  # green caption background
WHITE = (255, 255, 255)
MIN_WIDTH = 480  # small images are enlarged so that captions stay readable
CAPTION_SCALE = 1.0  # OpenCV's font scale of a caption on an image MIN_WIDTH wide: readable in a report's gallery


def encode_image(image_bgr: np.ndarray, extension: str = ".png") -> bytes:
    """The image in the format of ``extension`` (.png, .jpg), as bytes."""
    quality = [cv2.IMWRITE_JPEG_QUALITY, 90] if extension.lower() in (".jpg", ".jpeg") else []
    done, data = cv2.imencode(extension, image_bgr, quality)
    if not done:
        raise ValueError(f"OpenCV cannot encode an image as {extension}")
    return data.tobytes()


def draw_prediction(
    image_bgr: np.ndarray,
    predicted: str,
    confidence: float,
    predicted_box: Sequence[float] | None,
    true: str | None = None,
    true_box: Sequence[float] | None = None,
    iou: float | None = None,
    failure: bool = False,
) -> np.ndarray:
    """Copy of the image with the predicted box (orange), the true box (blue), a caption, and a legend of the
    boxes drawn (none when neither is).

    Boxes are xyxy in pixels of ``image_bgr``.
    """
    canvas = _with_boxes(image_bgr, ((true_box, TRUE), (predicted_box, PREDICTED)))
    truth = [f"true: {true}"] if true is not None else []
    truth += [f"IoU {iou:.2f}"] if iou is not None else []
    caption = [f"predicted: {predicted} {confidence:.2f}", *([" | ".join(truth)] if truth else [])]
    band = _caption_band(canvas.shape[1], caption, FAILURE if failure else SUCCESS)
    return np.vstack([band, canvas, _legend(canvas.shape[1], predicted_box is not None, true_box is not None)])


def draw_truth(image_bgr: np.ndarray, caption: str, box: Sequence[float]) -> np.ndarray:
    """Copy of the image with its true box (blue) and a caption above: a dataset's row as it is annotated."""
    canvas = _with_boxes(image_bgr, [(box, TRUE)])
    return np.vstack([_caption_band(canvas.shape[1], [caption], SUCCESS), canvas])


def _with_boxes(image_bgr: np.ndarray, boxes) -> np.ndarray:
    """Copy of the image, small ones enlarged to MIN_WIDTH, with each (box, colour) drawn that is not None."""
    scale = max(1.0, MIN_WIDTH / image_bgr.shape[1])
    canvas = cv2.resize(image_bgr, None, fx=scale, fy=scale) if scale > 1 else image_bgr.copy()
    for box, colour in [(b, c) for b, c in boxes if b is not None]:
        x1, y1, x2, y2 = (round(v * scale) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, max(2, round(canvas.shape[1] / 250)))
    return canvas


def _caption_band(width: int, lines: Sequence[str], colour) -> np.ndarray:
    """The caption above an image: one line each, as large as the widest line allows (up to CAPTION_SCALE), so that
    it stays readable in a gallery's cell at print size."""
    font_scale = CAPTION_SCALE * width / MIN_WIDTH
    widest = lambda scale: max(cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] for t in lines)  # noqa: E731
    while widest(font_scale) > width - 12 and font_scale > 0.3:
        font_scale *= 0.9  # long captions shrink to fit
    thickness = max(1, round(font_scale * 1.6))
    (_, text_h), _ = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
    step = text_h + max(8, text_h // 2)
    band = np.full((step * len(lines) + 6, width, 3), colour, np.uint8)
    for k, text in enumerate(lines, 1):
        cv2.putText(band, text, (6, step * k - 2), cv2.FONT_HERSHEY_SIMPLEX, font_scale, WHITE, thickness, cv2.LINE_AA)
    return band


def _legend(width: int, with_predicted: bool, with_true: bool) -> np.ndarray:
    """The boxes drawn, named; no band at all when neither is (a classification-only network on an image without
    a box)."""
    font_scale = 0.75 * width / MIN_WIDTH  # as readable in a gallery's cell as the caption
    items = ([("predicted box", PREDICTED)] if with_predicted else []) + ([("true box", TRUE)] if with_true else [])
    band = np.full((int(34 * width / MIN_WIDTH) if items else 0, width, 3), 255, np.uint8)
    x, y = 6, band.shape[0] // 2
    for text, colour in items:
        cv2.line(band, (x, y), (x + 24, y), colour, 3)
        cv2.putText(band, text, (x + 30, y + 5), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 1, cv2.LINE_AA)
        x += 40 + cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)[0][0]
    return band


def gallery(images: Sequence[np.ndarray], cell_width: int = 360, columns: int = 3) -> np.ndarray:
    """A grid of annotated images, each scaled to ``cell_width`` and padded to a common height; three to a row,
    so that their captions can be read where the grid is printed at a page's width."""
    sizes = [(cell_width, max(1, round(im.shape[0] * cell_width / im.shape[1]))) for im in images]
    scaled = [cv2.resize(im, size, interpolation=cv2.INTER_AREA) for im, size in zip(images, sizes)]
    height = max(c.shape[0] for c in scaled)  # each cell padded to it (white below), and 4 px of white around
    cells = [cv2.copyMakeBorder(c, 4, 4 + height - c.shape[0], 4, 4, cv2.BORDER_CONSTANT, value=WHITE) for c in scaled]
    columns = min(columns, len(cells))
    rows = math.ceil(len(cells) / columns)
    cells += [np.full_like(cells[0], 255)] * (rows * columns - len(cells))
    return np.vstack([np.hstack(cells[r * columns : (r + 1) * columns]) for r in range(rows)])


def grad_cam(model: Detector, image: torch.Tensor) -> np.ndarray:
    """Grad-CAM of one normalised image (1, 3, S, S) for its predicted class: a (S, S) map in [0, 1].

    Gradients of the class score weight the last feature maps (Selvaraju et al., 2017): those of the last module of
    the feature extractor that still has a spatial map (before pooling).
    """
    pooling = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten)
    layer = [m for m in model.features.children() if not isinstance(m, pooling)][-1]
    stored: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _module, _inputs, output: stored.append(output))
    try:
        model.eval()
        with torch.enable_grad():
            image = image.detach().clone().requires_grad_(True)  # a graph even through a frozen backbone
            logits, _ = model(image)
            (gradients,) = torch.autograd.grad(logits[0, int(logits.argmax(dim=1))], stored[-1])
    finally:
        handle.remove()
    maps = stored[-1].detach()[0]  # (K, h, w)
    weights = gradients[0].mean(dim=(1, 2))  # (K,)
    cam = torch.relu((weights[:, None, None] * maps).sum(dim=0))
    cam = cam / cam.max() if cam.max() > 0 else cam
    return cv2.resize(cam.float().cpu().numpy(), (image.shape[-1], image.shape[-1]), interpolation=cv2.INTER_LINEAR)


def overlay_cam(image_bgr: np.ndarray, cam: np.ndarray, strength: float = 0.45) -> np.ndarray:
    """Blend a [0, 1] heat map (any size) over the image in the JET colour map."""
    scaled = cv2.resize(cam, (image_bgr.shape[1], image_bgr.shape[0]))
    heat = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.addWeighted(image_bgr, 1 - strength, heat, strength, 0)


def augmentation_sheet(
    image_bgr: np.ndarray, box, size: int, mean, std, augmenter: Augmenter, count: int
) -> np.ndarray:
    """The image resized as the network sees it, then ``count`` augmented versions, side by side, each with its box
    (blue; xyxy in [0, 1]): what training feeds the network."""
    images = to_chw_uint8(resize_square(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB), size))[None].repeat(count, 1, 1, 1)
    boxes = torch.tensor([box] * count, dtype=torch.float32)
    augmented, moved = augmenter(images, boxes, mean, std)
    tiles = [(images[0].float(), boxes[0]), *zip(to_pixels(augmented, mean, std).clamp(0, 255), moved)]
    side = max(size, 160)  # small inputs are enlarged to stay visible
    drawn = []
    for picture, corners in tiles:
        tile = cv2.cvtColor(picture.round().byte().permute(1, 2, 0).numpy(), cv2.COLOR_RGB2BGR)
        tile = cv2.resize(tile, (side, side), interpolation=cv2.INTER_NEAREST)
        x1, y1, x2, y2 = (round(float(v) * side) for v in corners)
        cv2.rectangle(tile, (x1, y1), (max(x1, x2 - 1), max(y1, y2 - 1)), TRUE, 2)
        drawn.append(cv2.copyMakeBorder(tile, 2, 2, 2, 2, cv2.BORDER_CONSTANT, value=WHITE))
    return np.hstack(drawn)
