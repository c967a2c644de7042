"""Evaluating a checkpoint on its recorded splits (and other rows): the figures eval.py prints and
writes, and the practical's report reads back.

For a checkpoint ``best.pth`` the files are ``eval_best.json`` (every figure), ``eval_best_images.csv``
(per image) and ``eval_best_confusion_<set>.png``, beside it (or in another folder).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from model.annotations import DataError, Problems
from model.checkpoint import Checkpoint
from model.files import atomic_path, write_text
from model.inference import Inference, images_root, load_rows_dataset, load_trained, run_model
from model.metrics import ImageResults, summarize, to_json_ready
from model.plots import confusion_plot

SET_NAMES = {"train": "train", "val": "validation", "test": "test"}  # as the course template prints them
CORNERS = ("x1", "y1", "x2", "y2")
PER_IMAGE_COLUMNS = [
    "set",
    "path",
    "true_label",
    "predicted_label",
    "confidence",
    "iou",
    "failure",
    *(f"pred_{c}" for c in CORNERS),
    *(f"true_{c}" for c in CORNERS),
]


@dataclass
class Evaluation:
    """A checkpoint's figures per evaluated set (in order) and its per-image results."""

    checkpoint: Checkpoint
    figures: dict[str, dict[str, Any]]  # set name -> loss terms, summarize()'s figures, the CSV file
    results: dict[str, ImageResults]

    def as_json(self) -> dict[str, Any]:
        return to_json_ready(
            {
                "checkpoint": str(self.checkpoint.path),
                "epoch": self.checkpoint.epoch,
                "model": {"name": self.checkpoint.model_name, "options": self.checkpoint.record.model_options},
                "classes": self.checkpoint.classes,
                "sets": self.figures,
            }
        )


def evaluation_sets(checkpoint: Checkpoint, splits: tuple[str, ...], csv_files: tuple[Path, ...]) -> dict[str, Path]:
    """Printed set name -> CSV file: the recorded splits asked for, then the extra CSV files."""
    recorded = checkpoint.split_paths()
    sets = {}
    for split in splits:
        path = recorded.get(split)
        if path is None or not path.is_file():
            raise DataError(
                f"{path or checkpoint.path}: the {split} split file recorded with {checkpoint.path} is "
                f"missing; pass --csv FILE instead"
            )
        sets[SET_NAMES[split]] = path
    for path in csv_files:
        sets[path.stem] = path
    return sets


def evaluate_checkpoint(
    path: Path,
    inference: Inference,
    problems: Problems,
    splits: tuple[str, ...] = tuple(SET_NAMES),
    csv_files: tuple[Path, ...] = (),
    dataset: Path | None = None,
    iou_threshold: float = 0.5,
    workers: int = 1,
) -> Evaluation:
    """The checkpoint's figures on ``splits`` (recorded with it) and on ``csv_files``."""
    checkpoint, model = load_trained(path, inference.device)
    figures: dict[str, dict[str, Any]] = {}
    results: dict[str, ImageResults] = {}
    for name, csv_path in evaluation_sets(checkpoint, splits, csv_files).items():
        data = load_rows_dataset(csv_path, images_root(csv_path, dataset, checkpoint), checkpoint, problems, workers)
        if not data.rows and csv_path in csv_files:  # an empty recorded split prints as the template does
            raise DataError(f"{csv_path}: no usable row to evaluate")
        stats, results[name] = run_model(model, data, checkpoint, inference)
        figures[name] = {
            "file": str(csv_path),
            "loss": stats.loss,
            "class_loss": stats.class_loss,
            "box_loss": stats.box_loss,
            **summarize(results[name], iou_threshold),
        }
    return Evaluation(checkpoint, figures, results)


def write_evaluation(evaluation: Evaluation, out_dir: Path, iou_threshold: float = 0.5) -> Path:
    """eval_<checkpoint>.json, _images.csv and _confusion_<set>.png in ``out_dir``; the JSON's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"eval_{evaluation.checkpoint.path.stem}"
    write_text(out_dir / f"{stem}.json", json.dumps(evaluation.as_json(), indent=2) + "\n")
    with atomic_path(out_dir / f"{stem}_images.csv") as tmp:
        per_image_frame(evaluation.results, iou_threshold).to_csv(tmp, index=False)
    for name, f in evaluation.figures.items():
        confusion_plot(
            f["confusion"]["labels"],
            f["confusion"]["matrix"],
            out_dir / f"{stem}_confusion_{name}.png",
            f"{evaluation.checkpoint.model_name}: {name} set",
        )
    return out_dir / f"{stem}.json"


def per_image_frame(sets: dict[str, ImageResults], iou_threshold: float) -> pd.DataFrame:
    """One row per evaluated image: set, path, true and predicted label, confidence, IoU, failure,
    predicted and true box in pixels of the original image (to 4 and 1 decimals)."""
    rows = []
    for name, r in sets.items():
        failures = r.failures(iou_threshold)
        for i, path in enumerate(r.paths):
            predicted = [f"{v:.1f}" for v in r.predicted_boxes[i]] if r.predicted_boxes is not None else [""] * 4
            rows.append(
                [
                    name,
                    str(path),
                    r.classes[r.true_labels[i]],
                    r.classes[r.predicted_labels[i]],
                    f"{r.confidence[i]:.4f}",
                    "" if r.iou is None else f"{r.iou[i]:.4f}",
                    int(failures[i]),
                    *predicted,
                    *(f"{v:.1f}" for v in r.true_boxes[i]),
                ]
            )
    return pd.DataFrame(rows, columns=PER_IMAGE_COLUMNS)
