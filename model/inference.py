"""Running a trained checkpoint on a set of annotated rows (shared by eval, predict and compare)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from model.checkpoint import load_checkpoint, model_from_checkpoint
from model.dataset import DataError, DetectionDataset, Problems, check_labels, read_rows
from model.engine import DEFAULT_BOX_LOSS, DetectionLoss, EpochStats, evaluate
from model.metrics import ImageResults
from model.network import Detector
from model.runtime import uses_channels_last


def load_trained(path: Path, device: torch.device) -> tuple[dict[str, Any], Detector]:
    """The checkpoint's contents and its model, in eval mode on ``device``."""
    checkpoint = load_checkpoint(path, device="cpu")
    model = model_from_checkpoint(checkpoint, device)
    if uses_channels_last(device):
        model = model.to(memory_format=torch.channels_last)
    return checkpoint, model


def images_root(csv_path: Path, dataset: Path | None, checkpoint: dict[str, Any]) -> Path:
    """Where a CSV's images live: --dataset; else the CSV's own dataset (DATASET/annotations/x.csv,
    or a web_images-like folder beside images/); else the dataset the model was trained on."""
    if dataset is not None:
        if not (Path(dataset) / "images").is_dir():
            raise DataError(f"--dataset {dataset}: no images/ folder there (check the path)")
        return Path(dataset)
    for candidate in (Path(csv_path).parent.parent, Path(csv_path).parent):
        if (candidate / "images").is_dir():
            return candidate
    trained_on = checkpoint.get("config", {}).get("run", {}).get("dataset")
    if trained_on is None:
        raise DataError(f"{csv_path}: cannot tell where its images are; pass --dataset PATH")
    return Path(trained_on)


def load_rows_dataset(csv_path: Path, root: Path, checkpoint: dict[str, Any], problems: Problems,
                      workers: int) -> DetectionDataset:
    """The rows of ``csv_path`` decoded at the checkpoint's image size and normalisation."""
    classes = checkpoint["classes"]
    rows = check_labels(read_rows(csv_path, problems), classes, problems)
    norm = checkpoint["normalization"]
    return DetectionDataset(root, rows, classes, checkpoint["image_size"], problems, workers, norm["mean"], norm["std"])


def run_model(model: Detector, dataset: DetectionDataset, checkpoint: dict[str, Any], device: torch.device,
              batch_size: int) -> tuple[EpochStats, ImageResults]:
    """Batched inference: the set's loss figures (with the run's loss settings) and per-image results."""
    config = checkpoint.get("config", {})
    loss_fn = DetectionLoss(config.get("label_weight", 1.0), config.get("box_weight", 1.0),
                            config.get("box_loss", DEFAULT_BOX_LOSS))
    stats, predictions = evaluate(model, dataset, loss_fn, device, batch_size, uses_channels_last(device),
                                  keep_predictions=True)
    return stats, ImageResults.from_predictions(dataset, predictions)
