"""The four detectors of the practical: shared features, a classification head and a box head.

Each network is one class here, registered once with ``@network``. The class says everything the rest of
the toolkit knows about it: its name (``--model``), its docstring's first line (the help text), the smallest
input side it takes, the sizes of its heads' hidden layers, and its ``features`` (the layers the two heads
share). The options it takes are the keyword arguments of its ``features`` (``batchnorm``; ResNet's
``pretrained``, ``freeze`` and ``weights``): train.py's command line, TrainOptions and the checkpoint derive
their lists from them, so a fifth network is one class.

``build_model`` puts the features and the heads together into a Detector (model/detector.py, the nn.Module):

    model = build_model("simple", num_classes=3)
    logits, boxes = model(images)   # (B, 3) class scores, (B, 4) xyxy in [0, 1] (None without a box head)

The number of features entering the heads is measured by running a dummy image through the features,
never written by hand, so any image size and any option combination fits. torch is imported when layers
are first built, not when this module is read: the command lines list the networks from it in a blink.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from model import config
from model.core.errors import UserError
from model.core.lazy import LazyModule

if TYPE_CHECKING:
    import torch
    from torch import nn

    from model.detector import Detector
else:
    torch, nn = LazyModule("torch"), LazyModule("torch.nn")

NetworkT = TypeVar("NetworkT", bound=type["Network"])
NETWORKS: dict[str, type[Network]] = {}  # name -> class, in the practical's order (the order of registration)
COMMON_OPTIONS = ("box_head", "dropout", "image_size")  # what every network takes


class WeightsError(UserError):
    """Pretrained weights could not be had; the message says how to get them."""


def network(cls: NetworkT) -> NetworkT:
    """Register a network class under its ``name``: the one step that makes it known everywhere."""
    if cls.name in NETWORKS:
        raise ValueError(f"two networks named {cls.name!r}")
    NETWORKS[cls.name] = cls
    return cls


class Network:
    """A detector of the practical, described by its class: see the module's docstring."""

    name: ClassVar[str]
    min_image_size: ClassVar[int] = 32  # smallest input side whose feature map is not empty
    hidden: ClassVar[tuple[int, int]]  # the hidden layers of both heads

    def __init__(self, load_weights: bool = True):
        self.load_weights = load_weights  # False: a checkpoint's weights replace any pretrained ones

    # The layers both heads read, (B, 3, S, S) -> (B, F): a method of each network, whose keyword arguments (with
    # their defaults) are the options the network takes.
    features: Callable[..., nn.Module]

    def freezes(self, **options: Any) -> bool:
        """Whether the features stay fixed during training (weights and BatchNorm statistics), given its options."""
        return False

    @classmethod
    def options(cls) -> tuple[str, ...]:
        """The options of its own it takes: the keyword arguments of ``features``."""
        return tuple(name for name in inspect.signature(cls.features).parameters if name != "self")

    @classmethod
    def help(cls) -> str:
        return (inspect.getdoc(cls) or cls.name).splitlines()[0].rstrip(".")


def conv_block(in_channels: int, out_channels: int, batchnorm: bool, pool: int | None) -> list[nn.Module]:
    """Conv3x3 (padding 1) -> [BatchNorm] -> ReLU -> [MaxPool(pool, stride pool)]."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 3, padding=1)]
    if batchnorm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.ReLU(inplace=True))
    if pool:
        layers.append(nn.MaxPool2d(pool, stride=pool))
    return layers


@network
class SimpleDetector(Network):
    """The course template's network: three conv blocks with 4x4 max-pooling, 64x3x3 = 576 features."""

    name = "simple"
    min_image_size = 64  # three 4x4 poolings
    hidden = (32, 16)

    def features(self, batchnorm: bool = True) -> nn.Module:
        return nn.Sequential(
            *conv_block(3, 32, batchnorm, pool=4),  # 224 -> 56
            *conv_block(32, 64, batchnorm, pool=4),  # 56 -> 14
            *conv_block(64, 64, batchnorm, pool=4),  # 14 -> 3
            nn.Flatten(),
        )


@network
class DeeperDetector(Network):
    """Five conv blocks with 2x2 max-pooling: 224 -> 7, 512x7x7 features (Part 2 Q1)."""

    name = "deeper"
    min_image_size = 32  # five 2x2 poolings
    hidden = (512, 128)
    CHANNELS = (32, 64, 128, 256, 512)

    def features(self, batchnorm: bool = True) -> nn.Module:
        layers, previous = [], 3
        for channels in self.CHANNELS:
            layers += conv_block(previous, channels, batchnorm, pool=2)
            previous = channels
        return nn.Sequential(*layers, nn.Flatten())


@network
class VGGLikeDetector(Network):
    """VGG11's convolutions (configuration A), 512 units in the fully connected part (Part 2 Q2)."""

    name = "vgg"
    min_image_size = 32  # five 2x2 poolings
    hidden = (512, 512)
    LAYOUT = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")

    def features(self, batchnorm: bool = True) -> nn.Module:
        layers: list[nn.Module] = []
        previous = 3
        for item in self.LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(2, stride=2))
            else:
                layers += conv_block(previous, int(item), batchnorm, pool=None)
                previous = int(item)
        return nn.Sequential(*layers, nn.Flatten())


@network
class ResnetDetector(Network):
    """torchvision's ResNet-18 up to its average pooling (512 features), from ImageNet weights or from scratch.

    ``pretrained`` loads ImageNet weights (from torchvision's cache, or the file ``weights``); ``freeze``
    (default: when pretrained) keeps the backbone fixed, BatchNorm statistics included (Part 3 Q7).
    """

    name = "resnet"
    min_image_size = 32  # five stride-2 stages
    hidden = (512, 512)

    def features(self, pretrained: bool = True, freeze: bool | None = None, weights: Path | None = None) -> nn.Module:
        from torchvision.models import resnet18

        backbone = resnet18(weights=None)
        if pretrained and self.load_weights:  # not when a checkpoint's own weights are about to replace them
            load_imagenet_weights(backbone, weights)
        return nn.Sequential(*list(backbone.children())[:-1], nn.Flatten())  # without its fc layer

    def freezes(self, **options: Any) -> bool:
        pretrained, freeze = options.get("pretrained", True), options.get("freeze")
        return bool(pretrained if freeze is None else freeze)


# ----------------------------------------------------------------------------------------------
# What the registry tells
# ----------------------------------------------------------------------------------------------
def model_names() -> tuple[str, ...]:
    return tuple(NETWORKS)


def network_class(name: str) -> type[Network]:
    if name not in NETWORKS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(NETWORKS)}")
    return NETWORKS[name]


def takes_option(name: str, option: str) -> bool:
    """Whether network ``name`` takes ``option`` (every network takes the common ones)."""
    return option in COMMON_OPTIONS or option in network_class(name).options()


def networks_taking(option: str) -> tuple[str, ...]:
    return tuple(name for name in NETWORKS if takes_option(name, option))


def min_image_size(name: str) -> int:
    """The smallest ``--image-size`` the network ``name`` can take."""
    return network_class(name).min_image_size


# ----------------------------------------------------------------------------------------------
# Building one
# ----------------------------------------------------------------------------------------------
def make_classifier(in_features: int, hidden: tuple[int, int], num_classes: int, dropout: float) -> nn.Sequential:
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


def make_box_regressor(in_features: int, hidden: tuple[int, int]) -> nn.Sequential:
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


def build_model(
    name: str,
    num_classes: int,
    *,
    box_head: bool = True,
    dropout: float = 0.5,
    image_size: int = config.IMAGE_SIZE,
    load_weights: bool = True,
    **options: Any,
) -> Detector:
    """``build_model("vgg", 3, dropout=0.0)``: the network ``name`` with its heads; ``options`` are its own
    (``batchnorm``; ``pretrained``, ``freeze``, ``weights``). ``load_weights=False`` skips pretrained
    weights (a checkpoint's own replace them: nothing is downloaded)."""
    from model.detector import Detector

    spec = network_class(name)(load_weights)
    unknown = sorted(set(options) - set(spec.options()))
    if unknown:
        raise ValueError(f"--model {name} takes no option {', '.join(unknown)}")
    features = spec.features(**options)
    n_features = feature_size(features, image_size)
    classifier = make_classifier(n_features, spec.hidden, num_classes, dropout)
    regressor = make_box_regressor(n_features, spec.hidden) if box_head else None
    return Detector(features, classifier, regressor, frozen=spec.freezes(**options))


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


# ----------------------------------------------------------------------------------------------
# ResNet-18's ImageNet weights
# ----------------------------------------------------------------------------------------------
def imagenet_weights_file() -> Path:
    """Where torchvision keeps ResNet-18's ImageNet weights once downloaded (its URL's file name)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / IMAGENET_FILE


IMAGENET_URL = (
    "https://download.pytorch.org/models/resnet18-f37072fd.pth"  # torchvision's ResNet18_Weights.IMAGENET1K_V1
)
IMAGENET_FILE = Path(IMAGENET_URL).name


def load_imagenet_weights(backbone: nn.Module, weights_path: Path | None) -> None:
    """ResNet-18's ImageNet weights into ``backbone``; a WeightsError when the file holds other weights."""
    state = imagenet_resnet18_state(weights_path)
    where = f"--weights {weights_path}" if weights_path else str(imagenet_weights_file())
    if not isinstance(state, dict) or "format" in state:  # e.g. a checkpoint of this toolkit's train.py
        raise WeightsError(
            f"{where}: a checkpoint of this toolkit, not torchvision's ResNet-18 ImageNet weights; pass the "
            f"{IMAGENET_FILE} file torchvision downloads (to go on with a run, use train.py --resume)"
        )
    try:
        backbone.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as error:
        reason = str(error).strip().splitlines()[0][:160]
        raise WeightsError(
            f"{where}: not ResNet-18's ImageNet weights ({reason}); pass the {IMAGENET_FILE} file torchvision downloads"
        ) from None


def imagenet_resnet18_state(weights_path: Path | None) -> dict[str, torch.Tensor]:
    """ResNet-18 ImageNet weights from a file, else torchvision's cache (downloading if online)."""
    if weights_path:
        try:
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
        except Exception as error:
            reason = str(error).strip().splitlines()[0][:120] if str(error).strip() else type(error).__name__
            raise WeightsError(
                f"--weights {weights_path}: not a loadable weights file ({reason}); pass the {IMAGENET_FILE} file "
                f"torchvision downloads"
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
