"""The four detectors of the practical: features shared by a classification head and a box head.

    model = DeeperDetector(num_classes=3)
    logits, boxes = model(images)   # (B, 3) class scores, (B, 4) xyxy in [0, 1] (None with box_head=False)

Each network is one subclass of ``Detector``: its name (``--model``), its docstring's first line (the help), the
smallest input side it takes, its heads' hidden sizes, and ``make_features`` (the layers both heads read), whose
keyword arguments are the options it takes (``batchnorm``; ResNet's ``pretrained``, ``freeze``, ``weights``).
Defining the class registers it: train.py's --model, its options and the checkpoints follow, so a fifth network
is one class. The number of features entering the heads is measured on a dummy image, never written by hand.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from model import config
from model.errors import UserError

NETWORKS: dict[str, type[Detector]] = {}  # name -> class, in the order of their definition (the practical's)


def ordered(boxes: torch.Tensor) -> torch.Tensor:
    """(B, 4) -> (B, 4) with x1 <= x2 and y1 <= y2 (min and max pass the gradients through)."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([torch.minimum(x1, x2), torch.minimum(y1, y2), torch.maximum(x1, x2), torch.maximum(y1, y2)], -1)


class Detector(nn.Module):
    """Features (B, 3, S, S) -> (B, F), a classifier (B, F) -> (B, C) and a box regressor (B, F) -> (B, 4)."""

    name: ClassVar[str]
    min_image_size: ClassVar[int] = 32  # the smallest input side whose feature map is not empty
    hidden: ClassVar[tuple[int, int]]  # the hidden layers of both heads
    make_features: Callable[..., nn.Module]  # each network's own: its keyword arguments are its options

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        NETWORKS[cls.name] = cls

    def __init__(self, num_classes: int, box_head: bool = True, dropout: float = 0.5,
                 image_size: int = config.IMAGE_SIZE, load_weights: bool = True, **options: Any):  # fmt: skip
        super().__init__()
        self.load_weights = load_weights  # False: a checkpoint's weights replace any pretrained ones
        self.features = self.make_features(**options)
        n = feature_size(self.features, image_size)
        h1, h2 = self.hidden
        self.classifier = nn.Sequential(  # Linear -> ReLU -> Dropout, twice, then the class scores
            nn.Linear(n, h1), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(h1, h2), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(h2, num_classes),
        )  # fmt: skip
        self.box_regressor = None  # Linear -> ReLU, twice, then 4 corners in [0, 1] (Part 3 Q1-Q3); no dropout
        if box_head:
            self.box_regressor = nn.Sequential(
                nn.Linear(n, h1), nn.ReLU(inplace=True), nn.Linear(h1, h2), nn.ReLU(inplace=True),
                nn.Linear(h2, 4), nn.Sigmoid(),
            )  # fmt: skip
        for layer in [*self.classifier, *(self.box_regressor or [])]:
            if isinstance(layer, nn.Linear):  # the course template's initialisation
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)
        self.frozen = self.freezes(**options)
        if self.frozen:
            self.features.requires_grad_(False)
            self.features.eval()

    def freezes(self, **options: Any) -> bool:
        """Whether the features stay fixed in training (weights and BatchNorm statistics)."""
        return False

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        features = self.features(images)  # (B, F)
        logits = self.classifier(features)  # (B, C)
        if self.box_regressor is None:
            return logits, None
        return logits, ordered(self.box_regressor(features))  # (B, 4) xyxy in [0, 1], corners in order

    def train(self, mode: bool = True) -> Detector:
        super().train(mode)
        if self.frozen:  # a frozen backbone keeps its BatchNorm running statistics too
            self.features.eval()
        return self

    @classmethod
    def options(cls) -> tuple[str, ...]:
        """The options of its own it takes: the keyword arguments of ``make_features``."""
        return tuple(name for name in inspect.signature(cls.make_features).parameters if name != "self")

    @classmethod
    def help(cls) -> str:
        return (inspect.getdoc(cls) or cls.name).splitlines()[0].rstrip(".")


def feature_size(features: nn.Module, image_size: int) -> int:
    """Values per image out of ``features``, measured on a dummy input (in eval mode: no BatchNorm update)."""
    features.eval()
    try:
        with torch.no_grad():
            return features(torch.zeros(1, 3, image_size, image_size)).flatten(1).shape[1]
    except RuntimeError as error:
        raise UserError(f"--image-size {image_size} is too small for this network ({error})") from None
    finally:
        features.train()


def conv_blocks(layout: Sequence[tuple[int, int | None]], batchnorm: bool) -> nn.Sequential:
    """One block per (out_channels, pool) of ``layout``, from the image's 3 channels: Conv3x3 (padding 1) ->
    [BatchNorm] -> ReLU -> [MaxPool(pool, stride pool)]; then Flatten."""
    layers: list[nn.Module] = []
    for in_channels, (out_channels, pool) in zip([3, *(c for c, _ in layout)], layout):
        layers.append(nn.Conv2d(in_channels, out_channels, 3, padding=1))
        layers += [nn.BatchNorm2d(out_channels)] if batchnorm else []
        layers.append(nn.ReLU(inplace=True))
        layers += [nn.MaxPool2d(pool, stride=pool)] if pool else []
    return nn.Sequential(*layers, nn.Flatten())


class SimpleDetector(Detector):
    """The course template's network: three conv blocks with 4x4 max-pooling, 64x3x3 = 576 features."""

    name = "simple"
    min_image_size = 64  # three 4x4 poolings
    hidden = (32, 16)
    LAYOUT = ((32, 4), (64, 4), (64, 4))  # (out channels, pooling) per block: 224 -> 56 -> 14 -> 3

    def make_features(self, batchnorm: bool = True) -> nn.Module:
        return conv_blocks(self.LAYOUT, batchnorm)


class DeeperDetector(Detector):
    """Five conv blocks with 2x2 max-pooling: 224 -> 7, 512x7x7 features (Part 2 Q1)."""

    name = "deeper"
    hidden = (512, 128)
    LAYOUT = ((32, 2), (64, 2), (128, 2), (256, 2), (512, 2))  # 224 -> 112 -> 56 -> 28 -> 14 -> 7

    def make_features(self, batchnorm: bool = True) -> nn.Module:
        return conv_blocks(self.LAYOUT, batchnorm)


class VGGLikeDetector(Detector):
    """VGG11's convolutions (configuration A), 512 units in the fully connected part (Part 2 Q2)."""

    name = "vgg"
    hidden = (512, 512)
    # torchvision's (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"): 224 -> 7
    LAYOUT = ((64, 2), (128, 2), (256, None), (256, 2), (512, None), (512, 2), (512, None), (512, 2))

    def make_features(self, batchnorm: bool = True) -> nn.Module:
        return conv_blocks(self.LAYOUT, batchnorm)


class ResnetDetector(Detector):
    """torchvision's ResNet-18 up to its average pooling (512 features), from ImageNet weights or from scratch.

    ``pretrained`` loads ImageNet weights (torchvision's cache, or the file ``weights``); ``freeze`` (default: when
    pretrained) keeps the backbone fixed, BatchNorm statistics included (Part 3 Q7).
    """

    name = "resnet"
    hidden = (512, 512)

    def make_features(
        self, pretrained: bool = True, freeze: bool | None = None, weights: Path | None = None
    ) -> nn.Module:
        from torchvision.models import resnet18

        backbone = resnet18(weights=None)
        if pretrained and self.load_weights:
            try:
                backbone.load_state_dict(imagenet_weights(weights))
            except (RuntimeError, TypeError, AttributeError) as error:
                where = f"--weights {weights}" if weights else imagenet_weights_file()
                raise UserError(f"{where}: not ResNet-18's ImageNet weights "
                                f"({str(error).strip().splitlines()[0][:160]}); pass the {IMAGENET_FILE} file "
                                "torchvision downloads") from None  # fmt: skip
        return nn.Sequential(*list(backbone.children())[:-1], nn.Flatten())  # without its fc layer

    def freezes(self, pretrained: bool = True, freeze: bool | None = None, **_options: Any) -> bool:
        return bool(pretrained if freeze is None else freeze)


def build_model(name: str, num_classes: int, **options: Any) -> Detector:
    """``build_model("vgg", 3, dropout=0.0)``: the network ``name`` with its heads."""
    unknown = sorted(set(options) - {"box_head", "dropout", "image_size", "load_weights", *NETWORKS[name].options()})
    if unknown:
        raise UserError(f"--model {name} takes no option {', '.join(unknown)}")
    return NETWORKS[name](num_classes, **options)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    return sum(p.numel() for p in model.parameters()), sum(p.numel() for p in model.parameters() if p.requires_grad)


IMAGENET_URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"  # torchvision's IMAGENET1K_V1
IMAGENET_FILE = Path(IMAGENET_URL).name


def imagenet_weights_file() -> Path:
    """Where torchvision keeps ResNet-18's ImageNet weights once downloaded."""
    return Path(torch.hub.get_dir()) / "checkpoints" / IMAGENET_FILE


def imagenet_weights(path: Path | None) -> dict[str, torch.Tensor]:
    """ResNet-18's ImageNet weights from ``path``, else torchvision's cache (downloading them when online)."""
    if path is None:
        from torchvision.models import ResNet18_Weights

        try:
            return ResNet18_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
        except Exception as error:  # URLError, socket and HTTP errors: all mean offline
            cache = imagenet_weights_file().parent
            raise UserError(f"ImageNet weights for resnet18 are not in {cache} and could not be downloaded "
                            f"({type(error).__name__}). On a machine with internet download {IMAGENET_URL} into "
                            f"{cache} (or pass --weights FILE), or train from scratch with "
                            "--no-pretrained") from None  # fmt: skip
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise UserError(f"--weights {path}: not a loadable weights file ({type(error).__name__}); pass the "
                        f"{IMAGENET_FILE} file torchvision downloads") from None  # fmt: skip
    if not isinstance(state, dict) or "format" in state:  # e.g. a checkpoint of this toolkit's train.py
        raise UserError(f"--weights {path}: a checkpoint of this toolkit, not torchvision's ResNet-18 ImageNet "
                        f"weights; pass the {IMAGENET_FILE} file torchvision downloads (to go on with a run, use "
                        "train.py --resume)")  # fmt: skip
    return state.get("state_dict", state)
