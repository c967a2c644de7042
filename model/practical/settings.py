"""compare.py's settings, for its two programs, checked when built and before torch is imported:

    python compare.py RUN...          CompareSettings: the runs side by side (--train: the networks missing first)
    python compare.py --practical     PracticalSettings: the practical's plan, then its report

An option of the other program is refused (never silently ignored), and so is a run given twice.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import click

from model import config
from model.errors import UserError
from model.network import NETWORKS

COURSE_RESOURCES = "--gres=shard:1 --cpus-per-task=8 --mem=12G"  # the course's srun options
PLAN_FILE = config.PROJECT_ROOT / "practical.toml"
SHOWN = {
    "runs": "RUNS",
    "csv_files": "--csv",
    "train_models": "--train",
    "with_robustness": "--robustness",
    "plan_file": "--plan",
}


@dataclass(frozen=True)
class PracticalSettings:
    """compare.py --practical's options."""

    plan_file: Path = PLAN_FILE
    quick: bool = False
    only: str | None = None
    dry_run: bool = False
    slurm: bool = False
    resources: str = COURSE_RESOURCES
    report_only: bool = False
    skip_unavailable: bool = False
    output_dir: Path | None = None
    out: Path | None = None
    dataset: Path | None = None
    device: str = "auto"
    precision: str = "auto"
    batch_size: int = 64
    jobs: int = 0  # 0: auto

    def __post_init__(self) -> None:
        if self.only is not None and not [w for w in self.only.split(",") if w.strip()]:
            raise UserError(f"--only {self.only!r}: names no section; give section ids (e.g. --only Q3,Part2)")
        together = [("--dry-run", self.dry_run), ("--slurm", self.slurm), ("--report-only", self.report_only)]
        chosen = [name for name, on in together if on]
        if len(chosen) > 1:
            raise UserError(f"{' and '.join(chosen)} do not go together: choose one")
        if self.jobs > 1 and (self.slurm or self.report_only):
            raise UserError("--jobs is for training here; it does not go with --slurm or --report-only")

    @property
    def runs_dir(self) -> Path:
        # absolute: Slurm jobs start in the project's folder, whatever folder this was called from
        return (self.output_dir or config.OUTPUT_DIR / ("practical-quick" if self.quick else "practical")).resolve()

    @property
    def report_dir(self) -> Path:
        return (self.out or (self.runs_dir if self.quick else Path("doc"))).resolve()


@dataclass(frozen=True)
class CompareSettings:
    """compare.py's options without --practical."""

    runs: tuple[Path, ...] = ()
    csv_files: tuple[Path, ...] = ()
    out: Path | None = None
    train_models: str | None = None
    output_dir: Path | None = None
    epochs: int | None = None
    image_size: int | None = None
    dataset: Path | None = None
    pretrained: bool = True
    skip_bad_rows: bool = False
    classic: bool = False
    with_robustness: bool = False
    device: str = "auto"
    precision: str = "auto"
    batch_size: int = 64

    def __post_init__(self) -> None:
        seen: dict[Path, Path] = {}
        for run in self.runs:
            resolved = Path(run).resolve()
            resolved = (
                resolved.parent if resolved.suffix == ".pth" and resolved.name == config.BEST_CHECKPOINT else resolved
            )
            if resolved in seen:
                raise UserError(f"{run}: given twice (as {seen[resolved]}); compare each run once")
            seen[resolved] = run
        if not self.runs and not self.train_models:
            raise click.UsageError("give run folders or checkpoints to compare, or --train MODEL,...")
        train_only = [("--epochs", self.epochs), ("--image-size", self.image_size), ("--output-dir", self.output_dir)]
        given = [name for name, value in train_only if value is not None]
        if given and not self.train_models:
            raise UserError(f"{given[0]} goes with --train (it sets how the missing networks train); drop it")
        self.models  # noqa: B018 (the list is checked now)

    @property
    def models(self) -> list[str]:
        """--train's networks, checked."""
        if not self.train_models:
            return []
        models = [m.strip() for m in self.train_models.split(",") if m.strip()]
        unknown = [m for m in models if m not in NETWORKS]
        if unknown or not models or len(set(models)) != len(models):
            raise click.BadParameter(
                f"{self.train_models!r}: name each network once, from {', '.join(NETWORKS)}", param_hint="--train"
            )
        return models


def settings_of(values: dict[str, Any], given: set[str]) -> PracticalSettings | CompareSettings:
    """The settings of compare.py's arguments; an option of the other program is refused."""
    practical = values.pop("practical")
    kind: type[PracticalSettings] | type[CompareSettings] = PracticalSettings if practical else CompareSettings
    other = CompareSettings if practical else PracticalSettings
    mine = {f.name for f in fields(kind)}
    for name in sorted(given - mine):
        if name in {f.name for f in fields(other)}:
            shown = SHOWN.get(name, "--" + name.replace("_", "-"))
            raise click.UsageError(
                f"{shown} does not go with --practical: the plan file sets what each run does"
                if practical
                else f"{shown} goes with --practical (the practical's plan)"
            )
    return kind(**{k: v for k, v in values.items() if k in mine})
