"""The four detectors of the practical: shared features, a classification head and a box head.

Every detector maps ``images (B, 3, S, S)`` to ``(logits (B, C), boxes (B, 4))``: class scores and
the object's box as xyxy in [0, 1] (``boxes`` is None for a classification-only network). The
number of features entering the heads is measured by running a dummy image through the feature
extractor, never written by hand, so any image size and any option combination fits.

    model = build_model("simple", num_classes=3)
    logits, boxes = model(images)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model import config
from model.core.errors import UserError
from model.data.boxes import ordered

MODEL_NAMES = ("simple", "deeper", "vgg", "resnet")


class WeightsError(UserError):
    """Pretrained weights could not be had; the message says how to get them."""


def conv_block(in_channels: int, out_channels: int, batchnorm: bool, pool: int | None) -> list[nn.Module]:
    """Conv3x3 (padding 1) -> [BatchNorm] -> ReLU -> [MaxPool(pool, stride pool)]."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 3, padding=1)]
    if batchnorm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.ReLU(inplace=True))
    if pool:
        layers.append(nn.MaxPool2d(pool, stride=pool))
    return layers


def classification_head(in_features: int, hidden: tuple[int, int], num_classes: int, dropout: float) -> nn.Sequential:
    """Linear -> ReLU -> Dropout -> Linear -> ReLU -> Dropout -> Linear: (B, F) -> (B, C) logits."""
    h1, h2 = hidden
    return nn.Sequential(
        nn.Linear(in_features, h1),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(h1, h2),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(h2, num_classes),
    )


def box_head(in_features: int, hidden: tuple[int, int]) -> nn.Sequential:
    """Linear -> ReLU -> Linear -> ReLU -> Linear -> Sigmoid, no dropout: (B, F) -> (B, 4) in [0, 1]."""
    h1, h2 = hidden
    return nn.Sequential(
        nn.Linear(in_features, h1),
        nn.ReLU(inplace=True),
        nn.Linear(h1, h2),
        nn.ReLU(inplace=True),
        nn.Linear(h2, 4),
        nn.Sigmoid(),
    )


def feature_size(features: nn.Module, image_size: int) -> int:
    """Number of values per image that ``features`` outputs, measured on a dummy input."""
    was_training = features.training
    features.eval()  # BatchNorm must not update its statistics on the dummy input
    try:
        with torch.no_grad():
            out = features(torch.zeros(1, 3, image_size, image_size))
    except RuntimeError as error:
        raise ValueError(f"image size {image_size} is too small for this network ({error})") from None
    finally:
        features.train(was_training)
    return out.flatten(1).shape[1]


class Detector(nn.Module):
    """Features shared by a classification head and (optionally) a box head."""

    MIN_IMAGE_SIZE = 32  # smallest input side whose feature map is not empty

    def __init__(
        self,
        features: nn.Module,
        num_classes: int,
        hidden: tuple[int, int],
        dropout: float,
        with_box_head: bool,
        image_size: int,
    ):
        super().__init__()
        self.features = features  # (B, 3, S, S) -> (B, F)
        n_features = feature_size(features, image_size)
        self.classifier = classification_head(n_features, hidden, num_classes, dropout)
        self.box_regressor = box_head(n_features, hidden) if with_box_head else None
        for head in (self.classifier, self.box_regressor):
            for layer in head.modules() if head is not None else ():
                if isinstance(layer, nn.Linear):  # the course template's initialisation
                    nn.init.xavier_uniform_(layer.weight)
                    nn.init.zeros_(layer.bias)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        features = self.features(images)  # (B, F)
        logits = self.classifier(features)  # (B, C)
        if self.box_regressor is None:
            return logits, None
        # corners put in order so the output is always a valid xyxy box; min/max pass gradients through
        boxes = ordered(self.box_regressor(features))  # (B, 4) xyxy in [0, 1]
        return logits, boxes


class SimpleDetector(Detector):
    """The course template's network: three conv blocks with 4x4 max-pooling, 64x3x3 = 576 features."""

    MIN_IMAGE_SIZE = 64  # three 4x4 poolings

    def __init__(
        self,
        num_classes: int,
        box_head: bool = True,
        dropout: float = 0.5,
        batchnorm: bool = True,
        image_size: int = config.IMAGE_SIZE,
    ):
        features = nn.Sequential(
            *conv_block(3, 32, batchnorm, pool=4),  # 224 -> 56
            *conv_block(32, 64, batchnorm, pool=4),  # 56 -> 14
            *conv_block(64, 64, batchnorm, pool=4),  # 14 -> 3
            nn.Flatten(),
        )
        super().__init__(features, num_classes, (32, 16), dropout, box_head, image_size)


class DeeperDetector(Detector):
    """Five conv blocks with 2x2 max-pooling: 224 -> 7, 512x7x7 features (Part 2 Q1)."""

    CHANNELS = (32, 64, 128, 256, 512)
    MIN_IMAGE_SIZE = 32  # five 2x2 poolings

    def __init__(
        self,
        num_classes: int,
        box_head: bool = True,
        dropout: float = 0.5,
        batchnorm: bool = True,
        image_size: int = config.IMAGE_SIZE,
    ):
        layers, previous = [], 3
        for channels in self.CHANNELS:
            layers += conv_block(previous, channels, batchnorm, pool=2)
            previous = channels
        super().__init__(nn.Sequential(*layers, nn.Flatten()), num_classes, (512, 128), dropout, box_head, image_size)


class VGGLikeDetector(Detector):
    """VGG11's convolutions (configuration A), 512 units in the fully connected part (Part 2 Q2)."""

    LAYOUT = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")
    MIN_IMAGE_SIZE = 32  # five 2x2 poolings

    def __init__(
        self,
        num_classes: int,
        box_head: bool = True,
        dropout: float = 0.5,
        batchnorm: bool = True,
        image_size: int = config.IMAGE_SIZE,
    ):
        layers: list[nn.Module] = []
        previous = 3
        for item in self.LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(2, stride=2))
            else:
                layers += conv_block(previous, int(item), batchnorm, pool=None)
                previous = int(item)
        super().__init__(nn.Sequential(*layers, nn.Flatten()), num_classes, (512, 512), dropout, box_head, image_size)


class ResnetDetector(Detector):
    """torchvision's ResNet-18 up to its average pooling (512 features), our two heads on top.

    ``pretrained`` loads ImageNet weights (from torchvision's cache, or ``weights_path``);
    ``freeze`` keeps the backbone fixed, BatchNorm statistics included (Part 3 Q7).
    """

    MIN_IMAGE_SIZE = 32  # five stride-2 stages

    def __init__(
        self,
        num_classes: int,
        box_head: bool = True,
        dropout: float = 0.5,
        pretrained: bool = True,
        freeze: bool = True,
        image_size: int = config.IMAGE_SIZE,
        weights_path: str | None = None,
        load_weights: bool = True,
    ):
        from torchvision.models import resnet18

        backbone = resnet18(weights=None)
        if pretrained and load_weights:  # not when a checkpoint's own weights are about to replace them
            load_imagenet_weights(backbone, weights_path)
        features = nn.Sequential(*list(backbone.children())[:-1], nn.Flatten())  # drop the fc layer
        super().__init__(features, num_classes, (512, 512), dropout, box_head, image_size)
        self.freeze = freeze
        if freeze:
            for parameter in self.features.parameters():
                parameter.requires_grad_(False)
            self.features.eval()

    def train(self, mode: bool = True) -> ResnetDetector:
        super().train(mode)
        if self.freeze:  # a frozen backbone keeps its BatchNorm running statistics frozen too
            self.features.eval()
        return self


def imagenet_weights_file() -> Path:
    """Where torchvision keeps ResNet-18's ImageNet weights once downloaded."""
    from torchvision.models import ResNet18_Weights

    return Path(torch.hub.get_dir()) / "checkpoints" / Path(ResNet18_Weights.IMAGENET1K_V1.url).name


def load_imagenet_weights(backbone: nn.Module, weights_path: str | None) -> None:
    """ResNet-18's ImageNet weights into ``backbone``; a WeightsError when the file holds other weights."""
    state = imagenet_resnet18_state(weights_path)
    where = f"--weights {weights_path}" if weights_path else str(imagenet_weights_file())
    if not isinstance(state, dict) or "format" in state:  # e.g. a checkpoint of this toolkit's train.py
        raise WeightsError(
            f"{where}: a checkpoint of this toolkit, not torchvision's ResNet-18 ImageNet weights; pass the "
            f"resnet18-f37072fd.pth file torchvision downloads (to go on with a run, use train.py --resume)"
        )
    try:
        backbone.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as error:
        reason = str(error).strip().splitlines()[0][:160]
        raise WeightsError(
            f"{where}: not ResNet-18's ImageNet weights ({reason}); pass the resnet18-f37072fd.pth file torchvision "
            f"downloads"
        ) from None


def imagenet_resnet18_state(weights_path: str | None) -> dict[str, torch.Tensor]:
    """ResNet-18 ImageNet weights from a file, else torchvision's cache (downloading if online)."""
    if weights_path:
        try:
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise WeightsError(
                f"--weights {weights_path}: not a loadable state dict ({error}); pass the "
                f"resnet18 ImageNet .pth file torchvision downloads"
            ) from None
        return state.get("state_dict", state) if isinstance(state, dict) else state
    from torchvision.models import ResNet18_Weights

    weights = ResNet18_Weights.IMAGENET1K_V1
    try:
        return weights.get_state_dict(progress=False)
    except Exception as error:  # URLError, socket errors, HTTP errors: all mean "offline"
        cache = imagenet_weights_file().parent
        raise WeightsError(
            f"ImageNet weights for resnet18 are not in {cache} and could not be downloaded ({type(error).__name__}). "
            f"On a machine with internet download {weights.url} into {cache} (or pass --weights FILE), "
            f"or train from scratch with --no-pretrained"
        ) from None


MODELS: dict[str, Callable[..., Detector]] = {
    "simple": SimpleDetector,
    "deeper": DeeperDetector,
    "vgg": VGGLikeDetector,
    "resnet": ResnetDetector,
}
# Options that only some networks take: the command line refuses them for the others.
TAKEN_ONLY_BY = {
    "pretrained": ("resnet",),
    "freeze": ("resnet",),
    "weights": ("resnet",),
    "batchnorm": ("simple", "deeper", "vgg"),
}


def takes_option(name: str, option: str) -> bool:
    """Whether network ``name`` has the option (resnet always has BatchNorm and alone has ImageNet weights)."""
    return name in TAKEN_ONLY_BY.get(option, MODEL_NAMES)


def model_options(
    name: str,
    box_head: bool = True,
    dropout: float = 0.5,
    batchnorm: bool = True,
    pretrained: bool = True,
    freeze: bool | None = None,
    image_size: int = config.IMAGE_SIZE,
) -> dict[str, Any]:
    """The constructor options that apply to ``name`` (what a checkpoint records); ``freeze`` left
    unset freezes a pretrained backbone."""
    chosen = {
        "box_head": box_head,
        "dropout": dropout,
        "image_size": image_size,
        "batchnorm": batchnorm,
        "pretrained": pretrained,
        "freeze": pretrained if freeze is None else freeze,
    }
    return {key: value for key, value in chosen.items() if takes_option(name, key)}


def min_image_size(name: str) -> int:
    """The smallest ``--image-size`` the network ``name`` can take."""
    detector = MODELS[name]
    assert isinstance(detector, type) and issubclass(detector, Detector)
    return detector.MIN_IMAGE_SIZE


def build_model(
    name: str, num_classes: int, *, load_weights: bool = True, weights_path: str | None = None, **options: Any
) -> Detector:
    """``build_model("vgg", 3, dropout=0.0)``; options as in each detector's constructor.

    ``load_weights=False`` skips pretrained weights (a checkpoint's own replace them: no download);
    ``weights_path`` is a file of them for machines that cannot download.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    if takes_option(name, "weights"):
        options.update(load_weights=load_weights, weights_path=weights_path)
    return MODELS[name](num_classes, **options)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable
