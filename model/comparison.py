"""Comparing trained runs: each evaluated on its own test split into a ModelReport, the classic
baselines beside them, and every table and figure of the comparison written out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from model import config
from model.annotations import DataError, Problems, read_rows
from model.checkpoint import CheckpointError
from model.classic import run_baselines
from model.inference import Inference, images_root, load_rows_dataset, load_trained, run_model, time_inference
from model.metrics import summarize
from model.network import count_parameters
from model.report import (
    ModelReport,
    comparison_frame,
    read_history,
    write_comparison,
    write_error_analysis,
    write_figures,
)
from model.robustness import sweep, write_robustness
from model.runtime import usable_cpus


@dataclass
class Comparison:
    """The reports of the compared runs (and baselines), in order, and what else was measured."""

    reports: list[ModelReport] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    robustness: list[dict[str, object]] = field(default_factory=list)

    @property
    def frame(self) -> pd.DataFrame:
        return comparison_frame(self.reports, self.classes)


def checkpoint_of(run: Path) -> Path:
    """A run folder's best.pth, or the checkpoint file given."""
    path = Path(run)
    if path.is_dir():
        path = path / config.BEST_CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"{run}: no {config.BEST_CHECKPOINT} there (train it first)")
    return path


def unique_name(checkpoint_path: Path, model_name: str, taken: set[str]) -> str:
    """The run folder's name (the network's for output/ itself), made unique among ``taken``."""
    name = checkpoint_path.parent.name if checkpoint_path.parent.name not in ("", ".", "output") else model_name
    base, k = name, 2
    while name in taken:
        name, k = f"{base}-{k}", k + 1
    return name


def compare_runs(
    runs: Sequence[Path],
    inference: Inference,
    problems: Problems,
    csv_files: Sequence[Path] = (),
    classic: bool = False,
    robustness: bool = False,
) -> Comparison:
    """Evaluate each run's best model on its test split (and on ``csv_files``), time its inference,
    and with ``classic`` fit and score the OpenCV baselines on the first run's split."""
    comparison = Comparison()
    first = None
    for run in runs:
        path = checkpoint_of(run)
        checkpoint, model = load_trained(path, inference.device)
        if comparison.classes and checkpoint.classes != comparison.classes:
            raise DataError(
                f"{path}: its classes {checkpoint.classes} differ from {comparison.classes}; compare runs "
                f"of one dataset"
            )
        comparison.classes = checkpoint.classes
        test_file = checkpoint.split_paths()["test"]
        test = load_rows_dataset(
            test_file, images_root(test_file, None, checkpoint), checkpoint, problems, usable_cpus()
        )
        if not test.rows:
            raise DataError(
                f"{test_file}: the run's test split is empty (trained with --cut-test 1.0?); compare "
                f"scores runs on their test split: retrain with a test split"
            )
        stats, results = run_model(model, test, checkpoint, inference)
        total, trainable = count_parameters(model)
        report = ModelReport(
            unique_name(path, checkpoint.model_name, {r.name for r in comparison.reports}),
            checkpoint.model_name,
            str(inference.device),
            total,
            trainable,
            read_history(path.parent / config.HISTORY_FILE),
            checkpoint.epoch,
            {"loss": stats.loss, **summarize(results)},
            results,
        )
        for csv_file in csv_files:
            extra = load_rows_dataset(
                csv_file, images_root(csv_file, None, checkpoint), checkpoint, problems, usable_cpus()
            )
            report.extra_sets[csv_file.stem] = summarize(run_model(model, extra, checkpoint, inference)[1])
        report.timing = time_inference(model, test, inference)
        if robustness:
            comparison.robustness += sweep(report, model, test, checkpoint, inference)
        comparison.reports.append(report)
        first = first or (checkpoint, test)
    if classic and first is not None:
        checkpoint, test = first
        train_rows = read_rows(checkpoint.split_paths()["train"], problems)
        for name, baseline in run_baselines(test.root, train_rows, test.rows, comparison.classes).items():
            comparison.reports.append(
                ModelReport(
                    name,
                    "classic (OpenCV)",
                    "cpu",
                    test=summarize(baseline.results),
                    results=baseline.results,
                    note=f"fitted on the first run's training split: {baseline.chosen}",
                )
            )
    return comparison


def write_outputs(comparison: Comparison, out: Path) -> None:
    """comparison.md/.csv/.tex, errors.md, the figures and (when measured) the robustness files."""
    out.mkdir(parents=True, exist_ok=True)
    write_comparison(comparison.frame, out)
    write_error_analysis(comparison.reports, out / "errors.md")
    write_figures(comparison.reports, comparison.classes, out)
    if comparison.robustness:
        write_robustness(comparison.robustness, out)
