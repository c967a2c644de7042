"""How the weights move: the optimizer (--optimizer) and the learning rate of each epoch (--lr-schedule)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from model.core.lazy import LazyModule

if TYPE_CHECKING:  # torch is imported on first use: the command line reads the choices from here
    import torch
else:
    torch = LazyModule("torch")

OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("none", "cosine", "plateau")


def make_optimizer(
    name: str, parameters: list[torch.nn.Parameter], lr: float, weight_decay: float, device: torch.device
) -> torch.optim.Optimizer:
    """adam, adamw, or sgd with momentum 0.9; Adam's fused kernel on CUDA (one launch for every parameter:
    the small networks' steps are bound by kernel launches there)."""
    fused = True if device.type == "cuda" else None
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay, fused=fused)
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay, fused=fused)
    return torch.optim.SGD(parameters, lr=lr, momentum=0.9, weight_decay=weight_decay)


class LearningRate:
    """The learning rate of each epoch (--lr-schedule), and the state a resumed run needs.

    none: --lr throughout. cosine: epoch e of E trains at lr * (1 + cos(pi * (e - 1) / E)) / 2,
    from --lr down towards 0 at the last epoch; a run resumed with more epochs follows the curve of
    its new total from where it stands, so it neither restarts from --lr nor sits at 0. plateau:
    halved after PLATEAU_EPOCHS epochs in a row without a validation loss below the best so far.
    """

    PLATEAU_EPOCHS = 3

    def __init__(self, kind: str, base: float, epochs: int):
        self.kind, self.base, self.epochs = kind, base, epochs
        self.best_loss, self.stale, self.scale = math.inf, 0, 1.0  # plateau's state

    def at(self, epoch: int) -> float:
        """The learning rate of ``epoch`` (1-based)."""
        if self.kind == "cosine":
            return self.base * 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / self.epochs))
        return self.base * self.scale

    def observe(self, val_loss: float) -> None:
        """Called after each epoch with its validation loss."""
        if val_loss < self.best_loss:
            self.best_loss, self.stale = val_loss, 0
        else:
            self.stale += 1
        if self.kind == "plateau" and self.stale >= self.PLATEAU_EPOCHS:
            self.scale, self.stale = self.scale * 0.5, 0

    def state_dict(self) -> dict[str, float]:
        return {"best_loss": self.best_loss, "stale": self.stale, "scale": self.scale}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.best_loss, self.stale, self.scale = float(state["best_loss"]), int(state["stale"]), float(state["scale"])
