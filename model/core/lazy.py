"""A module imported on first use, for the modules every command reads before it knows what to do.

``python train.py --help`` and every refused option must answer in a blink, but importing torch alone
takes over a second of CPU. The modules the command lines are built from (the networks' registry, the
options, the loss, the augmentation policies, the device and precision choices) therefore name torch
through a ``LazyModule``: it is imported the first time one of its names is used, by the first command
that computes.

    nn = LazyModule("torch.nn")     # nothing imported yet
    nn.Linear(4, 2)                 # now torch is
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands for the module ``name`` and imports it when one of its attributes is first read."""

    def __init__(self, name: str):
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attribute: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attribute)

    def __repr__(self) -> str:
        return f"LazyModule({self._name!r}, {'imported' if self._module is not None else 'not imported yet'})"
