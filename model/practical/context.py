"""What a section of the practical's report reads and where it writes: the plan, its runs (through
their Run: history, recorded options, stored evaluations), and the report's staged folder."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from model.core.owned import Staging
from model.data.web import WEB_IMAGES
from model.evaluation.evaluate import ensure_evaluation, ensure_internet_evaluation, read_per_image
from model.evaluation.inference import Inference
from model.evaluation.metrics import ImageResults
from model.practical.plan import Plan, PlannedRun, Section, Status
from model.runs.run import Run, training_figures
from model.training.options import TrainOptions

FROM_SCRATCH = "from scratch (no ImageNet weights)"


@dataclass
class Content:
    """What one section shows."""

    commands: list[str] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)  # (caption, table)
    figures: list[tuple[str, Path]] = field(default_factory=list)  # (caption, file)
    observations: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)  # other paragraphs (error analyses, what is missing)


@dataclass
class Context:
    """The plan, the runs' statuses, how to evaluate, and the report's staged folder (``sink``)."""

    plan: Plan
    found: dict[str, Status]
    inference: Inference
    sink: Staging  # the report folder's change: report.md, report/..., report.pdf
    dataset: Path | None
    echo: Callable[[str], None]
    workers: int = 1
    web: Path = WEB_IMAGES
    _evaluations: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)

    def run(self, name: str) -> Run:
        return self.plan.run(name)

    def ready(self, runs: Sequence[str]) -> list[str]:
        """The runs that have a best model (finished, or at least one epoch done)."""
        return [r for r in runs if self.run(r).checkpoint_path("best").exists()]

    def history(self, name: str) -> list[dict[str, float]]:
        return self.run(name).history()

    def options(self, name: str) -> TrainOptions:
        """What the run trained with (from its checkpoint: from scratch where the plan had to)."""
        return self.run(name).options()

    def planned(self, name: str) -> PlannedRun:
        return self.plan.runs[name]

    def label(self, name: str) -> str:
        """The run's name, with "from scratch (no ImageNet weights)" where a ResNet had none."""
        options = self.options(name)
        return f"{name} ({FROM_SCRATCH})" if options.model == "resnet" and not options.pretrained else name

    def evaluation(self, name: str, which: str = "best", split: str = "test") -> dict[str, Any]:
        """The stored evaluation of the run's ``which``.pth on its own ``split`` (evaluated when missing)."""
        key = (name, which, split)
        if key not in self._evaluations:
            self._evaluations[key] = ensure_evaluation(
                self.run(name), which, split, self.inference, self.workers, self.echo
            )
        return self._evaluations[key]

    def figures(self, name: str, which: str = "best", split: str = "test") -> dict[str, Any]:
        return self.evaluation(name, which, split)["figures"]

    def epoch(self, name: str, which: str = "best") -> int:
        return int(self.evaluation(name, which)["epoch"])

    def per_image(self, name: str, which: str = "best", split: str = "test") -> ImageResults:
        self.evaluation(name, which, split)
        path = self.run(name).evaluation_path(which, split).with_name(f"{which}.{split}.images.csv")
        return read_per_image(path, self.run(name).checkpoint(which, mmap=True).classes)

    def internet(self, name: str) -> tuple[dict[str, Any], ImageResults]:
        stored, csv = ensure_internet_evaluation(
            self.run(name), "best", self.web, self.inference, self.workers, self.echo
        )
        return stored["figures"], read_per_image(csv, stored["classes"])

    def write_figure(self, name: str, data: bytes) -> Path:
        return self.sink.write_bytes(f"report/{name}", data)

    def write_gallery(self, name: str, data: bytes | None) -> Path | None:
        """A gallery, when it has an image to show."""
        return self.write_figure(name, data) if data is not None else None


def at_epoch(history: list[dict[str, float]], epoch: int) -> dict[str, float]:
    return next((row for row in history if int(row["epoch"]) == epoch), {})


def train_at(history: list[dict[str, float]], epoch: int, key: str = "accuracy") -> float:
    """The training figure at ``epoch``, as the run measured it (evaluation mode when it did)."""
    prefix, _ = training_figures(history)
    return at_epoch(history, epoch).get(f"{prefix}_{key}", math.nan)


def overall(figures: dict[str, Any], name: str = "accuracy") -> float:
    value = figures.get("overall", {}).get(name)
    return math.nan if value is None else float(value)


def per_label(figures: dict[str, Any], name: str = "accuracy") -> dict[str, float]:
    return {
        label: math.nan if f.get(name) is None else float(f[name]) for label, f in figures.get("per_label", {}).items()
    }


def weakest(figures: dict[str, Any]) -> tuple[str, float] | None:
    return weakest_label(per_label(figures))


def weakest_label(scores: dict[str, float]) -> tuple[str, float] | None:
    """The label of the lowest score, every tied label named ("face and motorcycle"); None without a score."""
    scores = {label: value for label, value in scores.items() if not math.isnan(value)}
    if not scores:
        return None
    low = min(scores.values())
    tied = sorted(label for label, value in scores.items() if value == low)
    if len(tied) == len(scores) > 1:
        return None  # every label the same: none is the weakest
    return " and ".join(tied), low


def f(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def has_boxes(figures: dict[str, Any]) -> bool:
    return "mean_iou" in figures.get("overall", {})


def section_prefix(section: Section) -> str:
    return section.id
