"""Compare trained detectors: the report's tables and figures in one command (Part 2 Q4, Part 3 Q8, Part 4).

Writes into --out (doc/): comparison.md / .csv / .tex, errors.md (error analysis per model),
loss_curves.png, accuracy_iou_curves.png, per_label.png, confusion_matrices.png,
iou_histograms.png, failures_<model>.png, and with --robustness robustness.md / .csv / .png.
"""
from __future__ import annotations

import copy
import csv
import statistics
import subprocess
import sys
import time
from pathlib import Path

import click
import cv2
import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from model import config
from model.checkpoint import CheckpointError, split_paths
from model.classic import ClassicError, run_baselines
from model.dataset import DataError, DetectionDataset, Problems, read_rows, to_chw_uint8
from model.engine import DetectionLoss, evaluate, to_device
from model.inference import images_root, load_rows_dataset, load_trained, run_model
from model.metrics import ImageResults, summarize
from model.network import MODEL_NAMES, count_parameters
from model.report import (ModelReport, confusion_grid, error_analysis, iou_histograms, loss_curves, metric_curves,
                          per_label_bars, read_history, robustness_plot, row_of, write_tables)
from model.runtime import DEVICES, select_device, synchronize, usable_cpus, uses_channels_last
from model.visualize import draw_prediction, gallery

DEGRADATIONS = {  # name -> (unit, levels); level 0 / 1 is the clean image
    "blur": ("Gaussian sigma (px at network size)", (0.0, 1.0, 2.0, 4.0)),
    "noise": ("noise std (grey levels)", (0.0, 10.0, 25.0, 50.0)),
    "resolution": ("scale factor", (1.0, 0.5, 0.25, 0.125)),
}
SINGLE_IMAGE_SAMPLES = 20


def checkpoint_of(run: Path) -> Path:
    path = Path(run)
    if path.is_dir():
        path = path / config.BEST_CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"{run}: no {config.BEST_CHECKPOINT} there (train it first, or use --train)")
    return path


def train_missing(models: list[str], output_dir: Path, train_args: list[str]) -> list[Path]:
    """Train each model without a run in output_dir/<model>/ (as a train.py subprocess); their folders."""
    folders = []
    for name in models:
        folder = output_dir / name
        if (folder / config.BEST_CHECKPOINT).exists():
            click.echo(f"{folder}: already trained, kept")
        else:
            if name == "resnet":  # fine-tuned: the better of the practical's two ResNet variants
                model_args = [*train_args, *([] if "--no-pretrained" in train_args else ["--fine-tune"])]
            else:  # --no-pretrained is a resnet option
                model_args = [a for a in train_args if a != "--no-pretrained"]
            command = [sys.executable, str(Path(__file__).with_name("train.py")), "--model", name, "--name", name,
                       "--output-dir", str(output_dir), *model_args]
            click.echo(f"Training {name}: {' '.join(command[1:])}")
            if subprocess.run(command).returncode != 0:
                raise click.ClickException(f"training {name} failed (see above); fix it and run compare.py again: "
                                           f"finished models are kept")
        folders.append(folder)
    return folders


def time_inference(model, dataset: DetectionDataset, checkpoint: dict, device: torch.device) -> dict[str, float]:
    """Milliseconds per image: batched (eval's path, 64 per batch) and one image at a time (predict's).
    Call it after a first pass over ``dataset`` (run_model's), which is the warm-up."""
    channels_last = uses_channels_last(device)
    stats, _ = evaluate(model, dataset, DetectionLoss(), device, 64, channels_last)
    latencies = []
    with torch.no_grad():
        for i in range(min(len(dataset), SINGLE_IMAGE_SAMPLES) + 2):
            start = time.perf_counter()
            model(to_device(dataset.images[i % len(dataset):][:1], dataset, device, channels_last))
            synchronize(device)
            latencies.append(time.perf_counter() - start)
    return {"batched_ms": 1000 * stats.seconds / max(1, len(dataset)),
            "single_ms": 1000 * statistics.median(latencies[2:])}  # the first two warm up


def degrade(images: torch.Tensor, kind: str, level: float, seed: int = 0) -> torch.Tensor:
    """(N, 3, S, S) uint8 -> the same images blurred, noised or at a lower resolution."""
    out = images.permute(0, 2, 3, 1).numpy().copy()  # (N, S, S, 3)
    size = out.shape[1]
    rng = np.random.default_rng(seed)
    for i in range(len(out)):
        if kind == "blur" and level > 0:
            out[i] = cv2.GaussianBlur(out[i], (0, 0), level)
        elif kind == "noise" and level > 0:
            out[i] = np.clip(out[i] + rng.normal(0, level, out[i].shape), 0, 255).astype(np.uint8)
        elif kind == "resolution" and level < 1:
            small = cv2.resize(out[i], (max(1, round(size * level)),) * 2, interpolation=cv2.INTER_AREA)
            out[i] = cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)
    return torch.stack([to_chw_uint8(im) for im in out])


def robustness(report: ModelReport, model, dataset: DetectionDataset, checkpoint: dict, device, batch_size: int) -> list[dict]:
    """Test figures per degradation level; the clean level (the first) reuses the report's."""
    rows = []
    for kind, (unit, levels) in DEGRADATIONS.items():
        for level in levels:
            if level == levels[0]:
                figures = report.test["overall"]
            else:
                degraded = copy.copy(dataset)
                degraded.images = degrade(dataset.images, kind, level)
                figures = summarize(run_model(model, degraded, checkpoint, device, batch_size)[1])["overall"]
            rows.append({"model": report.name, "degradation": kind, "unit": unit, "level": level,
                         "accuracy": figures["accuracy"], "mean_iou": figures.get("mean_iou", float("nan"))})
    return rows


def failure_gallery(results: ImageResults, path: Path, limit: int = 12) -> bool:
    failing = np.flatnonzero(results.failures(0.5))[:limit]
    tiles = []
    for i in failing:
        image = cv2.imread(str(results.paths[i]))
        if image is None:
            continue
        box = results.predicted_boxes[i] if results.predicted_boxes is not None else None
        tiles.append(draw_prediction(image, results.classes[results.predicted_labels[i]], float(results.confidence[i]),
                                     box, results.classes[results.true_labels[i]], results.true_boxes[i],
                                     None if results.iou is None else float(results.iou[i]), failure=True))
    if tiles:
        cv2.imwrite(str(path), gallery(tiles))
    return bool(tiles)


def unique_name(checkpoint_path: Path, model_name: str, taken: set[str]) -> str:
    name = checkpoint_path.parent.name if checkpoint_path.parent.name not in ("", ".", "output") else model_name
    base, k = name, 2
    while name in taken:
        name, k = f"{base}-{k}", k + 1
    return name


def console_table(rows: list[dict], classes: list[str]) -> Table:
    table = Table(title="Model comparison (test split)")
    columns = ["model", "parameters", "seconds_per_epoch", "best_epoch", "val_accuracy", "test_accuracy",
               "test_mean_iou", "test_iou_at_0.5", "infer_ms_batched", "infer_ms_single"]
    for column in columns:
        table.add_column(column.replace("_", " "), justify="left" if column == "model" else "right")
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column)
            if isinstance(value, float):
                cells.append("-" if np.isnan(value) else (f"{value:.3f}" if abs(value) < 100 else f"{value:,.0f}"))
            else:
                cells.append(f"{value:,}" if isinstance(value, int) else str(value))
        table.add_row(*cells)
    return table


@click.command(context_settings={"show_default": True, "max_content_width": 110})
@click.argument("runs", nargs=-1, type=click.Path(path_type=Path))
@click.option("--csv", "csv_files", type=click.Path(exists=True, dir_okay=False, path_type=Path), multiple=True,
              help="Also evaluate these rows (course format), e.g. web_images/annotations.csv.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("doc"), help="Report folder.")
@click.option("--train", "train_models", default=None, metavar="MODEL,...",
              help=f"Train the models of this list that have no run in OUTPUT_DIR/<model>/ first ({','.join(MODEL_NAMES)}).")
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), default=config.OUTPUT_DIR,
              help="Where --train puts and finds runs.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="--train: epochs  [default: train.py's]")
@click.option("--image-size", type=click.IntRange(min=32), default=None, help="--train: image size  [default: train.py's]")
@click.option("--dataset", type=click.Path(path_type=Path), default=None, help="--train: dataset folder.")
@click.option("--pretrained/--no-pretrained", default=True, help="--train: resnet from ImageNet weights.")
@click.option("--skip-bad-rows", is_flag=True, help="--train and evaluation: skip bad rows instead of stopping.")
@click.option("--classic", is_flag=True, help="Add classic OpenCV baselines (HOG+SVM with edge boxes; Haar faces).")
@click.option("--robustness", "with_robustness", is_flag=True, help="Score each model on blurred, noisy and low-resolution test images.")
@click.option("--device", type=click.Choice(DEVICES), default="auto")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, help="Inference batch size.")
def main(runs, csv_files, out, train_models, output_dir, epochs, image_size, dataset, pretrained, skip_bad_rows, classic,
         with_robustness, device, batch_size) -> None:
    """Compare RUNS (run folders or checkpoints) on their test splits; write tables and figures to --out.

    \b
    python compare.py output/simple output/deeper output/vgg output/resnet
    python compare.py --train simple,deeper,vgg,resnet --epochs 30      # train what is missing, then compare
    python compare.py output/* --classic --robustness --csv web_images/annotations.csv
    """
    if train_models:
        models = [m.strip() for m in train_models.split(",") if m.strip()]
        unknown = [m for m in models if m not in MODEL_NAMES]
        if unknown:
            raise click.BadParameter(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODEL_NAMES)}",
                                     param_hint="--train")
        train_args = [*(["--epochs", str(epochs)] if epochs else []), *(["--image-size", str(image_size)] if image_size else []),
                      *(["--dataset", str(dataset)] if dataset else []), *([] if pretrained else ["--no-pretrained"]),
                      *(["--skip-bad-rows"] if skip_bad_rows else [])]
        runs = tuple(dict.fromkeys([*runs, *train_missing(models, output_dir, train_args)]))
    if not runs:
        raise click.UsageError("give run folders or checkpoints to compare, or --train MODEL,...")
    torch_device = select_device(device)
    torch.manual_seed(0)
    problems = Problems(skip=skip_bad_rows)
    reports: list[ModelReport] = []
    robustness_rows: list[dict] = []
    classes: list[str] | None = None
    first = None
    try:
        for run in runs:
            path = checkpoint_of(run)
            checkpoint, model = load_trained(path, torch_device)
            if classes is not None and checkpoint["classes"] != classes:
                raise click.ClickException(f"{path}: its classes {checkpoint['classes']} differ from {classes}")
            classes = checkpoint["classes"]
            splits = split_paths(path, checkpoint)
            test = load_rows_dataset(splits["test"], images_root(splits["test"], None, checkpoint), checkpoint, problems,
                                     usable_cpus())
            if not test.rows:
                raise DataError(f"{splits['test']}: the run's test split is empty (trained with --cut-test 1.0?); "
                                f"compare scores runs on their test split: retrain with a test split")
            stats, results = run_model(model, test, checkpoint, torch_device, batch_size)
            total, trainable = count_parameters(model)
            report = ModelReport(unique_name(path, checkpoint["model"]["name"], {r.name for r in reports}),
                                 checkpoint["model"]["name"], str(torch_device), total, trainable,
                                 read_history(path.parent / config.HISTORY_FILE), checkpoint.get("epoch"),
                                 {"loss": stats.loss, **summarize(results)}, results)
            for csv_file in csv_files:
                extra = load_rows_dataset(csv_file, images_root(csv_file, None, checkpoint), checkpoint, problems, usable_cpus())
                report.extra_sets[csv_file.stem] = summarize(run_model(model, extra, checkpoint, torch_device, batch_size)[1])
            report.timing = time_inference(model, test, checkpoint, torch_device)
            if with_robustness:
                robustness_rows += robustness(report, model, test, checkpoint, torch_device, batch_size)
            reports.append(report)
            first = first or (path, checkpoint, test)
        if classic:
            path, checkpoint, test = first
            train_rows = read_rows(split_paths(path, checkpoint)["train"], problems)
            for name, baseline in run_baselines(test.root, train_rows, test.rows, classes).items():
                reports.append(ModelReport(name, "classic (OpenCV)", "cpu", test=summarize(baseline.results),
                                           results=baseline.results,
                                           note=f"fitted on the first run's training split: {baseline.chosen}"))
    except (CheckpointError, DataError, ClassicError, ValueError) as error:
        raise click.ClickException(str(error)) from None

    for line in (problems.summary(), problems.warning()):
        if line:
            click.echo(line)
    out.mkdir(parents=True, exist_ok=True)
    rows = [row_of(r, classes) for r in reports]
    write_tables(rows, out)
    (out / "errors.md").write_text("# Error analysis (test split)\n\n" + "\n".join(error_analysis(r) for r in reports))
    trained = [r for r in reports if r.history]
    if trained:
        loss_curves(trained, out / "loss_curves.png")
        metric_curves(trained, out / "accuracy_iou_curves.png")
    per_label_bars(reports, classes, out / "per_label.png")
    confusion_grid(reports, out / "confusion_matrices.png")
    iou_histograms(reports, out / "iou_histograms.png")
    for report in reports:
        failure_gallery(report.results, out / f"failures_{report.name}.png")
    if robustness_rows:
        write_robustness(robustness_rows, out)
    Console(highlight=False, width=None if sys.stdout.isatty() else 160).print(console_table(rows, classes))
    click.echo(f"Wrote the comparison of {len(reports)} model(s) to {out}/ (comparison.md, .csv, .tex, errors.md, figures)")


def write_robustness(rows: list[dict], out: Path) -> None:
    with open(out / "robustness.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = ["# Robustness (test split)", "", "| model | degradation | level | accuracy | mean IoU |", "|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['degradation']} | {r['level']:g} | {r['accuracy']:.4f} | "
              f"{'-' if np.isnan(r['mean_iou']) else format(r['mean_iou'], '.4f')} |" for r in rows]
    (out / "robustness.md").write_text("\n".join(lines) + "\n")
    robustness_plot(rows, out / "robustness.png")


if __name__ == "__main__":
    main()
