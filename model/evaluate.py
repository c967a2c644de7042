"""Evaluating a checkpoint: the rows it scores, the pass over them, and its stored figures.

An evaluation is stored under the identity of what it scored, never under a file's name: a run's own split
(``best.test``) or other rows (``best.rows-<stem>-<hash>``, the hash of the file's resolved path and content). Its
JSON records the checkpoint's save id and the fingerprint of the rows and their images, so that a stored
evaluation is read back only while it is still true of the files (``Run.evaluation``):

    RUN/evaluations/best.test.json           every figure of best.pth on the run's test split
    RUN/evaluations/best.test.images.csv     one row per image
    RUN/evaluations/best.test.confusion.png  the confusion matrix
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pandas as pd
import torch

from model import config
from model.annotations import Annotation, DataError, Problems, check_labels, read_rows, web_rows, write_rows_text
from model.checkpoint import Checkpoint
from model.dataset import DetectionDataset, images_root
from model.device import Precision, channels_last, place_model, resolve_precision, select_device, synchronize
from model.engine import Compute, DetectionLoss, DeviceBatches, evaluate, loss_for
from model.files import Folder, temporary_name, write_error
from model.images import fingerprint, row_digests
from model.metrics import ImageResults, summarize, to_json_ready
from model.runs import EVALUATIONS, Run

FORMAT = "cvpr-evaluation"
SET_NAMES = {"train": "train", "val": "validation", "test": "test"}  # as the course template prints them
SUFFIXES = (".json", ".images.csv", ".confusion.png")
CORNERS = ("x1", "y1", "x2", "y2")


@dataclass(frozen=True)
class Inference:
    """How a trained model runs on a set: the device, the autocast, the batch size."""

    device: torch.device
    precision: Precision
    batch_size: int = 64

    @classmethod
    def on(cls, device: str, precision: str = "auto", batch_size: int = 64) -> Inference:
        """``--device``, ``--precision`` and ``--batch-size`` of eval, predict and compare."""
        chosen = select_device(device)
        return cls(chosen, resolve_precision(precision, chosen), batch_size)

    def place(self, model: torch.nn.Module) -> torch.nn.Module:
        return place_model(model, self.device)


def run_model(model, dataset: DetectionDataset, checkpoint: Checkpoint, inference: Inference):
    """One batched pass: the set's loss figures (with the run's loss) and its per-image results."""
    loss_fn = loss_for(checkpoint.options, missing_boxes=bool(dataset.boxes.isnan().any()))  # internet images
    batches = DeviceBatches(dataset, inference.device, resident=False)  # one pass: copied per batch
    compute = Compute(inference.batch_size, inference.precision, channels_last(inference.device))
    stats, predictions = evaluate(model, batches, loss_fn, compute, keep_predictions=True)
    assert predictions is not None
    return stats, ImageResults.from_predictions(dataset, predictions)


def time_inference(model, dataset: DetectionDataset, inference: Inference) -> dict[str, float]:
    """Milliseconds per image: batched (64 a batch, eval's path) and one image at a time (predict's); after a
    first pass over ``dataset`` (run_model's), which warms up."""
    batches, layout = DeviceBatches(dataset, inference.device, resident=False), channels_last(inference.device)
    stats, _ = evaluate(model, batches, DetectionLoss(), Compute(64, inference.precision, layout))
    latencies = []
    with torch.no_grad():
        for i in range(min(len(dataset), 20) + 2):
            start = time.perf_counter()
            images = dataset.gather(torch.tensor([i % len(dataset)])).to(inference.device)
            with inference.precision.autocast():
                model(batches.normalize(images, layout))
            synchronize(inference.device)
            latencies.append(time.perf_counter() - start)
    batched, single = 1000 * stats.seconds / max(1, len(dataset)), 1000 * statistics.median(latencies[2:])
    return {"batched_ms": batched, "single_ms": single}


# ----------------------------------------------------------------------------------------------
# What is scored
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScoredSet:
    """Rows an evaluation scores: one of the run's own splits, or other rows (a CSV file, internet images)."""

    id: str  # "test", or "rows-<stem>-<hash>"
    name: str  # as printed: "test", "validation", or the file's stem
    source: Path  # the rows' file (or folder)
    root: Path  # the dataset folder its images are in
    rows: tuple[Annotation, ...]

    def identity(self, checkpoint: Checkpoint) -> dict[str, str]:
        """What a stored evaluation of it must match: the checkpoint's save, the rows and their images."""
        return {"checkpoint": checkpoint.identity, "rows": fingerprint(row_digests(self.root, self.rows), self.rows)}


def rows_of(path: Path, checkpoint: Checkpoint, problems: Problems,
            dataset: Path | None) -> tuple[Path, list[Annotation]]:  # fmt: skip
    """A CSV's rows of the model's classes, and the folder of their images; a run's split file whose images are
    not those its run recorded (another dataset given, or its pictures changed since) is refused."""
    rows = check_labels(read_rows(path, problems), checkpoint.classes, problems)
    root = images_root(path, dataset, checkpoint)
    run, split = Run(Path(path).parent), next((s for s, f in config.SPLIT_FILES.items() if f == Path(path).name), None)
    recorded = run.facts().get("data", {}).get(split) if split and (run.folder / config.RUN_FILE).exists() else None
    if recorded and rows and fingerprint(row_digests(root, rows), rows) != recorded:
        click.echo(f"warning: {path}: its pictures or boxes in {root} are not those run {run.folder} recorded (in "
                   f"{run.facts().get('dataset')}): the figures are of these; pass --dataset to score that run's own",
                   err=True)  # fmt: skip
    return root, rows


def own_split(checkpoint: Checkpoint, split: str, problems: Problems, dataset: Path | None = None) -> ScoredSet:
    """The run's own ``split`` (train, val, test), as its split file holds it."""
    path = Run(checkpoint.path.parent).split_path(split)
    if not path.is_file():
        raise DataError(f"{path}: the {split} split file recorded with {checkpoint.path} is missing; pass --csv FILE")
    root, rows = rows_of(path, checkpoint, problems, dataset)
    return ScoredSet(split, SET_NAMES[split], path, root, tuple(rows))


def other_rows(checkpoint: Checkpoint, path: Path, problems: Problems, dataset: Path | None = None) -> ScoredSet:
    """Rows of another file (e.g. web_images/annotations.csv), identified by its resolved path and content."""
    root, rows = rows_of(path, checkpoint, problems, dataset)
    if not rows:
        raise DataError(f"{path}: no usable row to evaluate")
    resolved = Path(path).resolve()
    digest = hashlib.sha256(str(resolved).encode() + b"\0" + resolved.read_bytes()).hexdigest()[:10]
    return ScoredSet(f"rows-{Path(path).stem}-{digest}", Path(path).stem, Path(path), root, tuple(rows))


def internet_images(checkpoint: Checkpoint, folder: Path, problems: Problems) -> ScoredSet:
    """Every image under ``folder``/images/<label>/ (web_images/), with its box where annotations.csv has one."""
    rows = check_labels(web_rows(folder, problems), checkpoint.classes, problems)
    if not rows:
        raise DataError(f"{folder}/images: no image of the model's classes ({', '.join(checkpoint.classes)}) there")
    digest = hashlib.sha256(str(Path(folder).resolve()).encode() + b"\0" + write_rows_text(rows).encode()).hexdigest()
    return ScoredSet(f"web-{digest[:10]}", "internet", Path(folder), Path(folder), tuple(rows))


# ----------------------------------------------------------------------------------------------
# The evaluation, and its files
# ----------------------------------------------------------------------------------------------
@dataclass
class SetEvaluation:
    scored: ScoredSet
    figures: dict[str, Any]  # the loss terms and summarize()'s figures
    results: ImageResults


def decoded(scored: ScoredSet, checkpoint: Checkpoint, problems: Problems, workers: int = 1) -> DetectionDataset:
    """The set's rows decoded at the checkpoint's image size and normalisation."""
    size, mean, std = checkpoint.image_size, checkpoint.mean, checkpoint.std
    return DetectionDataset(scored.root, scored.rows, checkpoint.classes, size, problems, workers, mean, std)


def evaluate_set(checkpoint, model, scored: ScoredSet, inference: Inference, problems, workers, iou_threshold=0.5):
    stats, results = run_model(model, decoded(scored, checkpoint, problems, workers), checkpoint, inference)
    box = {} if math.isnan(stats.box_loss) else {"box_loss": stats.box_loss}  # a classification-only network has none
    figures = {"loss": stats.loss, "class_loss": stats.class_loss, **box, **summarize(results, iou_threshold)}
    return SetEvaluation(scored, figures, results)


def evaluation_files(checkpoint: Checkpoint, evaluation: SetEvaluation, iou_threshold: float) -> dict[str, bytes]:
    """The JSON, the per-image CSV and the confusion matrix of one set: name -> bytes."""
    from model.plots import confusion_png

    scored, figures = evaluation.scored, evaluation.figures
    document = {
        "format": FORMAT, "checkpoint": str(checkpoint.path), "epoch": checkpoint.epoch,
        "model": {"name": checkpoint.model_name, "options": checkpoint.record.model_options},
        "classes": checkpoint.classes,
        "set": {"id": scored.id, "name": scored.name, "file": str(scored.source), "own_split": scored.id in SET_NAMES},
        "identity": scored.identity(checkpoint), "iou_threshold": iou_threshold, "figures": figures,
    }  # fmt: skip
    title = f"{checkpoint.model_name}: {scored.name} set"
    stem = f"{checkpoint.path.stem}.{scored.id}"
    return {
        f"{stem}.json": (json.dumps(to_json_ready(document), indent=2) + "\n").encode(),
        f"{stem}.images.csv": per_image_csv(scored.name, evaluation.results, iou_threshold),
        f"{stem}.confusion.png": confusion_png(figures["confusion"]["labels"], figures["confusion"]["matrix"], title),
    }


def destination(out: Path | None, checkpoint: Checkpoint) -> tuple[Folder, str]:
    """Where eval.py writes: the run's evaluations/ (its manifest the run's), or --out."""
    if out is None:
        return Run(checkpoint.path.parent).files, f"{EVALUATIONS}/"
    return Folder(Path(out), "eval.py", "--out"), ""


def check_destination(out: Path | None, checkpoint: Checkpoint, sets: list[ScoredSet]) -> None:
    """Before anything is evaluated: the files can go where they will (never into data, never over a file of the
    user's, a folder that can be written)."""
    folder, prefix = destination(out, checkpoint)
    folder.check_place()
    folder.check([f"{prefix}{checkpoint.path.stem}.{s.id}{suffix}" for s in sets for suffix in SUFFIXES])
    existing = next(f for f in (folder.folder / prefix, *(folder.folder / prefix).parents) if f.exists())
    probe = existing / temporary_name("probe")
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise write_error(existing, error) from None


def write_evaluation(checkpoint: Checkpoint, sets: list[SetEvaluation], out: Path | None, iou=0.5) -> list[Path]:
    """Each set's files, all together or none: into the run's evaluations/ (under its lock), or into --out; the
    JSON files written."""
    files = {name: data for s in sets for name, data in evaluation_files(checkpoint, s, iou).items()}
    folder, prefix = destination(out, checkpoint)
    with Run(checkpoint.path.parent).writer("eval.py") if out is None else nullcontext(), folder.staged() as change:
        paths = [change.write_bytes(f"{prefix}{name}", data) for name, data in files.items()]
    return [p for p in paths if p.suffix == ".json"]


def ensure_evaluation(run: Run, which: str, split: str | Path, inference: Inference, workers: int, echo=print):
    """The stored figures of the run's ``which``.pth on its own ``split`` (or on the internet images of the folder
    ``split``), while they are true of the files; else evaluated now and stored. (The stored JSON, and the path of
    its per-image CSV.)"""
    checkpoint = run.checkpoint(which, mmap=True)  # its weights are read only when it is evaluated now
    problems = Problems(skip=isinstance(split, Path))
    if isinstance(split, Path):
        scored = internet_images(checkpoint, split, problems)
    else:
        scored = own_split(checkpoint, split, problems)
    stored = run.evaluation(which, scored.id, scored.identity(checkpoint))
    if stored is None:
        echo(f"Evaluating {checkpoint.path} on {scored.name} ({scored.source})")
        model = inference.place(checkpoint.build_model())
        write_evaluation(checkpoint, [evaluate_set(checkpoint, model, scored, inference, problems, workers)], None)
        stored = run.evaluation(which, scored.id, scored.identity(checkpoint))
        assert stored is not None
    return stored, run.folder / EVALUATIONS / f"{which}.{scored.id}.images.csv"


def per_image_csv(name: str, r: ImageResults, iou_threshold: float) -> bytes:
    """One row per image of the set ``name``: set, path, true and predicted label, confidence, IoU, failure,
    predicted and true box in pixels of the original image."""
    rows = []
    for i, (path, failure, boxed) in enumerate(zip(r.paths, r.failures(iou_threshold), r.boxed)):
        predicted = [f"{v:.1f}" for v in r.predicted_boxes[i]] if r.predicted_boxes is not None else [""] * 4
        true = [f"{v:.1f}" for v in r.true_boxes[i]] if boxed else [""] * 4
        iou = "" if r.iou is None or not boxed else f"{r.iou[i]:.4f}"
        labels = r.classes[r.true_labels[i]], r.classes[r.predicted_labels[i]]
        rows.append([name, str(path), *labels, f"{r.confidence[i]:.4f}", iou, int(failure), *predicted, *true])
    columns = ["set", "path", "true_label", "predicted_label", "confidence", "iou", "failure"]
    columns += [*(f"pred_{c}" for c in CORNERS), *(f"true_{c}" for c in CORNERS)]
    return pd.DataFrame(rows, columns=columns).to_csv(index=False).encode()


def read_per_image(path: Path, classes: list[str]) -> ImageResults:
    """The per-image CSV of a stored evaluation, back as ImageResults (for galleries drawn later)."""
    frame = pd.read_csv(path)
    index = {c: i for i, c in enumerate(classes)}
    true, predicted = (frame[f"{k}_label"].map(index).to_numpy(dtype=int) for k in ("true", "predicted"))
    true_boxes, pred_boxes = (frame[[f"{p}_{c}" for c in CORNERS]].to_numpy(dtype=float) for p in ("true", "pred"))
    has_boxes, confidence = frame["pred_x1"].notna().any(), frame["confidence"].to_numpy(dtype=float)
    iou, boxes = (frame["iou"].to_numpy(dtype=float), pred_boxes) if has_boxes else (None, None)
    paths = [Path(p) for p in frame["path"]]
    return ImageResults(paths, list(classes), true, predicted, confidence, iou, true_boxes, boxes)


def ensure_classic_evaluation(run: Run, workers: int, echo=print) -> dict[str, tuple[dict[str, Any], ImageResults]]:
    """The classic OpenCV baselines fitted on the run's training split and scored on its test split with the run's
    loss (Part 4): the stored ones while true of the rows, else fitted now and stored in the run's evaluations/;
    name -> (figures with the choice made, per-image results)."""
    from model.classic import run_baselines

    checkpoint = run.checkpoint("best", mmap=True)
    problems = Problems(skip=True)
    train, test = own_split(checkpoint, "train", problems), own_split(checkpoint, "test", problems)
    everything = train.rows + test.rows
    rows = fingerprint(row_digests(train.root, everything), everything, "classic v1")
    identity = {"rows": rows, "loss": str(checkpoint.options.recorded())}
    stored = run.evaluation("classic", "test", identity)
    if stored is None:
        echo(f"Fitting the classic baselines on {train.source} (scored on {test.source})")
        baselines = run_baselines(test.root, train.rows, test.rows, checkpoint.classes, loss_for(checkpoint.options))
        files, entries = {}, {}
        for name, baseline in baselines.items():
            figures = to_json_ready({**baseline.losses, **summarize(baseline.results)})
            entries[name] = {"figures": figures, "chosen": baseline.chosen}
            files[f"{EVALUATIONS}/classic-{name}.test.images.csv"] = per_image_csv("test", baseline.results, 0.5)
        stored = {"format": FORMAT, "identity": identity, "classes": checkpoint.classes, "baselines": entries}
        files[f"{EVALUATIONS}/classic.test.json"] = (json.dumps(stored, indent=2) + "\n").encode()
        with run.writer("compare.py --practical"), run.files.staged() as change:
            for name, data in files.items():
                change.write_bytes(name, data)
    return {name: (entry["figures"] | {"chosen": entry["chosen"]},
                   read_per_image(run.folder / EVALUATIONS / f"classic-{name}.test.images.csv", checkpoint.classes))
            for name, entry in stored["baselines"].items()}  # fmt: skip
