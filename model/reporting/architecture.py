"""Each network's architecture as a table generated from the code (Part 2 Q1-Q2): every layer, its
output shape for one image of the run's size, and its parameters, measured by running a dummy image
through the real model."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import torch
from torch import nn

from model.network import build_model


def _shape(output: object) -> str:
    if isinstance(output, torch.Tensor):
        return " × ".join(str(s) for s in output.shape[1:])
    if isinstance(output, (tuple, list)):
        return ", ".join(_shape(o) for o in output if o is not None)
    return "-"


def architecture_frame(model_name: str, options: dict, classes: int, image_size: int) -> pd.DataFrame:
    """One row per layer with parameters or a change of shape, in forward order: the part of the network
    (features, classifier, box regressor), the layer, its output shape (channels × height × width, or
    features), its parameters and how many of them train."""
    model = build_model(model_name, classes, load_weights=False, **options).eval()  # built for this table only
    names, rows = {module: name for name, module in model.named_modules()}, []

    def record(module: nn.Module, _inputs: object, output: object) -> None:
        part, _, layer = names[module].partition(".")
        own = list(module.parameters())
        count = {"parameters": sum(p.numel() for p in own), "trainable": sum(p.numel() for p in own if p.requires_grad)}
        rows.append({"part": part, "layer": f"{layer}: {_describe(module)}", "output": _shape(output), **count})

    for module in _layers(model):
        module.register_forward_hook(record)
    with torch.no_grad():
        model(torch.zeros(1, 3, image_size, image_size))
    frame = pd.DataFrame(rows)
    total = {"part": "total", "layer": "", "output": "", **frame[["parameters", "trainable"]].sum().to_dict()}
    return pd.concat([frame, pd.DataFrame([total])], ignore_index=True).astype(
        dict.fromkeys(("parameters", "trainable"), "Int64")
    )


def _layers(module: nn.Module) -> Iterator[nn.Module]:
    """The rows of the table: every leaf layer, but a residual block (ResNet's BasicBlock) as one row."""
    from torchvision.models.resnet import BasicBlock

    for child in module.children():
        if isinstance(child, BasicBlock) or not list(child.children()):
            yield child
        else:
            yield from _layers(child)


def _describe(module: nn.Module) -> str:
    """The layer in a few words: Conv2d 3→32 3×3, MaxPool 4×4, Linear 576→32, Dropout 0.5, ..."""
    kind = type(module).__name__
    if isinstance(module, nn.Conv2d):
        k, stride = module.kernel_size, f" stride {module.stride[0]}" if module.stride[0] > 1 else ""
        return f"Conv2d {module.in_channels}→{module.out_channels} {k[0]}×{k[1]}{stride}"
    if isinstance(module, nn.Linear):
        return f"Linear {module.in_features}→{module.out_features}"
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        side = module.kernel_size if isinstance(module.kernel_size, int) else module.kernel_size[0]
        return f"{kind} {side}×{side}"
    if isinstance(module, nn.BatchNorm2d):
        return f"BatchNorm2d {module.num_features}"
    if isinstance(module, nn.Dropout):
        return f"Dropout p={module.p:g}"
    first, second = getattr(module, "conv1", None), getattr(module, "conv2", None)
    if kind == "BasicBlock" and isinstance(first, nn.Conv2d) and isinstance(second, nn.Conv2d):
        stride = f" stride {first.stride[0]}" if first.stride[0] > 1 else ""
        return f"BasicBlock {first.in_channels}→{second.out_channels}{stride} (2 conv 3×3, BatchNorm, skip)"
    return kind
