"""Running a trained checkpoint on annotated rows: batched, and timed (eval, predict and compare)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from model.annotations import DataError, Problems, check_labels, read_rows
from model.checkpoint import Checkpoint
from model.dataset import DetectionDataset
from model.engine import EpochStats, evaluate, to_device
from model.losses import DetectionLoss
from model.metrics import ImageResults
from model.network import Detector
from model.runtime import place_model, synchronize, uses_channels_last

SINGLE_IMAGE_SAMPLES = 20  # images timed one at a time (predict's path)
TIMING_BATCH = 64  # eval's batch, for comparable inference timings whatever --batch-size says


def load_trained(path: Path, device: torch.device) -> tuple[Checkpoint, Detector]:
    """The checkpoint and its model, in eval mode on ``device``."""
    checkpoint = Checkpoint.load(path)
    return checkpoint, place_model(checkpoint.build_model(), device)


def images_root(csv_path: Path, dataset: Path | None, checkpoint: Checkpoint) -> Path:
    """Where a CSV's images live: --dataset; else the CSV's own dataset (DATASET/annotations/x.csv,
    or a web_images-like folder beside images/); else the dataset the model was trained on."""
    if dataset is not None:
        if not (Path(dataset) / "images").is_dir():
            raise DataError(f"--dataset {dataset}: no images/ folder there (check the path)")
        return Path(dataset)
    for candidate in (Path(csv_path).parent.parent, Path(csv_path).parent):
        if (candidate / "images").is_dir():
            return candidate
    if checkpoint.dataset is None:
        raise DataError(f"{csv_path}: cannot tell where its images are; pass --dataset PATH")
    return checkpoint.dataset


def load_rows_dataset(
    csv_path: Path, root: Path, checkpoint: Checkpoint, problems: Problems, workers: int
) -> DetectionDataset:
    """The rows of ``csv_path`` decoded at the checkpoint's image size and normalisation."""
    rows = check_labels(read_rows(csv_path, problems), checkpoint.classes, problems)
    return DetectionDataset(
        root, rows, checkpoint.classes, checkpoint.image_size, problems, workers, checkpoint.mean, checkpoint.std
    )


def run_model(
    model: Detector, dataset: DetectionDataset, checkpoint: Checkpoint, device: torch.device, batch_size: int
) -> tuple[EpochStats, ImageResults]:
    """Batched inference: the set's loss figures (with the run's loss settings) and per-image results."""
    loss_fn = DetectionLoss(**checkpoint.loss_settings())
    stats, predictions = evaluate(
        model, dataset, loss_fn, device, batch_size, uses_channels_last(device), keep_predictions=True
    )
    assert predictions is not None
    return stats, ImageResults.from_predictions(dataset, predictions)


def time_inference(model: Detector, dataset: DetectionDataset, device: torch.device) -> dict[str, float]:
    """Milliseconds per image: batched (eval's path) and one image at a time (predict's). Call it
    after a first pass over ``dataset`` (run_model's), which is the warm-up."""
    channels_last = uses_channels_last(device)
    stats, _ = evaluate(model, dataset, DetectionLoss(), device, TIMING_BATCH, channels_last)
    latencies = []
    with torch.no_grad():
        for i in range(min(len(dataset), SINGLE_IMAGE_SAMPLES) + 2):
            start = time.perf_counter()
            model(to_device(dataset.gather(torch.tensor([i % len(dataset)])), dataset, device, channels_last))
            synchronize(device)
            latencies.append(time.perf_counter() - start)
    return {
        "batched_ms": 1000 * stats.seconds / max(1, len(dataset)),
        "single_ms": 1000 * statistics.median(latencies[2:]),
    }  # the first two warm up
