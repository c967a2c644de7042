"""Images as the networks see them: decoded RGB, resized square, normalised on the device; boxes
between pixels of the original image and [0, 1].

    images  (B, 3, S, S) float32, RGB, ImageNet-normalised, S = image size (224 by default)
    boxes   (B, 4) float32, xyxy divided by the ORIGINAL image width and height, in [0, 1]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from model import config


def decode_image(path: Path) -> tuple[np.ndarray | None, str | None]:
    """(H, W, 3) uint8 RGB of the image file, or None and what is wrong with it: missing, unreadable
    (not an image OpenCV can decode) or truncated (a JPEG or PNG whose end is missing: libjpeg would
    decode the part that is there and fill the rest with grey, saying so on stderr without a file name)."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except FileNotFoundError:
        return None, f"missing image {path}"
    except OSError as error:
        return None, f"unreadable image {path} ({error.strerror})"
    truncated = _truncated(data)
    if truncated:
        return None, f"truncated image {path} ({truncated}: a half-copied file?)"
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None  # BGR; grey images come back with 3 channels
    if image is None:
        return None, f"unreadable image {path} (OpenCV cannot decode it)"
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), None


def _truncated(data: np.ndarray) -> str | None:
    """Why a JPEG or PNG file's bytes are cut short, or None (other formats are not checked)."""
    head = data[:8].tobytes()
    if head[:2] == b"\xff\xd8":  # JPEG: ends with the end-of-image marker (some writers pad after it)
        return None if b"\xff\xd9" in data[-64:].tobytes() else "no JPEG end marker"
    if head == b"\x89PNG\r\n\x1a\n":
        return None if b"IEND" in data[-16:].tobytes() else "no PNG end chunk"
    return None


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file, read from its header (Pillow opens files lazily): no decode."""
    from PIL import Image

    with Image.open(path) as image:
        return image.size


def read_image_rgb(path: Path) -> np.ndarray | None:
    """(H, W, 3) uint8 RGB, or None when the file is missing, not an image, or truncated."""
    return decode_image(path)[0]


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) -> (size, size, 3); area averaging when shrinking avoids aliasing."""
    h, w = image.shape[:2]
    interpolation = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)


def to_chw_uint8(image: np.ndarray) -> torch.Tensor:
    """(S, S, 3) uint8 -> (3, S, S) uint8 tensor."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def normalize(
    images: torch.Tensor, mean: Sequence[float] = config.IMAGENET_MEAN, std: Sequence[float] = config.IMAGENET_STD
) -> torch.Tensor:
    """(B, 3, S, S) uint8 RGB -> (B, 3, S, S) float32 normalised; run it on the target device."""
    mean_t = torch.tensor(mean, device=images.device, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
    std_t = torch.tensor(std, device=images.device, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
    return (images.float() - mean_t) / std_t


def network_input(
    image_rgb: np.ndarray,
    image_size: int,
    device: torch.device | str = "cpu",
    mean: Sequence[float] = config.IMAGENET_MEAN,
    std: Sequence[float] = config.IMAGENET_STD,
) -> torch.Tensor:
    """One (H, W, 3) uint8 RGB image -> (1, 3, S, S) float32, resized and normalised on ``device``."""
    return normalize(to_chw_uint8(resize_square(image_rgb, image_size))[None].to(device), mean, std)


def box_to_unit(box: Sequence[float], width: int, height: int) -> tuple[float, float, float, float]:
    """Pixel xyxy of an image of (width, height) -> xyxy in [0, 1]."""
    x1, y1, x2, y2 = box
    return (x1 / width, y1 / height, x2 / width, y2 / height)


def box_to_pixels(boxes: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """(B, 4) xyxy in [0, 1] and (B, 2) original (width, height) -> (B, 4) xyxy in pixels."""
    return boxes * torch.as_tensor(sizes, dtype=boxes.dtype, device=boxes.device).repeat(1, 2)
