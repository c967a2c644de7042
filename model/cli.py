"""What the four scripts' command lines share: the work of each inside ``checked()`` (the environment variables
checked first, then one line for any error a user can fix), a float that must be finite, a path that must not be
empty, and the --device and --precision options."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from model import env
from model.device import DEVICES, PRECISIONS
from model.errors import one_line_errors


@contextmanager
def checked() -> Iterator[None]:
    """Around every command's work: the environment variables checked first, then one-line errors."""
    with one_line_errors():
        env.check_all()
        yield


class FiniteFloat(click.FloatRange):
    """click's FloatRange that also refuses nan and inf (a nan passes every comparison of a range)."""

    name = "finite float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)


class GivenPath(click.Path):
    """click's Path that refuses an empty value (``--out ""`` would mean the current folder)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not value.strip():
            self.fail("an empty path; give a file or folder name (use . for the current folder)", param, ctx)
        return super().convert(value, param, ctx)


def path_type(kind: str = "") -> GivenPath:
    """A path option's type: ``file`` (an existing file), or any path."""
    return GivenPath(exists=True, dir_okay=False, path_type=Path) if kind == "file" else GivenPath(path_type=Path)


def device_option() -> Callable[[Any], Any]:
    return click.option("--device", type=click.Choice(DEVICES), default="auto", help="auto: cuda, then mps, then cpu.")


def precision_option() -> Callable[[Any], Any]:
    return click.option("--precision", type=click.Choice(PRECISIONS), default="auto", help="Autocast: auto is bf16 on "
                        "a CUDA GPU that has it (else fp16 with a gradient scaler), and on a CPU with native bfloat16 "
                        "instructions; fp32 elsewhere.")  # fmt: skip
