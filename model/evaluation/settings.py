"""eval.py's settings: what to evaluate, how and where to write it; checked when built, before torch is imported."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from model.core.errors import UserError

SET_NAMES = {"train": "train", "val": "validation", "test": "test"}  # as the course template prints them


@dataclass(frozen=True)
class EvalSettings:
    """eval.py's options, each field one option."""

    checkpoint: Path
    splits: tuple[str, ...] = ()  # the run's own splits; () with csv_files: none, else all three
    csv_files: tuple[Path, ...] = ()
    dataset: Path | None = None
    failures: bool = False
    failure_lines: bool = False
    iou_threshold: float = 0.5
    out: Path | None = None
    device: str = "auto"
    precision: str = "auto"
    batch_size: int = 64
    workers: int | None = None
    skip_bad_rows: bool = False
    strict: bool = False

    def __post_init__(self) -> None:
        twice = sorted({s for s in self.splits if self.splits.count(s) > 1})
        if twice:
            raise UserError(f"--split {twice[0]} is given twice; give each split once")
        seen: dict[Path, Path] = {}
        for path in self.csv_files:
            resolved = Path(path).resolve()
            if resolved in seen:
                raise UserError(f"--csv {path} is given twice (as {seen[resolved]}); give each file once")
            seen[resolved] = path

    @property
    def chosen_splits(self) -> tuple[str, ...]:
        """The run's splits to evaluate: those asked for; none with --csv alone; else all three."""
        return self.splits or (() if self.csv_files else tuple(SET_NAMES))

    @property
    def all_splits(self) -> bool:
        """Whether the splits are the default three (an empty one is then left out with a warning, not refused)."""
        return not self.splits and not self.csv_files
