"""One training run, as a sequence of named stages over one training state.

    fit(options, reporter)
      1. load_data      find the dataset, read and check its rows, split them, decode the images once
      2. build          the network, optimizer, learning-rate schedule and loss (or those of a resumed run)
      3. start          write the split files, config.json, run.json and an epoch-0 last.pth
      4. run_epochs     train and validate each epoch, then record_epoch: history.csv, the plot, the
                        checkpoints (best.pth when the epoch is the best so far, last.pth always)

Signals (Ctrl-C, preemption, Slurm's warning) stop it at the next batch; last.pth then holds every
finished epoch, and ``train.py --resume`` goes on exactly as if it had never stopped.
"""

from __future__ import annotations

import json
import math
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, cast

import pandas as pd
import torch

from model import config, demo
from model.annotations import (
    Annotation,
    Problems,
    check_labels,
    class_names,
    read_annotations,
    read_split_files,
    split_rows,
    subsample,
    write_rows,
)
from model.augment import Augmenter, build_augmenter
from model.batches import DeviceBatches, place_splits
from model.cache import ImageCache, cache_folder
from model.checkpoint import Checkpoint, Progress, RunRecord, model_payload, save_checkpoint, training_payload
from model.dataset import DetectionDataset, find_dataset
from model.engine import EpochStats, evaluate, network_batch, train_one_epoch
from model.errors import UserError
from model.files import atomic_path, holds_data, write_text
from model.losses import DetectionLoss
from model.network import Detector, build_model, count_parameters
from model.options import TrainOptions
from model.plots import convergence_plot
from model.precision import Precision, resolve_precision
from model.runtime import (
    Interrupted,
    Reporter,
    StopOnSignal,
    place_model,
    prepare_device,
    select_device,
    slurm_facts,
    uses_channels_last,
)

OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("none", "cosine", "plateau")
HISTORY_COLUMNS = (
    "epoch",
    "train_loss",
    "train_class_loss",
    "train_box_loss",
    "train_accuracy",
    "train_iou",
    "val_loss",
    "val_class_loss",
    "val_box_loss",
    "val_accuracy",
    "val_iou",
    "seconds",
    "lr",
)
RUN_FILES = (
    config.BEST_CHECKPOINT,
    config.LAST_CHECKPOINT,
    config.HISTORY_FILE,
    config.PLOT_FILE,
    config.CONFIG_FILE,
    config.RUN_FILE,
    *config.SPLIT_FILES.values(),
)


class TrainingError(UserError):
    """Training cannot go on (the loss diverged, a split is empty, the folder is taken)."""


class LearningRate:
    """The learning rate of each epoch (--lr-schedule), and the state a resumed run needs.

    none: --lr throughout. cosine: epoch e of E trains at lr * (1 + cos(pi * (e - 1) / E)) / 2,
    from --lr down towards 0 at the last epoch; a run resumed with more epochs follows the curve of
    its new total from where it stands, so it neither restarts from --lr nor sits at 0. plateau:
    halved after PLATEAU_EPOCHS epochs in a row without a validation loss below the best so far.
    """

    PLATEAU_EPOCHS = 3

    def __init__(self, kind: str, base: float, epochs: int):
        self.kind, self.base, self.epochs = kind, base, epochs
        self.best_loss, self.stale, self.scale = math.inf, 0, 1.0  # plateau's state

    def at(self, epoch: int) -> float:
        """The learning rate of ``epoch`` (1-based)."""
        if self.kind == "cosine":
            return self.base * 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / self.epochs))
        return self.base * self.scale

    def observe(self, val_loss: float) -> None:
        """Called after each epoch with its validation loss."""
        if val_loss < self.best_loss:
            self.best_loss, self.stale = val_loss, 0
        else:
            self.stale += 1
        if self.kind == "plateau" and self.stale >= self.PLATEAU_EPOCHS:
            self.scale, self.stale = self.scale * 0.5, 0

    def state_dict(self) -> dict[str, float]:
        return {"best_loss": self.best_loss, "stale": self.stale, "scale": self.scale}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.best_loss, self.stale, self.scale = float(state["best_loss"]), int(state["stale"]), float(state["scale"])


def improves(accuracy: float, loss: float, best: dict[str, float] | None) -> bool:
    """Best = highest validation accuracy; equal accuracy: lower validation loss (Part 1 Q6)."""
    if best is None:
        return True
    return accuracy > best["val_accuracy"] or (accuracy == best["val_accuracy"] and loss < best["val_loss"])


@dataclass
class TrainingData:
    """The dataset, its classes, the rows of each split and the decoded training and validation splits."""

    root: Path
    classes: list[str]
    splits: dict[str, list[Annotation]]  # train / val / test rows, as written to the split files
    train: DetectionDataset
    val: DetectionDataset


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
    forward: torch.nn.Module  # the model, or its torch.compile'd wrapper (checkpoints save the model itself)
    loss_fn: DetectionLoss

    @property
    def channels_last(self) -> bool:
        return uses_channels_last(self.device)


# ----------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------
def fit(options: TrainOptions, reporter: Reporter, resume: Checkpoint | None = None) -> Path:
    """The whole run (or, from ``resume``, a last.pth, the rest of it); returns the run folder."""
    device = select_device(options.device)
    prepare_device(device)
    precision = resolve_precision(options.precision, device)
    folder = resume.path.parent if resume is not None else options.run_dir
    previous = check_run_folder(folder, options.overwrite) if resume is None else []
    with StopOnSignal() as stop:
        try:
            data = load_data(options, reporter, stop, folder if resume is not None else None)
        except Interrupted as interrupt:
            reporter.line(f"Interrupted by {interrupt} while reading the dataset: nothing was written")
            raise
        state, record = build(options, data, device, precision, resume)
        setup = prepare(options, data, state, device, precision, reporter)
        if resume is None:
            start(folder, previous, record, data, state, reporter)
        else:
            write_text(folder / config.RUN_FILE, _json(record.facts))
            reporter.line(f"Resuming {folder} after epoch {state.progress.epoch} of {options.epochs} on {device}")
        run_epochs(options, folder, record, data, state, setup, reporter, stop)
    best = state.progress.best
    assert best is not None
    reporter.line(
        f"Best epoch {best['epoch']}: val accuracy {best['val_accuracy']:.4f}, val loss "
        f"{best['val_loss']:.4f}. Evaluate it with: python eval.py {folder / config.BEST_CHECKPOINT}"
    )
    return folder


def check_run_folder(folder: Path, overwrite: bool) -> list[Path]:
    """The previous run's files that this run will replace; refuses a folder holding data (a
    dataset, web_images/) and, without --overwrite, a folder holding a run."""
    data = holds_data(folder)
    if data is not None:
        raise TrainingError(
            f"{folder} holds data ({data}) that train.py did not write: a run goes into a "
            f"folder of its own; choose another --output-dir or --name"
        )
    previous = [folder / f for f in RUN_FILES if (folder / f).exists()]
    previous += sorted(folder.glob("eval_*")) if previous else []  # eval.py's files about that run
    if previous and not overwrite:
        shown = [p.name for p in previous if p.suffix == ".pth"] or [p.name for p in previous][:3]
        raise TrainingError(
            f"{folder} already holds a run ({', '.join(shown)}): pass --name NEW to keep both, or "
            f"--overwrite to replace it"
        )
    return previous


# ----------------------------------------------------------------------------------------------
# 1. The data
# ----------------------------------------------------------------------------------------------
def locate_dataset(options: TrainOptions, reporter: Reporter) -> Path:
    """--dataset, $CVPR_DATASET, the course folder, ./dataset; else the demo set, generated once."""
    found = find_dataset(options.dataset)
    if found is not None:
        return found
    root = config.DEMO_DATASET
    if demo.ensure(root, config.DEMO_IMAGES, config.DEMO_SEED):
        reporter.line(
            f"No course dataset found (--dataset, ${config.DATASET_ENV_VAR}, {config.COURSE_DATASET}, "
            f"./{config.LOCAL_DATASET}): generated the demo dataset in {root}"
        )
    else:
        reporter.line(f"No course dataset found: using the demo dataset in {root}")
    return root


def load_data(options: TrainOptions, reporter: Reporter, stop: StopOnSignal, resumed: Path | None) -> TrainingData:
    """The rows of each split and the decoded training and validation splits. A resumed run (its
    folder in ``resumed``) reads its own split files: it goes on with exactly the rows it began with."""
    root = locate_dataset(options, reporter)
    problems = Problems(skip=options.skip_bad_rows, strict=options.strict)
    rows = read_annotations(root, problems)
    classes = class_names(rows)
    if resumed is not None:
        splits = read_split_files(resumed, problems)
    else:
        if options.splits is not None:  # given split files, e.g. the template's output/
            splits = read_split_files(options.splits, problems)
            check_labels([row for part in splits.values() for row in part], classes, problems)
        else:
            splits = split_rows(rows, options.cut_val, options.cut_test, options.seed)
        splits["train"] = subsample(splits["train"], options.train_fraction, options.seed)
    for name in ("train", "val"):
        if not splits[name]:
            where = (
                f"--splits {options.splits}"
                if options.splits
                else f"--cut-val {options.cut_val} --cut-test {options.cut_test}"
            )
            raise TrainingError(f"{where}: the {name} split is empty; widen it")
    began = time.perf_counter()
    # one decode of every row, shared by the splits (and by later runs, from the cache file)
    cache = ImageCache.build(
        root,
        [row for part in splits.values() for row in part],
        options.image_size,
        problems,
        options.workers or 1,
        cache_folder() if options.cache else None,
        interrupt=stop.check,
    )
    train, val = (
        DetectionDataset(root, splits[name], classes, options.image_size, problems, cache=cache)
        for name in ("train", "val")
    )
    splits.update(train=train.rows, val=val.rows)  # rows skipped with --skip-bad-rows stay out of the split files
    for line in problems.lines():
        reporter.line(line)
    counts = ", ".join(f"{name} {len(part)}" for name, part in splits.items())
    how = "read from the cache" if cache.from_disk else "decoded"
    reporter.line(
        f"Dataset {root}: classes {', '.join(classes)}; splits: {counts}; images {how} at "
        f"{options.image_size} px in {time.perf_counter() - began:.1f} s"
    )
    return TrainingData(root, classes, splits, train, val)


# ----------------------------------------------------------------------------------------------
# 2. The network and its optimisation
# ----------------------------------------------------------------------------------------------
def make_optimizer(
    name: str, parameters: list[torch.nn.Parameter], lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(parameters, lr=lr, momentum=0.9, weight_decay=weight_decay)


def build(
    options: TrainOptions, data: TrainingData, device: torch.device, precision: Precision, resume: Checkpoint | None
) -> tuple[TrainingState, RunRecord]:
    """The training state (weights, optimizer, schedule, batch order), fresh or as ``resume`` left it,
    and the run record every checkpoint carries."""
    torch.manual_seed(options.seed)
    constructor = options.network_options
    model = build_model(
        options.model,
        len(data.classes),
        load_weights=resume is None,
        weights_path=str(options.weights) if options.weights else None,
        **constructor,
    )
    model = place_model(model, device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(options.optimizer, trainable, options.lr, options.weight_decay)
    schedule = LearningRate(options.lr_schedule, options.lr, options.epochs)
    state = TrainingState(
        model,
        optimizer,
        schedule,
        precision.grad_scaler(),
        torch.Generator().manual_seed(options.seed),
        build_augmenter(options.augment, options.seed),
    )
    facts = {**run_facts(data, device, model), "precision": precision.name}
    if resume is not None:
        state.progress = resume.resume_into(model, state.states, state.generator)
        previous = resume.facts
        facts = {**previous, "resumed": [*previous.get("resumed", []), facts]}
    record = RunRecord(
        options.model, constructor, data.classes, options.image_size, json.loads(options.to_json()), facts
    )
    return state, record


def run_facts(data: TrainingData, device: torch.device, model: torch.nn.Module) -> dict[str, Any]:
    """What a run cannot be re-created from its options alone: where, on what, with which versions."""
    total, trainable = count_parameters(model)
    return {
        "dataset": str(Path(data.root).resolve()),
        "classes": data.classes,
        "device": str(device),
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


def _json(values: dict[str, Any]) -> str:
    return json.dumps(values, indent=2, default=str) + "\n"


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
    train, val = place_splits([data.train, data.val], device)
    setup = Setup(
        device,
        precision,
        train,
        val,
        state.model,
        DetectionLoss(options.label_weight, options.box_weight, options.box_loss),
    )
    augment = f"; augmenting the training batches ({options.augment})" if state.augmenter is not None else ""
    reporter.line(f"Batches {train.describe()}; computing in {precision.name} on {device}{augment}")
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
    weights, running statistics, gradients and random states are left as they were."""
    import torch._inductor.config as inductor

    inductor.fallback_random = True  # dropout draws from torch's generator, as in eager mode: same masks, same run
    compiled = cast(torch.nn.Module, torch.compile(state.model, dynamic=False))
    weights = {k: v.clone() for k, v in state.model.state_dict().items()}
    rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    sizes = {(True, n) for n in {batch_size, len(setup.train) % batch_size} if n} | {
        (False, n) for n in {batch_size, len(setup.val) % batch_size} if n
    }
    try:
        for training, size in sorted(sizes):
            batch = next(setup.train.batches(size))
            x = network_batch(batch.images, setup.train, setup.channels_last)
            compiled.train(training)
            with torch.set_grad_enabled(training), setup.precision.autocast():
                logits, boxes = compiled(x)
            if training:
                (logits.float().sum() + (boxes.float().sum() if boxes is not None else 0)).backward()
    except Exception as error:  # inductor needs a C++ compiler (and Triton on CUDA); MPS is not supported
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise TrainingError(
            f"--compile: torch.compile cannot compile the model here ({reason}); train without --compile"
        ) from None
    finally:
        state.model.load_state_dict(weights)
        state.optimizer.zero_grad(set_to_none=True)
        torch.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
    return compiled


# ----------------------------------------------------------------------------------------------
# 3. Start
# ----------------------------------------------------------------------------------------------
def start(
    folder: Path, previous: list[Path], record: RunRecord, data: TrainingData, state: TrainingState, reporter: Reporter
) -> None:
    """A new run's files: the split files, config.json, run.json and a last.pth resumable from epoch 0.
    With --overwrite, the previous run's files go only now that this run has its data and network."""
    for path in previous:
        path.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    for name, filename in config.SPLIT_FILES.items():
        write_rows(folder / filename, data.splits[name])
    write_text(folder / config.CONFIG_FILE, _json(record.options))
    write_text(folder / config.RUN_FILE, _json(record.facts))
    save_checkpoint(
        folder / config.LAST_CHECKPOINT,
        training_payload(record, state.model, state.progress, {}, state.states, state.generator),
    )
    facts, options = record.facts, record.options
    reporter.line(
        f"Training {record.model_name} ({facts['parameters']:,} parameters, "
        f"{facts['trainable_parameters']:,} trainable) on {facts['device']} for {options['epochs']} "
        f"epochs, batch {options['batch_size']}, lr {options['lr']:g}; writing to {folder}"
    )


# ----------------------------------------------------------------------------------------------
# 4. The epochs
# ----------------------------------------------------------------------------------------------
def run_epochs(
    options: TrainOptions,
    folder: Path,
    record: RunRecord,
    data: TrainingData,
    state: TrainingState,
    setup: Setup,
    reporter: Reporter,
    stop: StopOnSignal,
) -> None:
    """Train and validate each remaining epoch, recording each; early stopping after --patience."""
    batches = setup.train.num_batches(options.batch_size) + setup.val.num_batches(options.batch_size)
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
                train = train_one_epoch(
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
                val, _ = evaluate(
                    setup.forward,
                    setup.val,
                    setup.loss_fn,
                    options.batch_size,
                    setup.precision,
                    setup.channels_last,
                    advance,
                )
                if not (math.isfinite(train.loss) and math.isfinite(val.loss)):
                    raise TrainingError(
                        f"epoch {epoch}: the loss is not finite (train {train.loss}, val {val.loss}); lower --lr "
                        f"(now {options.lr:g}) or --box-weight; the checkpoints of epoch {epoch - 1} in {folder} "
                        f"are kept"
                    )
                state.schedule.observe(val.loss)
                is_best = record_epoch(folder, record, data, state, history_row(epoch, train, val, lr))
                reporter.line(epoch_line(state.progress.history[-1], options.epochs, is_best))
                if options.patience and state.progress.stale_epochs >= options.patience:
                    reporter.line(f"Early stopping: no better validation accuracy for {options.patience} epochs")
                    break
        except Interrupted as interrupt:
            last = folder / config.LAST_CHECKPOINT
            reporter.line(
                f"Interrupted by {interrupt} during epoch {epoch}: {last} holds epochs 1-{epoch - 1} with "
                f"everything needed to go on. Resume with: python train.py --resume {last}"
            )
            raise


def history_row(epoch: int, train: EpochStats, val: EpochStats, lr: float) -> dict[str, float]:
    return {
        "epoch": epoch,
        **train.as_dict("train"),
        **val.as_dict("val"),
        "seconds": train.seconds + val.seconds,
        "lr": lr,
    }


def record_epoch(
    folder: Path, record: RunRecord, data: TrainingData, state: TrainingState, row: dict[str, float]
) -> bool:
    """Add the epoch to the progress and write it out: best.pth when it is the best so far, then
    last.pth, history.csv and the convergence plot. Returns whether it is the best."""
    progress = state.progress
    progress.epoch = int(row["epoch"])
    progress.history.append(row)
    is_best = improves(row["val_accuracy"], row["val_loss"], progress.best)
    if is_best:
        progress.best = {"epoch": progress.epoch, "val_accuracy": row["val_accuracy"], "val_loss": row["val_loss"]}
        save_checkpoint(folder / config.BEST_CHECKPOINT, model_payload(record, state.model, progress.epoch, row))
    progress.stale_epochs = 0 if is_best else progress.stale_epochs + 1
    save_checkpoint(
        folder / config.LAST_CHECKPOINT,
        training_payload(record, state.model, progress, row, state.states, state.generator),
    )
    write_history(folder / config.HISTORY_FILE, progress.history)
    convergence_plot(progress.history, folder / config.PLOT_FILE, f"{record.model_name} on {Path(data.root).name}")
    return is_best


def write_history(path: Path, history: list[dict[str, float]]) -> None:
    with atomic_path(path) as tmp:
        pd.DataFrame(history, columns=list(HISTORY_COLUMNS)).to_csv(tmp, index=False, na_rep="nan")


def epoch_line(row: dict[str, float], epochs: int, is_best: bool) -> str:
    def iou(value: float) -> str:
        return "" if math.isnan(value) else f" iou {value:.3f}"

    return (
        f"epoch {int(row['epoch']):>3}/{epochs}  train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.3f}"
        f"{iou(row['train_iou'])} | val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.3f}"
        f"{iou(row['val_iou'])} | {row['seconds']:.1f} s lr {row['lr']:.2e}{'  *best*' if is_best else ''}"
    )
