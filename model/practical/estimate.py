"""What the plan needs before it trains: room on the disk, and how long the runs still to train
should take (from the epochs already measured, else a few batches timed now)."""

from __future__ import annotations

import functools
import math
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from model import config
from model.device import channels_last, place_model, prepare_device, resolve_precision, select_device, synchronize
from model.engine import loss_for, make_optimizer, train_step
from model.network import build_model, count_parameters
from model.options import TrainOptions
from model.practical.plan import Plan, PlanError, Status


def parameters(options: TrainOptions) -> int:
    """The number of parameters of the run's network (for three classes)."""
    return _parameters(options.model, tuple(sorted(options.network_options.items())))


@functools.cache  # a network built once: the disk check and each run's estimate ask again for the same ones
def _parameters(model: str, network_options: tuple[tuple[str, Any], ...]) -> int:
    total, _ = count_parameters(build_model(model, 3, load_weights=False, **dict(network_options)))
    return total


def check_disk(plan: Plan, found: dict[str, Status], images: int) -> None:
    """Room for the checkpoints of the runs to train and for the decoded images, before anything starts."""
    needed = 0
    sizes = set()
    for name, run in plan.runs.items():
        if found[name].state in ("missing", "partial"):
            needed += parameters(run.options) * 4 * 5  # best.pth, last.pth with Adam's two moments, a temporary
            sizes.add(run.options.image_size)
    needed += sum(images * 3 * size * size for size in sizes)
    existing = next(f for f in (plan.output_dir, *plan.output_dir.parents) if f.exists())
    free = shutil.disk_usage(existing).free
    if needed > 0.9 * free:
        raise PlanError(
            f"{plan.output_dir}: {free / 2**30:.1f} GiB free, the runs need about {needed / 2**30:.1f} GiB "
            f"(checkpoints and decoded images); free some space or pass --output-dir on a larger disk"
        )


# ----------------------------------------------------------------------------------------------
# How long
# ----------------------------------------------------------------------------------------------
# Measured on the quick plan (2 CPU cores; README, "Before the whole plan"). What a run and the report cost besides
# their passes is Python-bound work (imports, checks, files, figures, the PDF): counted in process starts measured
# on the machine (`measure_start`), so that a slower machine's estimate grows with it.
EVAL_SHARE = 1 / 3  # an evaluation pass costs about a third of a training step per image (no backward, no update)
RUN_OVERHEAD = 0.9  # starts a run spends besides its imports and epochs: the rows checked, the model built, the plot
EPOCH_OVERHEAD = 0.15  # seconds an epoch spends around its passes: history, the progress line
SAVED_BYTES_PER_SECOND = 200e6  # best.pth and last.pth (weights and Adam's two moments: 16 bytes a parameter)
REPORT_PER_RUN = 0.5  # starts the report spends on each run it reads (its figures and tables), beside its evaluation
REPORT_FIXED = 3.0  # starts the report spends once (its own start, the PDF, the classic baselines on a small split)


def split_sizes(options: TrainOptions, rows: int) -> tuple[int, int, int]:
    """(training, validation, test) images of a run on a dataset of ``rows`` rows."""
    if options.splits is not None:
        return rows, 0, 0  # unknown without reading them: an upper bound
    assert options.cut_val is not None and options.cut_test is not None
    train, val = int(options.cut_val * rows), int(options.cut_test * rows) - int(options.cut_val * rows)
    return max(1, round(train * options.train_fraction)), val, rows - int(options.cut_test * rows)


@dataclass
class Estimate:
    seconds: float
    source: str  # "history" (measured epochs of a run), "probe" (a few batches timed now), "done", "skipped"


@dataclass
class Costs:
    """What a run costs on this machine besides its epochs, measured once by the dry run."""

    start: float  # seconds to start a train.py process (Python and its imports)
    decode: float  # seconds to decode and resize one image (the first run at an image size; later ones read the cache)


def estimate(
    plan: Plan, found: dict[str, Status], rows: int, device_name: str, dataset: Path | None = None
) -> dict[str, Estimate]:
    """Seconds each run still needs: its epochs (seconds per image from the epochs already measured in a run of
    the same network, image size, head and augmentation when there is one, else from a few batches timed now),
    the start of its process, the decode of images no earlier run decoded at its size; and "report", the report."""
    per_image = measured_speeds(plan, found, rows)
    device = select_device(device_name)
    prepare_device(device)  # as training sets it: on a CPU the allocator alone halves a step's time
    costs = Costs(measure_start(), measure_decode(dataset))
    decoded: set[int] = set()
    out = {}
    for name, run in plan.runs.items():
        status = found[name]
        if status.state in ("finished", "skipped"):
            out[name] = Estimate(0.0, "done" if status.state == "finished" else "skipped")
            continue
        key = _speed_key(run.options)
        if key not in per_image:
            per_image[key] = (probe(run.options, device), "probe")
        step, source = per_image[key]
        train, val, _ = split_sizes(run.options, rows)
        evaluated = val + (min(train, val) if run.options.train_eval == "sample" else train)
        saved = 16 * parameters(run.options) / SAVED_BYTES_PER_SECOND
        epoch = train * step + evaluated * step * EVAL_SHARE + EPOCH_OVERHEAD + saved
        first_decode = run.options.image_size not in decoded
        decoded.add(run.options.image_size)
        fixed = costs.start * (1 + RUN_OVERHEAD) + (rows * costs.decode if first_decode else 0.0)
        out[name] = Estimate((run.options.epochs - status.epoch) * epoch + fixed, source)
    out["report"] = Estimate(report_seconds(plan, rows, per_image, costs.start), "model")
    return out


def measured_speeds(plan: Plan, found: dict[str, Status], rows: int) -> dict[tuple, tuple[float, str]]:
    """Seconds per training image of each kind of run that has epochs already measured (its history)."""
    per_image: dict[tuple, tuple[float, str]] = {}
    for name, run in plan.runs.items():
        if found[name].state == "skipped":
            continue
        history = plan.run(name).history()
        if history:
            train, val, _ = split_sizes(run.options, rows)
            evaluated = val + (min(train, val) if run.options.train_eval == "sample" else train)
            seconds = sum(r["seconds"] + r.get("train_eval_seconds", 0.0) for r in history) / len(history)
            per_image.setdefault(_speed_key(run.options), (seconds / (train + evaluated * EVAL_SHARE), "history"))
    return per_image


def report_seconds(plan: Plan, rows: int, per_image: dict[tuple, tuple[float, str]], start: float) -> float:
    """The report: each run's test split evaluated once (and three splits of a few), its figures, the PDF."""
    seconds = REPORT_FIXED * start
    for run in plan.runs.values():
        step = per_image.get(_speed_key(run.options), (0.0, ""))[0]
        _, _, test = split_sizes(run.options, rows)
        seconds += REPORT_PER_RUN * start + test * step * EVAL_SHARE
    return seconds


def measure_start() -> float:
    """Seconds for a new Python process to import what train.py trains with, measured now."""
    began = time.perf_counter()
    command = [sys.executable, "-c", "import model.training.fit"]
    subprocess.run(command, cwd=config.PROJECT_ROOT, capture_output=True, check=False)
    return time.perf_counter() - began


def measure_decode(dataset: Path | None, images: int = 12) -> float:
    """Seconds to decode and resize one image of ``dataset``, measured now on a few of its images."""
    from model.images import decode_image, resize_square

    files = sorted((dataset / "images").rglob("*.jpg"))[:images] if dataset is not None else []
    if not files:
        return 0.0
    began = time.perf_counter()
    for path in files:
        rgb, _ = decode_image(path)
        if rgb is not None:
            resize_square(rgb, 64)
    return (time.perf_counter() - began) / len(files)


def _speed_key(options: TrainOptions) -> tuple:
    return options.model, options.image_size, options.box_head, options.augment != "off", options.freeze


def probe(options: TrainOptions, device: torch.device, batches: int = 2) -> float:
    """Seconds per image of a training step, timed on ``batches`` batches of random images with the toolkit's
    training step."""
    torch.manual_seed(0)
    model = place_model(build_model(options.model, 3, load_weights=False, **options.network_options), device)
    optimizer = make_optimizer(
        options.optimizer, [p for p in model.parameters() if p.requires_grad], options.lr, 0.0, device
    )
    precision = resolve_precision(options.precision, device)
    scaler, loss_fn = precision.grad_scaler(), loss_for(options)
    size, n = options.image_size, options.batch_size
    x = torch.randn(n, 3, size, size, device=device)
    if channels_last(device):
        x = x.contiguous(memory_format=torch.channels_last)
    labels = torch.zeros(n, dtype=torch.int64, device=device)
    boxes = torch.tensor([[0.2, 0.2, 0.8, 0.8]], device=device).expand(n, 4)

    def step() -> None:
        model.train()
        train_step(model, x, labels, boxes, loss_fn, optimizer, precision, scaler)

    step()  # warm-up
    synchronize(device)
    began = time.perf_counter()
    for _ in range(batches):
        step()
    synchronize(device)
    return (time.perf_counter() - began) / (batches * n)


def format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 600:
        return f"{int(seconds // 60)} min {seconds % 60:.0f} s"
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes < 90 else f"{minutes / 60:.1f} h"


def total(estimates: dict[str, Estimate]) -> float:
    return math.fsum(e.seconds for e in estimates.values())
