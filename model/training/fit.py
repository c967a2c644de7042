"""One training run, as a sequence of named stages over one training state.

    fit(options, rows, reporter)
      1. load_data      decode the images of the rows plan_rows read, checked and split, once
                        (model/training/data.py; plan_rows runs before torch is even imported)
      2. build          the network, optimizer, learning-rate schedule and loss (or those of a resumed run)
      3. prepare        the splits on the device, --compile's module
      4. begin          the split files, config.json and run.json (a new run: into its staging folder)
      5. run_epochs     train, measure the training images in evaluation mode, validate; record_epoch:
                        the checkpoints (best.pth when the epoch is the best so far, last.pth always),
                        history.csv, the plot; after the first epoch a new run is moved into its folder

The run's folder is written through its Run's writer (model/runs/run.py), which holds its lock. Signals
(Ctrl-C, preemption, Slurm's warning) stop it at the next batch; last.pth then holds every finished
epoch, and ``train.py --resume`` goes on exactly as if it had never stopped.
"""

from __future__ import annotations

import copy
import math
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, cast

import torch

from model import config
from model.core.precision import Precision, resolve_precision
from model.core.runtime import (
    Interrupted,
    Reporter,
    StopOnSignal,
    place_model,
    prepare_device,
    select_device,
    slurm_facts,
    usable_cpus,
    uses_channels_last,
)
from model.data.annotations import write_rows_text
from model.data.augment import Augmenter, build_augmenter
from model.detector import Detector
from model.engine.batches import DeviceBatches, place_splits
from model.engine.steps import EpochStats, evaluate, network_batch, train_one_epoch, train_step
from model.experiment.loss import DetectionLoss, loss_for
from model.experiment.options import TrainOptions
from model.experiment.schedule import LearningRate, make_optimizer
from model.network import build_model, count_parameters
from model.runs.checkpoint import Checkpoint, Progress, RunRecord, model_payload, training_payload
from model.runs.plots import convergence_png
from model.runs.run import Run, RunWriter, improves
from model.training.data import Rows, TrainingData, TrainingError, load_data

PLOT_INTERVAL = 20.0  # seconds between two drawings of the convergence plot (always drawn after the last epoch)


@dataclass
class TrainingState:
    """Everything training changes, and what last.pth saves to resume it exactly."""

    model: Detector
    optimizer: torch.optim.Optimizer
    schedule: LearningRate
    scaler: torch.amp.GradScaler  # fp16's loss scale (a pass-through in fp32 and bf16)
    generator: torch.Generator  # the batch order
    augmenter: Augmenter | None = None  # --augment, with its own random stream
    progress: Progress = field(default_factory=lambda: Progress(0))

    @property
    def states(self) -> dict[str, Any]:
        states: dict[str, Any] = {"optimizer": self.optimizer, "schedule": self.schedule, "scaler": self.scaler}
        if self.augmenter is not None:
            states["augment"] = self.augmenter
        return states


@dataclass
class Setup:
    """How the epochs compute: where, in which precision, from which batches, through which module."""

    device: torch.device
    precision: Precision
    train: DeviceBatches
    val: DeviceBatches
    train_eval: DeviceBatches | None  # the training images measured in evaluation mode
    forward: torch.nn.Module  # the model, or its torch.compile'd wrapper (checkpoints save the model itself)
    loss_fn: DetectionLoss

    @property
    def channels_last(self) -> bool:
        return uses_channels_last(self.device)


# ----------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------
def fit(options: TrainOptions, rows: Rows, reporter: Reporter, resume: Checkpoint | None = None) -> Path:
    """The whole run on ``rows`` (or, from ``resume``, a last.pth, the rest of it); returns the run folder."""
    device = select_device(options.device)
    prepare_device(device)
    precision = resolve_precision(options.precision, device)
    for line in options.warnings():
        reporter.line(line)
    run = Run(resume.path.parent) if resume is not None else Run(options.run_dir)
    with StopOnSignal() as stop, run.writer("train.py", new=resume is None, replace=options.overwrite) as writer:
        try:
            data = load_data(options, rows, reporter, stop, resume.classes if resume is not None else None)
        except Interrupted as interrupt:
            reporter.line(f"Interrupted by {interrupt} while reading the dataset: nothing was written")
            raise
        state, record = build(options, data, device, precision, resume)
        setup = prepare(options, data, state, device, precision, reporter)
        begin(writer, record, data, state, reporter, resumed=resume is not None)
        run_epochs(options, writer, record, state, setup, reporter, stop)
    best = state.progress.best
    assert best is not None
    reporter.line(
        f"Best epoch {best['epoch']}: val accuracy {best['val_accuracy']:.4f}, val loss "
        f"{best['val_loss']:.4f}. Evaluate it with: python eval.py {run.checkpoint_path('best')}"
    )
    return run.folder


# ----------------------------------------------------------------------------------------------
# 2. The network and its optimisation
# ----------------------------------------------------------------------------------------------
def build(
    options: TrainOptions, data: TrainingData, device: torch.device, precision: Precision, resume: Checkpoint | None
) -> tuple[TrainingState, RunRecord]:
    """The training state (weights, optimizer, schedule, batch order), fresh or as ``resume`` left it,
    and the run record every checkpoint carries."""
    torch.manual_seed(options.seed)
    constructor = options.network_options
    weights: dict[str, Any] = {"weights": options.weights} if options.weights is not None else {}
    model = build_model(options.model, len(data.classes), load_weights=resume is None, **constructor, **weights)
    model = place_model(model, device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(options.optimizer, trainable, options.lr, options.weight_decay, device)
    state = TrainingState(
        model,
        optimizer,
        LearningRate(options.lr_schedule, options.lr, options.epochs),
        precision.grad_scaler(),
        torch.Generator().manual_seed(options.seed),
        build_augmenter(options.augment, options.seed),
    )
    facts = {**run_facts(data, device, model), "precision": precision.name, "workers": options.workers or usable_cpus()}
    if resume is not None:
        state.progress = resume.resume_into(model, state.states, state.generator)
        previous = resume.facts
        facts = {**previous, "resumed": [*previous.get("resumed", []), facts]}
    record = RunRecord(options.model, constructor, data.classes, options.image_size, options.recorded(), facts)
    return state, record


def run_facts(data: TrainingData, device: torch.device, model: torch.nn.Module) -> dict[str, Any]:
    """What a run cannot be re-created from its options alone: where, on what, with which versions."""
    total, trainable = count_parameters(model)
    return {
        "dataset": str(Path(data.root).resolve()),
        "classes": data.classes,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "parameters": total,
        "trainable_parameters": trainable,
        "torch": str(torch.__version__),
        "torchvision": metadata.version("torchvision"),
        "python": platform.python_version(),
        "host": platform.node(),
        "slurm": slurm_facts(),
        "command": " ".join(sys.argv),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


# ----------------------------------------------------------------------------------------------
# 3. Where it computes
# ----------------------------------------------------------------------------------------------
def prepare(
    options: TrainOptions,
    data: TrainingData,
    state: TrainingState,
    device: torch.device,
    precision: Precision,
    reporter: Reporter,
) -> Setup:
    """The splits on the device (resident when they fit), the loss, and --compile's module, compiled
    now so that its time is reported apart from the epochs'."""
    extra = [data.train_eval] if data.train_eval is not None and data.train_eval is not data.train else []
    placed = place_splits([data.train, data.val, *extra], device)
    train_eval = placed[2] if extra else (placed[0] if data.train_eval is not None else None)
    loss_fn = loss_for(options)
    setup = Setup(device, precision, placed[0], placed[1], train_eval, state.model, loss_fn)
    augment = f"; augmenting the training batches ({options.augment})" if state.augmenter is not None else ""
    measured = (
        "" if train_eval is None else f"; training figures in evaluation mode on {len(train_eval)} training images"
    )
    reporter.line(f"Batches {setup.train.describe()}; computing in {precision.name} on {device}{augment}{measured}")
    if options.compile:
        began = time.perf_counter()
        setup.forward = compile_model(state, setup, options.batch_size)
        reporter.line(
            f"Compiled the model with torch.compile in {time.perf_counter() - began:.1f} s "
            f"(not counted in the epoch times)"
        )
    return setup


def compile_model(state: TrainingState, setup: Setup, batch_size: int) -> torch.nn.Module:
    """torch.compile of the model, run once per batch shape the epochs will use (training and
    evaluation, full and last batches) so that compiling happens here, not in epoch 1. The model's
    weights, running statistics, optimizer state and random states are left as they were."""
    import torch._inductor.config as inductor

    inductor.fallback_random = True  # dropout draws from torch's generator, as in eager mode: same masks, same run
    compiled = cast(torch.nn.Module, torch.compile(state.model, dynamic=False))
    weights = {k: v.clone() for k, v in state.model.state_dict().items()}
    optimizer_state = copy.deepcopy(state.optimizer.state_dict())
    rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    evaluated = [b for b in (setup.val, setup.train_eval) if b is not None]
    sizes = {(True, n) for n in {batch_size, len(setup.train) % batch_size} if n} | {
        (False, n) for b in evaluated for n in {batch_size, len(b) % batch_size} if n
    }
    try:
        for training, size in sorted(sizes):
            batch = next(setup.train.batches(size))
            x = network_batch(batch.images, setup.train, setup.channels_last)
            if training:
                train_step(
                    compiled,
                    x,
                    batch.labels,
                    batch.boxes,
                    setup.loss_fn,
                    state.optimizer,
                    setup.precision,
                    state.scaler,
                )
            else:
                compiled.eval()
                with torch.no_grad(), setup.precision.autocast():
                    compiled(x)
    except Exception as error:  # inductor needs a C++ compiler (and Triton on CUDA); MPS is not supported
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise TrainingError(
            f"--compile: torch.compile cannot compile the model here ({reason}); train without --compile"
        ) from None
    finally:
        state.model.load_state_dict(weights)
        state.optimizer.load_state_dict(optimizer_state)
        state.optimizer.zero_grad(set_to_none=True)
        torch.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
    return compiled


# ----------------------------------------------------------------------------------------------
# 4. Begin
# ----------------------------------------------------------------------------------------------
def begin(
    writer: RunWriter, record: RunRecord, data: TrainingData, state: TrainingState, reporter: Reporter, resumed: bool
) -> None:
    """A new run's split files, config.json and run.json (kept aside until its first epoch is saved), or
    a resumed run's run.json."""
    writer.write_json(config.RUN_FILE, record.facts)
    if resumed:
        reporter.line(
            f"Resuming {writer.folder} after epoch {state.progress.epoch} of {record.options['epochs']} on "
            f"{record.facts['resumed'][-1]['device']}"
        )
        return
    for name, filename in config.SPLIT_FILES.items():
        writer.write_text(filename, write_rows_text(data.splits[name]))
    writer.write_json(config.CONFIG_FILE, record.options)
    facts, options = record.facts, record.options
    reporter.line(
        f"Training {record.model_name} ({facts['parameters']:,} parameters, "
        f"{facts['trainable_parameters']:,} trainable) on {facts['device']} for {options['epochs']} "
        f"epoch{'s' if options['epochs'] != 1 else ''}, batch {options['batch_size']}, lr {options['lr']:g}; writing "
        f"to {writer.folder}"
    )


# ----------------------------------------------------------------------------------------------
# 5. The epochs
# ----------------------------------------------------------------------------------------------
@dataclass
class EpochFigures:
    """What one epoch measured."""

    running: EpochStats  # the training pass itself (dropout on)
    train: EpochStats | None  # the training images in evaluation mode; None with --train-eval off
    val: EpochStats
    cpu_seconds: float  # process CPU time of the whole epoch


def one_epoch(options: TrainOptions, state: TrainingState, setup: Setup, advance: Callable[[], None]) -> EpochFigures:
    """The training pass, then, in evaluation mode, the training images and the validation split."""
    cpu = time.process_time()
    running = train_one_epoch(
        setup.forward,
        setup.train,
        setup.loss_fn,
        state.optimizer,
        options.batch_size,
        state.generator,
        setup.precision,
        state.scaler,
        setup.channels_last,
        advance,
        state.augmenter,
    )
    scored: list[EpochStats | None] = []
    for batches in (setup.train_eval, setup.val):
        if batches is None:
            scored.append(None)
            continue
        stats, _ = evaluate(
            setup.forward, batches, setup.loss_fn, options.batch_size, setup.precision, setup.channels_last, advance
        )
        scored.append(stats)
    val = scored[1]
    assert val is not None
    return EpochFigures(running, scored[0], val, time.process_time() - cpu)


def run_epochs(
    options: TrainOptions,
    writer: RunWriter,
    record: RunRecord,
    state: TrainingState,
    setup: Setup,
    reporter: Reporter,
    stop: StopOnSignal,
) -> None:
    """Train and validate each remaining epoch, recording each; early stopping after --patience."""
    batches = sum(
        b.num_batches(options.batch_size) for b in (setup.train, setup.val, setup.train_eval) if b is not None
    )
    plot = PlotSchedule(writer, record)
    epoch = state.progress.epoch + 1
    with reporter.progress() as start_bar:
        try:
            for epoch in range(state.progress.epoch + 1, options.epochs + 1):
                stop.check()
                advance_bar = start_bar(f"epoch {epoch}/{options.epochs}", batches)

                def advance(advance_bar: Callable[[], None] = advance_bar) -> None:
                    advance_bar()
                    stop.check()  # a signal abandons the epoch; last.pth holds the previous one

                lr = state.schedule.at(epoch)
                for group in state.optimizer.param_groups:
                    group["lr"] = lr
                figures = one_epoch(options, state, setup, advance)
                check_finite(figures, epoch, options, writer)
                state.schedule.observe(figures.val.loss)
                is_best = record_epoch(writer, record, state, history_row(epoch, figures, lr))
                last = epoch == options.epochs or stopping_early(options, state)
                plot.draw(state.progress.history, force=last)
                reporter.line(epoch_line(state.progress.history[-1], options.epochs, is_best))
                if stopping_early(options, state):
                    reporter.line(f"Early stopping: no better validation accuracy for {options.patience} epochs")
                    break
        except Interrupted as interrupt:
            plot.draw(state.progress.history, force=True)
            reporter.line(interrupted_line(interrupt, epoch, writer))
            raise


def stopping_early(options: TrainOptions, state: TrainingState) -> bool:
    return bool(options.patience) and state.progress.stale_epochs >= options.patience


def check_finite(figures: EpochFigures, epoch: int, options: TrainOptions, writer: RunWriter) -> None:
    if math.isfinite(figures.running.loss) and math.isfinite(figures.val.loss):
        return
    kept = (
        f"the checkpoints of epoch {epoch - 1} in {writer.folder} are kept"
        if not writer.staged
        else "nothing of this run was kept"
    )
    raise TrainingError(
        f"epoch {epoch}: the loss is not finite (train {figures.running.loss}, val {figures.val.loss}); lower --lr "
        f"(now {options.lr:g}) or --box-weight; {kept}"
    )


def interrupted_line(interrupt: Interrupted, epoch: int, writer: RunWriter) -> str:
    if writer.staged:
        return (
            f"Interrupted by {interrupt} during epoch {epoch}, before the run's first epoch was saved: nothing of it "
            f"was kept (a run that was in {writer.folder} before is as it was); start it again"
        )
    last = writer.run.checkpoint_path("last")
    return (
        f"Interrupted by {interrupt} during epoch {epoch}: {last} holds epochs 1-{epoch - 1} with "
        f"everything needed to go on. Resume with: python train.py --resume {last}"
    )


def history_row(epoch: int, figures: EpochFigures, lr: float) -> dict[str, float]:
    nan = math.nan
    train = (
        figures.train.as_dict("train")
        if figures.train is not None
        else dict.fromkeys(("train_loss", "train_class_loss", "train_box_loss", "train_accuracy", "train_iou"), nan)
    )
    return {
        "epoch": epoch,
        **train,
        **figures.val.as_dict("val"),
        **figures.running.as_dict("running"),
        "train_images_evaluated": figures.train.images if figures.train is not None else 0,
        "seconds": figures.running.seconds + figures.val.seconds,
        "train_eval_seconds": figures.train.seconds if figures.train is not None else 0.0,
        "cpu_seconds": figures.cpu_seconds,
        "lr": lr,
    }


def record_epoch(writer: RunWriter, record: RunRecord, state: TrainingState, row: dict[str, float]) -> bool:
    """Add the epoch to the progress and write it out: best.pth when it is the best so far, then
    last.pth and history.csv; after a new run's first epoch, its files go into its folder. Returns
    whether the epoch is the best."""
    progress = state.progress
    progress.epoch = int(row["epoch"])
    progress.history.append(row)
    is_best = improves(row["val_accuracy"], row["val_loss"], progress.best)
    if is_best:
        progress.best = {"epoch": progress.epoch, "val_accuracy": row["val_accuracy"], "val_loss": row["val_loss"]}
        writer.save_checkpoint("best", model_payload(record, state.model, progress.epoch, row))
    progress.stale_epochs = 0 if is_best else progress.stale_epochs + 1
    writer.save_checkpoint("last", training_payload(record, state.model, progress, row, state.states, state.generator))
    writer.write_history(progress.history)
    if writer.staged:
        writer.write_bytes(config.PLOT_FILE, convergence_png(progress.history, plot_title(record)))
        writer.commit()
    return is_best


def plot_title(record: RunRecord) -> str:
    return f"{record.model_name} on {Path(record.facts['dataset']).name}"


class PlotSchedule:
    """The convergence plot, drawn at most every PLOT_INTERVAL seconds (drawing costs about as much as a
    small network's epoch on a GPU) and always after the last epoch or a stop."""

    def __init__(self, writer: RunWriter, record: RunRecord):
        self.writer, self.record = writer, record
        self.drawn = time.monotonic()

    def draw(self, history: list[dict[str, float]], force: bool = False) -> None:
        if not history or self.writer.staged or not (force or time.monotonic() - self.drawn >= PLOT_INTERVAL):
            return
        self.writer.write_bytes(config.PLOT_FILE, convergence_png(history, plot_title(self.record)))
        self.drawn = time.monotonic()


def epoch_line(row: dict[str, float], epochs: int, is_best: bool) -> str:
    def iou(value: float) -> str:
        return "" if math.isnan(value) else f" iou {value:.3f}"

    train = "train" if not math.isnan(row["train_loss"]) else "running"
    return (
        f"epoch {int(row['epoch']):>3}/{epochs}  {train} loss {row[f'{train}_loss']:.4f} acc "
        f"{row[f'{train}_accuracy']:.3f}"
        f"{iou(row[f'{train}_iou'])} | val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.3f}"
        f"{iou(row['val_iou'])} | {row['seconds']:.1f} s lr {row['lr']:.2e}{'  *best*' if is_best else ''}"
    )
