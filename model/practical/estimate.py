"""What the plan needs before it trains: room on the disk, and how long the runs still to train should take (from
the epochs already measured, else a few training steps timed now), said in the dry run's table.

A run costs its process's start (imports), its data (decoded once per image size, then read from the cache), its
first steps (the kernels each shape needs, made once per process) and its epochs: a training pass, the evaluation
passes (a training sample and the validation split), the checkpoints. A step is timed as the fastest of several, so
that other processes on the machine do not inflate it: the estimate is the idle machine's, and the dry run says so
when the machine was busy while it measured.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import time
import timeit
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from model import config, env
from model.device import (
    channels_last,
    place_model,
    prepare_device,
    resolve_precision,
    select_device,
    synchronize,
    usable_cpus,
)
from model.engine import loss_for, make_optimizer, train_step
from model.network import build_model, count_parameters
from model.options import TrainOptions
from model.practical.plan import Plan, PlanError, Status

EVAL_SHARE = 0.4  # an evaluation pass costs this share of a training step per image (no backward, no update)
# seconds a run spends besides `import train`, its data and its epochs: what torch and matplotlib import on first use,
# rows and splits checked, model built, checkpoints and plots written (the course-sized quick plan, idle 2-core Xeon)
RUN_OVERHEAD = 6.5
EPOCH_OVERHEAD = 0.2  # seconds an epoch spends around its passes: history, plot, progress line
SAVED_BYTES_PER_SECOND = 200e6  # best.pth and last.pth (weights and Adam's two moments: 16 bytes a parameter)
REPORT_PER_RUN = 0.6  # process starts the report spends on each run it reads (its figures and tables)
REPORT_FIXED = 4.0  # process starts the report spends once (its own start, the PDF, the classic baselines)
REPORT_EVAL_SHARE = 0.4  # an image the report evaluates: a share of a training step (measured: one thread, its files)
ALL_SPLITS = ("evaluation", "best-vs-last", "network")  # section kinds that show every split of both checkpoints
BUSY = 0.75  # a load average (other processes) above this share of the cores: the machine was busy


@dataclass
class Estimate:
    seconds: float
    source: str  # "history" (measured epochs of a run), "probe" (steps timed now), "done", "skipped"


def parameters(options: TrainOptions) -> int:
    """The number of parameters of the run's network (for three classes)."""
    return _parameters(options.model, tuple(sorted(options.network_options.items())))


@functools.cache  # built once: the disk check and each run's estimate ask for the same networks
def _parameters(model: str, network_options: tuple[tuple[str, Any], ...]) -> int:
    return count_parameters(build_model(model, 3, load_weights=False, **dict(network_options)))[0]


def check_disk(plan: Plan, found: dict[str, Status], images: int) -> None:
    """Room for the checkpoints of the runs to train and for the decoded images, before anything starts."""
    todo = [run.options for name, run in plan.runs.items() if found[name].to_train]
    needed = sum(parameters(o) * 4 * 5 for o in todo)  # best.pth, last.pth with Adam's two moments, a temporary
    needed += sum(images * 3 * size * size for size in {o.image_size for o in todo})
    free = shutil.disk_usage(next(f for f in (plan.output_dir, *plan.output_dir.parents) if f.exists())).free
    if needed > 0.9 * free:
        raise PlanError(
            f"{plan.output_dir}: {free / 2**30:.1f} GiB free, the runs need about {needed / 2**30:.1f} GiB "
            f"(checkpoints and decoded images); free some space or pass --output-dir on a larger disk"
        )


def split_sizes(options: TrainOptions, rows: int) -> tuple[int, int, int]:
    """(training, validation, test) images of a run on a dataset of ``rows`` rows."""
    if options.splits is not None or options.cut_val is None or options.cut_test is None:
        return rows, 0, 0  # unknown without reading them: an upper bound
    train, val = int(options.cut_val * rows), int(options.cut_test * rows) - int(options.cut_val * rows)
    return max(1, round(train * options.train_fraction)), val, rows - int(options.cut_test * rows)


def estimate(plan: Plan, found: dict[str, Status], rows: int, device_name: str) -> tuple[dict[str, Estimate], str]:
    """Seconds each run still needs, and "report"'s: its start, first steps and epochs (seconds per image from the
    epochs already measured in a run of the same kind when there is one, else timed now); and what to say beside the
    total when the machine was busy while it measured."""
    load, device = os.getloadavg()[0], select_device(device_name)
    prepare_device(device)  # as training sets it: on a CPU the allocator alone halves a step's time
    start, speeds = measure_start(), dict[tuple, tuple[float, float, str]]()
    for name, run in plan.runs.items():  # the epochs already measured of each kind of run
        if history := plan.run(name).history() if found[name].state != "skipped" else []:
            seconds = sum(r["seconds"] + r.get("train_eval_seconds", 0.0) for r in history) / len(history)
            speeds.setdefault(speed_key(run.options), (seconds / images_per_epoch(run.options, rows), 0.0, "history"))
    out = {}
    for name, run in plan.runs.items():
        if not found[name].to_train:
            out[name] = Estimate(0.0, "done" if found[name].state == "finished" else "skipped")
            continue
        if (key := speed_key(run.options)) not in speeds:
            speeds[key] = (*probe(run.options, device), "probe")
        step, first_steps, source = speeds[key]
        saved = 16 * parameters(run.options) / SAVED_BYTES_PER_SECOND
        epoch = images_per_epoch(run.options, rows) * step + EPOCH_OVERHEAD + saved
        runs = (run.options.epochs - found[name].epoch) * epoch
        out[name] = Estimate(runs + start + RUN_OVERHEAD + first_steps, source)  # a run that goes on: a new process too
    out["report"] = Estimate(report_seconds(plan, rows, speeds, start), "model")
    busy = f" (measured while the machine was busy, load average {load:.1f} on {usable_cpus()} cores: expect more)"
    return out, busy if load > BUSY * usable_cpus() else ""


def report_seconds(plan: Plan, rows: int, speeds: dict[tuple, tuple[float, float, str]], start: float) -> float:
    """The report: its start, its figures and PDF, and its evaluations: each run's test split, and every split of its
    best and last model where a section shows them (Part 1 Q3, Q7, Q9.3, Part 2 Q1-Q3)."""
    every = {run for section in plan.sections if section.kind in ALL_SPLITS for run in section.runs}
    seconds = start * REPORT_FIXED
    for name, run in plan.runs.items():
        train, val, test = split_sizes(run.options, rows)
        images = test + (2 * (train + val) + test if name in every else 0)
        seconds += start * REPORT_PER_RUN + images * speeds.get(speed_key(run.options), (0.0,))[0] * REPORT_EVAL_SHARE
    return seconds


def images_per_epoch(options: TrainOptions, rows: int) -> float:
    """The training images of an epoch, and its evaluated ones (the training sample, the validation split) in
    training images' time."""
    train, val, _ = split_sizes(options, rows)
    return train + EVAL_SHARE * (val + (min(train, val) if options.train_eval == "sample" else train))


def speed_key(options: TrainOptions) -> tuple:
    kind = (options.model, options.image_size, options.box_head)
    return (*kind, options.augment != "off", options.freeze, options.batch_size)


def measure_start() -> float:
    """Seconds for a new Python process to import what train.py trains with (one start: this process has just read
    the same files, so a second would find them no warmer)."""
    command = [sys.executable, "-c", "import train"]
    start = functools.partial(subprocess.run, command, cwd=config.PROJECT_ROOT, capture_output=True, check=False)
    return timeit.timeit(start, number=1)


def probe(options: TrainOptions, device: torch.device) -> tuple[float, float]:
    """Seconds per image of the run's training step (the fastest of 6 steps on random images, after 3 steps; 1 after
    1 at tiny scale, where the plan is tested, not timed), and the seconds its first steps cost beyond that (the
    kernels made for each shape, once per process)."""
    warm, timed = (1, 1) if env.tiny() else (3, 6)
    torch.manual_seed(0)
    model = place_model(build_model(options.model, 3, load_weights=False, **options.network_options), device)
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(options.optimizer, trained, options.lr, 0.0, device)
    precision = resolve_precision(options.precision, device)
    scaler, loss_fn, size, n = precision.grad_scaler(), loss_for(options), options.image_size, options.batch_size
    x = torch.randn(n, 3, size, size, device=device)
    x = x.contiguous(memory_format=torch.channels_last) if channels_last(device) else x
    labels = torch.zeros(n, dtype=torch.int64, device=device)
    boxes = torch.tensor([[0.2, 0.2, 0.8, 0.8]], device=device).expand(n, 4)
    times = []
    for _ in range(warm + timed):
        began = time.perf_counter()
        model.train()
        train_step(model, x, labels, boxes, loss_fn, optimizer, precision, scaler)
        synchronize(device)
        times.append(time.perf_counter() - began)
    step = min(times[warm:])
    return step / n, 2 * sum(t - step for t in times[:warm])  # the evaluation passes make their own kernels too


def format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 600:
        return f"{int(seconds // 60)} min {seconds % 60:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def dry_run_table(plan: Plan, found: dict[str, Status], estimates: dict[str, Estimate], plan_name: str,
                  dataset: Path) -> Any:  # fmt: skip
    """Each run's status, estimate and command."""
    from rich.table import Table

    title = f"The plan {plan_name}: {len(plan.runs)} run(s) in {plan.output_dir}, dataset {dataset}"
    table = Table("run", "status", "estimate", "command", title=title)
    for name, run in plan.runs.items():
        e = estimates[name]
        shown = f"{format_duration(e.seconds)} ({e.source})" if e.seconds else "-"
        table.add_row(name, found[name].describe(run.options.epochs), shown, plan.shown(name, dataset))
    table.add_row("(the report)", "after the runs", format_duration(estimates["report"].seconds), "")
    return table
