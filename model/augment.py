"""Box-aware data augmentation of training batches, on the device, with per-image parameters.

    images  (B, 3, S, S) uint8 RGB on the device  ->  (B, 3, S, S) float32 in [0, 255]
    boxes   (B, 4) float32 xyxy in [0, 1]          ->  the same boxes, moved with the pixels

Each policy is a list of transforms, each drawn per image (from a generator seeded by --seed and
saved in last.pth, so a resumed run draws exactly what it would have):

    flip        mirror left-right (the box mirrored)
    zoom        scale by s and shift, keeping the whole box in the frame: s > 1 crops into the image,
                s < 1 shrinks it inside a frame of the mean colour (a box-safe crop / zoom-out)
    colour      brightness, contrast and saturation factors, and a hue rotation
    grayscale   with some probability
    blur        a Gaussian blur, with some probability

Geometry is one affine warp per image (``torch.nn.functional.grid_sample``), so the box moves by
exactly the map that moves the pixels. No library does this here: torchvision's transforms v2
draw one set of parameters per call (per batch), and neither it nor kornia offers a crop that is
guaranteed to keep the box inside for each image of a batch.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

AUGMENT_SEED_OFFSET = 1_000_003  # the augmentation's generator is seeded apart from the batch order's
LUMA = (0.299, 0.587, 0.114)  # RGB -> grey (ITU-R 601)
YIQ = [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]]  # RGB -> YIQ


@dataclass(frozen=True)
class Policy:
    """How strongly each transform acts; each is drawn per image."""

    flip: float  # probability of a left-right mirror
    zoom: tuple[float, float]  # range of the scale factor s (1: unchanged), capped so the box fits
    shift: float  # largest move of the image centre, as a share of the side (the box always stays in)
    brightness: float  # factor in [1 - b, 1 + b]
    contrast: float  # factor in [1 - c, 1 + c] around the image's mean grey
    saturation: float  # factor in [1 - s, 1 + s] around each pixel's grey
    hue: float  # rotation of the colours by up to this share of the colour wheel
    grayscale: float  # probability
    blur: float  # probability of a Gaussian blur ...
    blur_sigma: tuple[float, float]  # ... of this sigma, in pixels of the network's input


POLICIES: dict[str, Policy] = {  # flip, zoom, shift, brightness, contrast, saturation, hue, grayscale, blur, sigma
    "light": Policy(0.5, (0.9, 1.1), 0.1, 0.2, 0.2, 0.2, 0.02, 0.0, 0.0, (0.0, 0.0)),
    "strong": Policy(0.5, (0.7, 1.3), 0.25, 0.4, 0.4, 0.4, 0.06, 0.1, 0.2, (0.5, 1.5)),
}
AUGMENT_POLICIES = ("off", *POLICIES)


@functools.lru_cache(maxsize=16)
def _constants(device: torch.device, mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[torch.Tensor, ...]:
    """The augmentation's constant tensors on ``device``, copied there once (not once per batch): luma, RGB -> YIQ
    and back (the inverse computed on the CPU: on a GPU it waits for the host), mean and std."""
    yiq = torch.tensor(YIQ)
    mean_t, std_t = (torch.tensor(v, dtype=torch.float32) for v in (mean, std))
    return tuple(value.to(device) for value in (torch.tensor(LUMA), yiq, torch.linalg.inv(yiq), mean_t, std_t))


@dataclass
class Draw:
    """The parameters of one batch, one row per image (on the device once drawn)."""

    flip: torch.Tensor  # (B,) bool
    scale: torch.Tensor  # (B,)
    shift: torch.Tensor  # (B, 2) t in x' = s x + t, per axis
    brightness: torch.Tensor  # (B,)
    contrast: torch.Tensor  # (B,)
    saturation: torch.Tensor  # (B,)
    hue: torch.Tensor  # (B,) radians
    grayscale: torch.Tensor  # (B,) bool
    sigma: torch.Tensor  # (B,) 0: no blur

    def to(self, device: torch.device) -> Draw:
        """The same parameters on ``device``, in one copy (from page-locked memory on CUDA, asynchronous)."""
        if device.type == "cpu":
            return self
        values = [getattr(self, f.name) for f in fields(self)]
        packed = torch.column_stack([v.float() for v in values])  # (B, 10)
        moved = packed.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else packed.to(device)
        parts = moved.split([v.shape[1:].numel() for v in values], 1)
        return Draw(*(part.reshape(v.shape).to(v.dtype) for part, v in zip(parts, values)))


class Augmenter:
    """Augments training batches by ``policy``; its random stream is part of a run's state."""

    def __init__(self, policy: Policy, seed: int):
        self.policy, self.generator = policy, torch.Generator().manual_seed(seed + AUGMENT_SEED_OFFSET)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(state["generator"].cpu())

    def __call__(
        self, images: torch.Tensor, boxes: torch.Tensor, mean: Sequence[float], std: Sequence[float]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images (B, 3, S, S) and their boxes -> float images normalised by ``mean`` and ``std`` (per
        channel: what the network eats) and the boxes moved with them. Colour and normalisation are one affine map
        per image, applied first; then the warp, whose border is 0: the mean colour once normalised."""
        draw = self.draw(boxes)
        on_device = draw.to(images.device)
        x, boxes = warp(recolour(images, on_device, mean, std), boxes, on_device)
        return blur(x, draw), boxes

    def draw(self, boxes: torch.Tensor) -> Draw:
        """Parameters for a batch whose boxes are ``boxes`` (B, 4); drawn on the CPU, whatever the
        device, so that a run draws the same wherever it trains."""
        p, n = self.policy, len(boxes)

        def uniform(low: float | torch.Tensor, high: float | torch.Tensor, *size: int) -> torch.Tensor:
            return low + (high - low) * torch.rand(size or (n,), generator=self.generator)

        def chance(probability: float) -> torch.Tensor:
            return torch.rand(n, generator=self.generator) < probability

        flip = chance(p.flip)
        flipped = mirrored(boxes.detach().float().cpu(), flip)
        side = (flipped[:, 2:] - flipped[:, :2]).amax(dim=1).clamp(min=1e-6)
        scale = uniform(p.zoom[0], torch.minimum(torch.full((n,), p.zoom[1]), 1 / side).clamp(min=p.zoom[0]))
        # per axis, x' = s x + t keeps [x1, x2] inside [0, 1] for t in [-s x1, 1 - s x2]
        low, high = -scale[:, None] * flipped[:, :2], 1 - scale[:, None] * flipped[:, 2:]  # (B, 2)
        centred = ((1 - scale) / 2)[:, None]  # the t that keeps the image centre in place
        near_low, near_high = torch.maximum(low, centred - p.shift), torch.minimum(high, centred + p.shift)
        inside = near_low <= near_high  # else the box only fits away from the centre: the nearest safe t
        drawn = uniform(near_low.T, torch.maximum(near_low, near_high).T, 2, n).T  # x for every image, then y
        shift, blur = torch.where(inside, drawn, centred.clamp(min=low, max=high)), chance(p.blur)
        brightness, contrast, saturation = (uniform(1 - f, 1 + f) for f in (p.brightness, p.contrast, p.saturation))
        hue, grayscale = uniform(-p.hue, p.hue) * 2 * math.pi, chance(p.grayscale)
        sigma = torch.where(blur, uniform(*p.blur_sigma), torch.zeros(n))
        return Draw(flip, scale, shift, brightness, contrast, saturation, hue, grayscale, sigma)


def warp(
    images: torch.Tensor, boxes: torch.Tensor, draw: Draw, mode: str = "bilinear"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip, scale and shift each image (B, C, S, S) float and its box; outside the source: 0.

    A point x of the image (in [0, 1], flipped first: 1 - x) goes to x' = s x + t; the sampling
    grid is the inverse map in grid_sample's [-1, 1] coordinates (pixel edges, align_corners=False).
    """
    sign, scale, shift = torch.where(draw.flip, -1.0, 1.0), draw.scale, draw.shift  # on the images' device
    offset, zero = (1 - 2 * shift) / scale[:, None] - 1, torch.zeros_like(scale)  # (B, 2), (B,)
    theta = torch.stack([sign / scale, zero, sign * offset[:, 0], zero, 1 / scale, offset[:, 1]], 1).view(-1, 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    warped = F.grid_sample(images, grid, mode=mode, padding_mode="zeros", align_corners=False)
    moved = mirrored(boxes.to(images.device), draw.flip) * scale[:, None] + shift.repeat(1, 2)
    return warped, moved.clamp(0, 1)  # inside by construction; the clamp only absorbs rounding


def mirrored(boxes: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """(B, 4) xyxy in [0, 1], mirrored left-right where ``flip`` (B,) holds."""
    x1, y1, x2, y2 = boxes.unbind(1)
    return torch.where(flip[:, None], torch.stack([1 - x2, y1, 1 - x1, y2], 1), boxes)


def recolour(images: torch.Tensor, draw: Draw, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (B, 3, S, S) RGB -> normalised float: brightness, contrast, saturation, hue and grayscale
    per image, clipped to the 0-255 range, then ImageNet-normalised. Each step is linear in the pixel,
    so all are composed into one affine map per image (a 3x3 matrix and an offset): one pass."""
    device = images.device
    luma, yiq, yiq_inverse, mean_t, std_t = _constants(device, tuple(mean), tuple(std))
    to_grey = torch.ones(3, 1, device=device) @ luma[None]  # (3, 3): every channel becomes the pixel's grey
    brightness, contrast, saturation = draw.brightness, draw.contrast, draw.saturation.view(-1, 1, 1)  # on the device
    # x -> b x; -> c (b x) + (1 - c) m with m the image's mean grey (after the brightness: b m0);
    # -> saturation around each pixel's grey; -> hue rotation about the grey axis; -> grey, maybe
    matrix = saturation * torch.eye(3, device=device) + (1 - saturation) * to_grey  # (B, 3, 3)
    cos, sin, one, zero = draw.hue.cos(), draw.hue.sin(), torch.ones_like(draw.hue), torch.zeros_like(draw.hue)
    rotation = torch.stack([one, zero, zero, zero, cos, -sin, zero, sin, cos], 1).view(-1, 3, 3)  # in YIQ: luma kept
    matrix = yiq_inverse @ rotation @ yiq @ matrix
    matrix = torch.where(draw.grayscale.view(-1, 1, 1), to_grey @ matrix, matrix)
    matrix = matrix * (contrast * brightness).view(-1, 1, 1)
    x = images.float()
    mean_grey = torch.einsum("c,bchw->b", luma, x) / x[0, 0].numel()
    offset = (1 - contrast) * brightness * mean_grey  # grey stays grey through every step: one offset for all
    scale, centre = 255.0 * std_t, 255.0 * mean_t  # normalise: (x - 255 mean) / (255 std)
    low, high = (-centre / scale).view(1, 3, 1, 1), ((255.0 - centre) / scale).view(1, 3, 1, 1)
    matrix = matrix / scale.view(1, 3, 1)
    offsets = (offset[:, None] - centre[None]) / scale[None]  # (B, 3)
    out = torch.einsum("bij,bjhw->bihw", matrix, x) + offsets.view(-1, 3, 1, 1)
    return torch.maximum(torch.minimum(out, high), low)  # the 0-255 range, in normalised units


def blur(images: torch.Tensor, draw: Draw) -> torch.Tensor:
    """The images (B, C, H, W) drawn for a blur, blurred in place by their own sigma in pixels (read on the host:
    no wait), the others as they are: a separable depthwise convolution per image (a few per batch)."""
    channels = images.shape[1]
    for i, s in [(i, s) for i, s in enumerate(draw.sigma.tolist()) if s > 0]:
        radius = max(1, math.ceil(2.5 * s))
        offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
        kernel = torch.exp(-0.5 * (offsets / s) ** 2)
        kernel = (kernel / kernel.sum()).repeat(channels, 1)  # (C, K)
        x = F.pad(images[i : i + 1], (radius, radius, radius, radius), mode="replicate")
        x = x.contiguous(memory_format=torch.channels_last)  # depthwise convolutions run ~3x faster so on a CPU
        x = F.conv2d(x, kernel[:, None, None, :], groups=channels)
        images[i] = F.conv2d(x, kernel[:, None, :, None], groups=channels)[0]
    return images


def to_pixels(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Normalised (B, 3, S, S) -> RGB in [0, 255] (to look at what the network was fed)."""
    return images * 255.0 * torch.tensor(std).view(1, 3, 1, 1) + 255.0 * torch.tensor(mean).view(1, 3, 1, 1)
