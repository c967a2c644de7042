"""What a section of the practical's report reads and where it writes: the plan, its runs (through their Run:
history, recorded options, stored evaluations), and the report's staged folder.

Every figure a section shows comes from a run's stored evaluation (made once by eval.py's code, and made again
only when the checkpoint or its rows change), never from a second inference pass; a figure is drawn again only
when what it is drawn from changed (``write_figure``: its inputs' digest, kept in the report folder).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from model.annotations import WEB_IMAGES, Problems, read_rows
from model.evaluate import Inference, ensure_evaluation, read_per_image
from model.files import Staging
from model.metrics import ImageResults
from model.options import TrainOptions
from model.practical.plan import Plan, PlannedRun, Section, Status
from model.runs import Run

FROM_SCRATCH = "from scratch"  # a ResNet trained without ImageNet weights (offline): said in its label
FIGURE_DIGESTS = "report/.figure-inputs.json"  # figure name -> digest of what it was drawn from
DRAWING_CODE = ("reporting/figures.py", "draw.py", "plots.py")  # a change there redraws all


@functools.cache
def drawing_code_digest() -> str:
    root = Path(__file__).resolve().parent.parent
    return hashlib.sha256(b"".join((root / name).read_bytes() for name in DRAWING_CODE)).hexdigest()


@dataclass
class Content:
    """What one section shows."""

    commands: list[str] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)  # (caption, table)
    figures: list[tuple[str, Path]] = field(default_factory=list)  # (caption, file)
    observations: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)  # other paragraphs (error analyses, pointers, code blocks)
    prompt: str = ""  # what the student's discussion should say, when not the usual


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
    previous_digests: dict[str, str] = field(default_factory=dict)  # of the figures the report folder holds
    digests: dict[str, str] = field(default_factory=dict)
    shown: dict[str, Section] = field(default_factory=dict)  # material -> the section that shows it
    section: Section | None = None  # the section being written
    drawn: list[str] = field(default_factory=list)  # the figures drawn (again) for this report
    kept: list[str] = field(default_factory=list)  # those taken as they were: drawn from the same inputs before
    _evaluations: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    _options: dict[str, TrainOptions] = field(default_factory=dict)

    def run(self, name: str) -> Run:
        return self.plan.run(name)

    def ready(self, runs: Sequence[str]) -> list[str]:
        """The runs that have a best model (finished, or at least one epoch done)."""
        return [r for r in runs if self.run(r).checkpoint_path("best").exists()]

    def history(self, name: str) -> list[dict[str, float]]:
        return self.run(name).history()

    def options(self, name: str) -> TrainOptions:
        """What the run trained with (from its checkpoint: from scratch where the plan had to), read once: every
        section asks, and each reading loads the checkpoint."""
        if name not in self._options:
            self._options[name] = self.run(name).options()
        return self._options[name]

    def planned(self, name: str) -> PlannedRun:
        return self.plan.runs[name]

    def label(self, name: str) -> str:
        """The run's name, with "from scratch" where a ResNet had no ImageNet weights."""
        options = self.options(name)
        return f"{name} ({FROM_SCRATCH})" if options.model == "resnet" and not options.pretrained else name

    def split_sizes(self, name: str) -> dict[str, int]:
        return {
            split: len(read_rows(self.run(name).split_path(split), Problems(skip=True)))
            for split in ("train", "val", "test")
        }

    # ------------------------------------------------------------------------------------------
    # Stored evaluations
    # ------------------------------------------------------------------------------------------
    def evaluation(self, name: str, which: str = "best", split: str = "test") -> dict[str, Any]:
        """The stored evaluation of the run's ``which``.pth on its own ``split`` (evaluated when missing)."""
        key = (name, which, split)
        if key not in self._evaluations:
            self._evaluations[key] = ensure_evaluation(
                self.run(name), which, split, self.inference, self.workers, self.echo
            )[0]
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
        stored, csv = ensure_evaluation(self.run(name), "best", Path(self.web), self.inference, self.workers, self.echo)
        return stored["figures"], read_per_image(csv, stored["classes"])

    # ------------------------------------------------------------------------------------------
    # Writing
    # ------------------------------------------------------------------------------------------
    def write_figure(self, name: str, draw: Callable[[], bytes | None], *inputs: Any) -> Path | None:
        """The figure ``report/name``: drawn by ``draw`` (None: nothing to show), or, when the report folder holds
        it drawn from the same ``inputs``, its bytes taken as they are (a rerun redraws only what changed)."""
        relative = f"report/{name}"
        text = json.dumps([drawing_code_digest(), name, *inputs], default=str, sort_keys=True)
        digest = hashlib.sha256(text.encode()).hexdigest()
        existing = self.sink.owned.folder / relative
        if self.previous_digests.get(relative) == digest and existing.is_file():
            data: bytes | None = existing.read_bytes()
            self.kept.append(relative)
        else:
            data = draw()
            if data is not None:
                self.drawn.append(relative)
        if data is None:
            return None
        self.digests[relative] = digest
        return self.sink.write_bytes(relative, data)

    def once(self, material: str) -> Section | None:
        """The section that already showed ``material`` (e.g. a run's curves), or None (then this one shows it)."""
        earlier = self.shown.get(material)
        if earlier is None and self.section is not None:
            self.shown[material] = self.section
        return earlier if earlier is not self.section else None


def read_digests(folder: Path) -> dict[str, str]:
    try:
        values = json.loads((folder / FIGURE_DIGESTS).read_text(encoding="utf-8"))
        return {str(k): str(v) for k, v in values.items()} if isinstance(values, dict) else {}
    except (OSError, ValueError):
        return {}


# ----------------------------------------------------------------------------------------------
# Figures out of the stored evaluations
# ----------------------------------------------------------------------------------------------
def at_epoch(history: list[dict[str, float]], epoch: int) -> dict[str, float]:
    return next((row for row in history if int(row["epoch"]) == epoch), {})


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


def num(value: float | None, digits: int = 3) -> str:
    """A figure as the report's sentences write it ("-" for none)."""
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def has_boxes(figures: dict[str, Any]) -> bool:
    return "mean_iou" in figures.get("overall", {})
