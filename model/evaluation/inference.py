"""Running a trained checkpoint on annotated rows: batched, and timed (eval, predict and compare)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from model.core.precision import Precision, resolve_precision
from model.core.runtime import place_model, synchronize, uses_channels_last
from model.data.annotations import Annotation, DataError, Problems, check_labels, read_rows
from model.dataset import DetectionDataset
from model.detector import Detector
from model.engine.batches import DeviceBatches
from model.engine.steps import EpochStats, evaluate, network_batch
from model.evaluation.metrics import ImageResults
from model.experiment.loss import DetectionLoss, loss_for
from model.runs.checkpoint import Checkpoint

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


def rows_dataset(
    rows: Sequence[Annotation], root: Path, checkpoint: Checkpoint, problems: Problems, workers: int
) -> DetectionDataset:
    """``rows`` decoded at the checkpoint's image size and normalisation."""
    return DetectionDataset(
        root, rows, checkpoint.classes, checkpoint.image_size, problems, workers, checkpoint.mean, checkpoint.std
    )


def load_rows_dataset(
    csv_path: Path, root: Path, checkpoint: Checkpoint, problems: Problems, workers: int
) -> DetectionDataset:
    """The rows of ``csv_path`` decoded at the checkpoint's image size and normalisation."""
    rows = check_labels(read_rows(csv_path, problems), checkpoint.classes, problems)
    return rows_dataset(rows, root, checkpoint, problems, workers)


@dataclass(frozen=True)
class Inference:
    """How a trained model is run on a set: on which device, in batches of which size, under which autocast."""

    device: torch.device
    precision: Precision
    batch_size: int = 64

    @classmethod
    def on(cls, device: torch.device, precision: str = "auto", batch_size: int = 64) -> Inference:
        """``--device``, ``--precision`` and ``--batch-size`` of eval, predict and compare."""
        return cls(device, resolve_precision(precision, device), batch_size)

    @property
    def channels_last(self) -> bool:
        return uses_channels_last(self.device)

    def place(self, model: Detector) -> Detector:
        return place_model(model, self.device)


def run_model(
    model: Detector, dataset: DetectionDataset, checkpoint: Checkpoint, inference: Inference
) -> tuple[EpochStats, ImageResults]:
    """Batched inference: the set's loss figures (with the run's loss settings) and per-image results."""
    # rows known by their label alone (internet images without a drawn box) score no box term
    loss_fn = loss_for(checkpoint.options, missing_boxes=bool(dataset.boxes.isnan().any()))
    batches = DeviceBatches(dataset, inference.device, resident=False)  # one pass: streamed (CPU: its own memory)
    stats, predictions = evaluate(
        model,
        batches,
        loss_fn,
        inference.batch_size,
        inference.precision,
        inference.channels_last,
        keep_predictions=True,
    )
    assert predictions is not None
    return stats, ImageResults.from_predictions(dataset, predictions)


def time_inference(model: Detector, dataset: DetectionDataset, inference: Inference) -> dict[str, float]:
    """Milliseconds per image: batched (eval's path, TIMING_BATCH per batch) and one image at a time
    (predict's). Call it after a first pass over ``dataset`` (run_model's), which is the warm-up."""
    batches = DeviceBatches(dataset, inference.device, resident=False)
    stats, _ = evaluate(model, batches, DetectionLoss(), TIMING_BATCH, inference.precision, inference.channels_last)
    latencies = []
    with torch.no_grad():
        for i in range(min(len(dataset), SINGLE_IMAGE_SAMPLES) + 2):
            start = time.perf_counter()
            images = dataset.gather(torch.tensor([i % len(dataset)])).to(inference.device)
            with inference.precision.autocast():
                model(network_batch(images, batches, inference.channels_last))
            synchronize(inference.device)
            latencies.append(time.perf_counter() - start)
    return {
        "batched_ms": 1000 * stats.seconds / max(1, len(dataset)),
        "single_ms": 1000 * statistics.median(latencies[2:]),  # the first two warm up
    }
