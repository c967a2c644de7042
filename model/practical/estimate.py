"""What the plan needs before it trains: room on the disk, and how long the runs still to train
should take (from the epochs already measured, else a few batches timed now)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from model.core.files import free_space
from model.core.precision import resolve_precision
from model.core.runtime import place_model, prepare_device, select_device, synchronize, uses_channels_last
from model.engine.steps import train_step
from model.experiment.loss import loss_for
from model.experiment.options import TrainOptions
from model.experiment.schedule import make_optimizer
from model.network import build_model, count_parameters
from model.practical.plan import Plan, PlanError, Status


def check_disk(plan: Plan, found: dict[str, Status], images: int) -> None:
    """Room for the checkpoints of the runs to train and for the decoded images, before anything starts."""
    needed = 0
    sizes = set()
    for name, run in plan.runs.items():
        if found[name].state in ("missing", "partial"):
            model = build_model(run.options.model, 3, load_weights=False, **run.options.network_options)
            parameters, _ = count_parameters(model)
            needed += parameters * 4 * 5  # best.pth, last.pth and its optimizer's two moments, and a temporary
            sizes.add(run.options.image_size)
    needed += sum(images * 3 * size * size for size in sizes)
    free = free_space(plan.output_dir) or 0
    if needed > 0.9 * free:
        raise PlanError(
            f"{plan.output_dir}: {free / 2**30:.1f} GiB free, the runs need about {needed / 2**30:.1f} GiB "
            f"(checkpoints and decoded images); free some space or pass --output-dir on a larger disk"
        )


# ----------------------------------------------------------------------------------------------
# How long
# ----------------------------------------------------------------------------------------------
def split_sizes(options: TrainOptions, rows: int) -> tuple[int, int]:
    """(training, validation) images of a run on a dataset of ``rows`` rows."""
    if options.splits is not None:
        return rows, 0  # unknown without reading them: an upper bound
    assert options.cut_val is not None and options.cut_test is not None
    train, val = int(options.cut_val * rows), int(options.cut_test * rows) - int(options.cut_val * rows)
    return max(1, round(train * options.train_fraction)), val


@dataclass
class Estimate:
    seconds: float
    source: str  # "history" (measured epochs of a run) or "probe" (a few batches timed now)


def estimate(plan: Plan, found: dict[str, Status], rows: int, device_name: str) -> dict[str, Estimate]:
    """Seconds each run still needs: seconds per image from the epochs already measured in a run of the
    same network, image size, head and augmentation when there is one, else from a few batches timed now."""
    per_image: dict[tuple, tuple[float, str]] = {}  # speed key -> (seconds per image, where it comes from)
    for name, run in plan.runs.items():  # measured epochs first
        if found[name].state != "skipped":
            rows_seen = plan.run(name).history()
            train, val = split_sizes(run.options, rows)
            if rows_seen:
                seconds = sum(r["seconds"] for r in rows_seen) / len(rows_seen) / max(1, train + val)
                per_image.setdefault(_speed_key(run.options), (seconds, "history"))
    device = select_device(device_name)
    prepare_device(device)  # as training sets it: on a CPU the allocator alone halves a step's time
    out = {}
    for name, run in plan.runs.items():
        status = found[name]
        if status.state in ("finished", "skipped"):
            out[name] = Estimate(0.0, "done" if status.state == "finished" else "skipped")
            continue
        key = _speed_key(run.options)
        if key not in per_image:
            per_image[key] = (probe(run.options, device), "probe")
        seconds, source = per_image[key]
        train, val = split_sizes(run.options, rows)
        out[name] = Estimate((run.options.epochs - status.epoch) * (train + val) * seconds, source)
    return out


def _speed_key(options: TrainOptions) -> tuple:
    return options.model, options.image_size, options.box_head, options.augment != "off", options.freeze


def probe(options: TrainOptions, device: torch.device, batches: int = 2) -> float:
    """Seconds per image of an epoch (a training step and a validation step per image, weighted as an
    epoch weights them), timed on ``batches`` batches of random images with the toolkit's training step."""
    torch.manual_seed(0)
    model = place_model(build_model(options.model, 3, load_weights=False, **options.network_options), device)
    optimizer = make_optimizer(
        options.optimizer, [p for p in model.parameters() if p.requires_grad], options.lr, 0.0, device
    )
    precision = resolve_precision(options.precision, device)
    scaler, loss_fn = precision.grad_scaler(), loss_for(options)
    size, n = options.image_size, options.batch_size
    x = torch.randn(n, 3, size, size, device=device)
    if uses_channels_last(device):
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
    # an epoch also validates and measures the training sample (about a third of a training step per
    # image each) and writes its files
    return 1.2 * (time.perf_counter() - began) / (batches * n)


def format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes < 90 else f"{minutes / 60:.1f} h"


def total(estimates: dict[str, Estimate]) -> float:
    return math.fsum(e.seconds for e in estimates.values())
