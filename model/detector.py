"""The nn.Module of every network of model/network.py: its features, shared by a classification head and
(optionally) a box head.

    images (B, 3, S, S) -> features (B, F) -> logits (B, C)
                                           -> boxes (B, 4) xyxy in [0, 1], corners in order (None without a box head)

Apart from network.py so that reading the networks' registry never imports torch (network.py's docstring).
"""

from __future__ import annotations

import torch
from torch import nn

from model.data.boxes import ordered


class Detector(nn.Module):
    """Features shared by a classification head and, optionally, a box head.

    ``frozen`` keeps the features fixed: no gradient, and their BatchNorm running statistics frozen too (a
    frozen ResNet in train mode would otherwise still update them).
    """

    def __init__(
        self, features: nn.Module, classifier: nn.Sequential, box_regressor: nn.Sequential | None, frozen: bool
    ):
        super().__init__()
        self.features = features  # (B, 3, S, S) -> (B, F)
        self.classifier = classifier  # (B, F) -> (B, C)
        self.box_regressor = box_regressor  # (B, F) -> (B, 4) in [0, 1]
        for head in (classifier, box_regressor):
            for layer in head.modules() if head is not None else ():
                if isinstance(layer, nn.Linear):  # the course template's initialisation
                    nn.init.xavier_uniform_(layer.weight)
                    nn.init.zeros_(layer.bias)
        self.frozen = frozen
        if frozen:
            for parameter in self.features.parameters():
                parameter.requires_grad_(False)
            self.features.eval()

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        features = self.features(images)  # (B, F)
        logits = self.classifier(features)  # (B, C)
        if self.box_regressor is None:
            return logits, None
        # corners put in order so the output is always a valid xyxy box; min/max pass gradients through
        boxes = ordered(self.box_regressor(features))  # (B, 4) xyxy in [0, 1]
        return logits, boxes

    def train(self, mode: bool = True) -> Detector:
        super().train(mode)
        if self.frozen:  # a frozen backbone keeps its BatchNorm running statistics frozen too
            self.features.eval()
        return self

    @property
    def has_box_head(self) -> bool:
        return self.box_regressor is not None
