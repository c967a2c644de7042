"""What the scripts' command lines share: a float option that must be finite, and the device and
precision options of train, eval, predict and compare."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import click

from model.core.precision import PRECISIONS
from model.core.runtime import DEVICES


class FiniteFloat(click.FloatRange):
    """click's FloatRange that also refuses nan and inf (a nan passes every comparison of a range)."""

    name = "finite float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)


def device_option(default: str = "auto") -> Callable[[Any], Any]:
    return click.option("--device", type=click.Choice(DEVICES), default=default, help="auto: cuda, then mps, then cpu.")


def precision_option(default: str = "auto") -> Callable[[Any], Any]:
    return click.option(
        "--precision",
        type=click.Choice(PRECISIONS),
        default=default,
        help="Autocast: auto is bf16 on a CUDA GPU that has it (else fp16 with a gradient scaler), and on a CPU "
        "with native bfloat16 instructions; fp32 elsewhere.",
    )
