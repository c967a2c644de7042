"""Train a detector (class + box) on the course dataset, or on the demo dataset when none is found.

Writes into the run folder (output/, or output/NAME/ with --name): best.pth, last.pth,
history.csv, convergence_plot.png, config.json and the split files training_data.csv,
val_data.csv, test_data.csv.
"""
from __future__ import annotations

import csv
import json
import math
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import torch
import torchvision

from model import config
from model.cache import ImageCache, cache_folder
from model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from model.dataset import (DataError, DetectionDataset, Problems, check_labels, class_names, read_annotations,
                           read_split_files, resolve_dataset, split_rows, subsample, write_rows)
from model.files import atomic_path, holds_data, write_text
from model.engine import BOX_LOSSES, DEFAULT_BOX_LOSS, DetectionLoss, EpochStats, evaluate, train_one_epoch
from model.network import MODEL_NAMES, WeightsError, build_model, count_parameters, min_image_size, model_options
from model.plots import convergence_plot
from model.runtime import (DEVICES, Interrupted, Reporter, StopOnSignal, prepare_device, select_device, slurm_facts,
                           usable_cpus, uses_channels_last)

OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("none", "cosine", "plateau")
HISTORY_COLUMNS = ("epoch", "train_loss", "train_class_loss", "train_box_loss", "train_accuracy", "train_iou",
                   "val_loss", "val_class_loss", "val_box_loss", "val_accuracy", "val_iou", "seconds", "lr")


class TrainingError(Exception):
    """Training cannot go on (e.g. the loss diverged); the message is one line."""


# ----------------------------------------------------------------------------------------------
# Stages
# ----------------------------------------------------------------------------------------------
def run_folder(output_dir: Path, name: str | None) -> Path:
    return Path(output_dir) / name if name else Path(output_dir)


RUN_FILES = (config.BEST_CHECKPOINT, config.LAST_CHECKPOINT, config.HISTORY_FILE, config.PLOT_FILE,
             config.CONFIG_FILE, *config.SPLIT_FILES.values())


def check_run_folder(run_dir: Path, overwrite: bool) -> list[Path]:
    """The previous run's files that this run will replace; refuses a folder holding data (a
    dataset, web_images/) and, without --overwrite, a folder holding a run."""
    data = holds_data(run_dir)
    if data is not None:
        raise click.ClickException(f"{run_dir} holds data ({data}) that train.py did not write: a run goes into a "
                                   f"folder of its own; choose another --output-dir or --name")
    previous = [run_dir / f for f in RUN_FILES if (run_dir / f).exists()]
    previous += sorted(run_dir.glob("eval_*")) if previous else []  # eval.py's files about that run
    checkpoints = [p.name for p in previous if p.suffix == ".pth"]
    if previous and not overwrite:
        raise click.ClickException(
            f"{run_dir} already holds a run ({', '.join(checkpoints or [p.name for p in previous][:3])}): pass "
            f"--name NEW to keep both, or --overwrite to replace it")
    return previous


def load_data(options: dict[str, Any], reporter: Reporter, resume: dict | None, run_dir: Path,
              stop: StopOnSignal) -> tuple[Path, list[str], dict, dict]:
    """Dataset root, class names, split rows and decoded train/val datasets.

    A resumed run reads its own split files, so it goes on with exactly the rows it started with.
    """
    root = resolve_dataset(options["dataset"], log=reporter.line)
    problems = Problems(skip=options["skip_bad_rows"], strict=options["strict"])
    if resume is None:
        rows = read_annotations(root, problems)
        classes = class_names(rows)
        if options["splits"] is not None:  # given split files, e.g. the template's output/
            splits = read_split_files(options["splits"], problems)
            check_labels([row for part in splits.values() for row in part], classes, problems)
        else:
            splits = split_rows(rows, options["cut_val"], options["cut_test"], options["seed"])
        splits["train"] = subsample(splits["train"], options["train_fraction"], options["seed"])
        rows = [row for part in splits.values() for row in part]
    else:
        classes = resume["classes"]
        splits = read_split_files(run_dir, problems)
        rows = [row for part in splits.values() for row in part]
    for name in ("train", "val"):
        if not splits[name]:
            where = f"--splits {options['splits']}" if options.get("splits") else \
                f"--cut-val {options['cut_val']} --cut-test {options['cut_test']}"
            raise click.ClickException(f"{where}: the {name} split is empty; widen it")
    start = time.perf_counter()
    # one decode of the whole dataset, shared by the splits (and by later runs, from the cache file)
    cache = ImageCache.build(root, rows, options["image_size"], problems, options["workers"],
                             cache_folder() if options.get("cache", True) else None, interrupt=stop.check)
    datasets = {name: DetectionDataset(root, splits[name], classes, options["image_size"], problems, cache=cache)
                for name in ("train", "val")}
    for name, dataset in datasets.items():
        splits[name] = dataset.rows  # bad rows skipped with --skip-bad-rows stay out of the split files
    for line in (problems.summary(), problems.warning()):
        if line:
            reporter.line(line)
    counts = ", ".join(f"{name} {len(rows)}" for name, rows in splits.items())
    how = "read from the cache" if cache.from_disk else "decoded"
    reporter.line(f"Dataset {root}: classes {', '.join(classes)}; splits: {counts}; images {how} at "
                  f"{options['image_size']} px in {time.perf_counter() - start:.1f} s")
    return root, classes, splits, datasets


def make_optimizer(name: str, parameters, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(parameters, lr=lr, momentum=0.9, weight_decay=weight_decay)


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


def improves(accuracy: float, loss: float, best: dict | None) -> bool:
    """Best = highest validation accuracy; equal accuracy: lower validation loss (Part 1 Q6)."""
    if best is None:
        return True
    return accuracy > best["val_accuracy"] or (accuracy == best["val_accuracy"] and loss < best["val_loss"])


def history_row(epoch: int, train: EpochStats, val: EpochStats, lr: float) -> dict[str, float]:
    return {"epoch": epoch, **train.as_dict("train"), **val.as_dict("val"),
            "seconds": train.seconds + val.seconds, "lr": lr}


def write_history(path: Path, history: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HISTORY_COLUMNS)
        writer.writeheader()
        writer.writerows(history)


def epoch_line(row: dict, epochs: int, is_best: bool) -> str:
    iou = lambda v: "" if math.isnan(v) else f" iou {v:.3f}"  # noqa: E731
    return (f"epoch {row['epoch']:>3}/{epochs}  train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.3f}"
            f"{iou(row['train_iou'])} | val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.3f}"
            f"{iou(row['val_iou'])} | {row['seconds']:.1f} s lr {row['lr']:.2e}{'  *best*' if is_best else ''}")


@dataclass
class Run:
    """What a checkpoint records about the run, besides the weights."""

    model_name: str
    model_options: dict
    classes: list[str]
    image_size: int
    config: dict
    history: list[dict] = field(default_factory=list)
    best: dict | None = None

    def payload(self, model: torch.nn.Module, epoch: int, metrics: dict) -> dict[str, Any]:
        return {
            "model": {"name": self.model_name, "options": self.model_options},
            "classes": self.classes, "image_size": self.image_size,
            "normalization": {"mean": list(config.IMAGENET_MEAN), "std": list(config.IMAGENET_STD)},
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "epoch": epoch, "metrics": metrics, "config": self.config, "splits": dict(config.SPLIT_FILES),
        }


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Every random state training draws from: dropout (global) and the batch order (generator)."""
    state = {"torch": torch.get_rng_state(), "batches": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"].cpu())
    generator.set_state(state["batches"].cpu())
    if "cuda" in state and torch.cuda.is_available():  # as many GPUs as this node has (it may have fewer)
        for index, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state.cpu(), index)


def run_info(root: Path, classes: list[str], device: torch.device, total: int, trainable: int) -> dict[str, Any]:
    return {"dataset": str(Path(root).resolve()), "classes": classes, "device": str(device), "parameters": total,
            "trainable_parameters": trainable, "torch": str(torch.__version__), "torchvision": str(torchvision.__version__),
            "python": platform.python_version(), "host": platform.node(), "slurm": slurm_facts(),
            "command": " ".join(sys.argv), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}


def fit(options: dict[str, Any], reporter: Reporter, resume: dict | None = None, run_dir: Path | None = None) -> Path:
    """The whole run (or the rest of a resumed one, from ``resume``, a last.pth); returns the run folder."""
    device = select_device(options["device"])
    prepare_device(device)
    previous: list[Path] = []
    if run_dir is None:
        run_dir = run_folder(options["output_dir"], options["name"])
        previous = check_run_folder(run_dir, options["overwrite"])
    torch.manual_seed(options["seed"])
    with StopOnSignal() as stop:  # a signal while the images decode stops the run before it writes anything
        try:
            root, classes, splits, datasets = load_data(options, reporter, resume, run_dir, stop)
        except Interrupted as interrupt:
            reporter.line(f"Interrupted by {interrupt} while reading the dataset: nothing was written")
            raise

    model_name = options["model"]
    opts = model_options(model_name, options["box_head"], options["dropout"], options["batchnorm"],
                         options["pretrained"], options["freeze"], options["image_size"])
    construct = dict(opts)
    if model_name == "resnet":  # a resumed run has its weights: no ImageNet download
        construct.update(pretrained=opts["pretrained"] and resume is None, weights_path=options["weights"])
    model = build_model(model_name, len(classes), **construct)
    channels_last = uses_channels_last(device)
    model = model.to(device, memory_format=torch.channels_last) if channels_last else model.to(device)
    total, trainable = count_parameters(model)
    trainable_parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(options["optimizer"], trainable_parameters, options["lr"], options["weight_decay"])
    schedule = LearningRate(options["lr_schedule"], options["lr"], options["epochs"])
    loss_fn = DetectionLoss(options["label_weight"], options["box_weight"], options["box_loss"])
    generator = torch.Generator().manual_seed(options["seed"])

    if resume is None:
        for path in previous:  # --overwrite: the previous run's files go only once this one can start
            path.unlink()
        run_dir.mkdir(parents=True, exist_ok=True)
        for name, filename in config.SPLIT_FILES.items():
            write_rows(run_dir / filename, splits[name])
        resolved = {**{k: v for k, v in options.items() if k != "overwrite"},
                    "run": run_info(root, classes, device, total, trainable)}
        first_epoch, stale_epochs = 1, 0
    else:
        model.load_state_dict(resume["state_dict"])
        optimizer.load_state_dict(resume["optimizer"])
        if resume.get("schedule"):
            schedule.load_state_dict(resume["schedule"])
        resolved = {**resume["config"], "epochs": options["epochs"]}
        resolved["run"].setdefault("resumed", []).append(run_info(root, classes, device, total, trainable))
        first_epoch, stale_epochs = resume["epoch"] + 1, resume["stale_epochs"]
    text = json.dumps(resolved, indent=2, default=str) + "\n"
    resolved = json.loads(text)  # plain values only: checkpoints must load with weights_only=True
    write_text(run_dir / config.CONFIG_FILE, text)
    run = Run(model_name, opts, classes, options["image_size"], resolved)
    if resume is not None:
        run.history, run.best = list(resume["history"]), resume["best"]
        restore_rng(resume["rng"], generator)

    def save_last(epoch: int, metrics: dict) -> None:
        """Everything needed to go on after ``epoch`` exactly as if never stopped."""
        last = run.payload(model, epoch, metrics)
        last.update(optimizer=optimizer.state_dict(), schedule=schedule.state_dict(),
                    rng=rng_state(generator), history=run.history, best=run.best, stale_epochs=stale_epochs)
        save_checkpoint(run_dir / config.LAST_CHECKPOINT, last)

    epochs, batch_size = options["epochs"], options["batch_size"]
    if resume is None:
        save_last(0, {})  # resumable from the very start
        reporter.line(f"Training {model_name} ({total:,} parameters, {trainable:,} trainable) on {device} for "
                      f"{epochs} epochs, batch {batch_size}, lr {options['lr']:g}; writing to {run_dir}")
    else:
        reporter.line(f"Resuming {run_dir} after epoch {first_epoch - 1} of {epochs} on {device}")
    epoch = first_epoch
    with StopOnSignal() as stop, reporter.progress() as start_bar:
        try:
            for epoch in range(first_epoch, epochs + 1):
                stop.check()
                advance_bar = start_bar(f"epoch {epoch}/{epochs}", datasets["train"].num_batches(batch_size)
                                        + datasets["val"].num_batches(batch_size))

                def advance() -> None:
                    advance_bar()
                    stop.check()  # a signal abandons the epoch; last.pth holds the previous one

                lr = schedule.at(epoch)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                train = train_one_epoch(model, datasets["train"], loss_fn, optimizer, device, batch_size, generator,
                                        channels_last, advance)
                val, _ = evaluate(model, datasets["val"], loss_fn, device, batch_size, channels_last, advance)
                if not (math.isfinite(train.loss) and math.isfinite(val.loss)):
                    raise TrainingError(
                        f"epoch {epoch}: the loss is not finite (train {train.loss}, val {val.loss}); lower --lr "
                        f"(now {options['lr']:g}) or --box-weight; the checkpoints of epoch {epoch - 1} in "
                        f"{run_dir} are kept")
                schedule.observe(val.loss)
                row = history_row(epoch, train, val, lr)
                run.history.append(row)
                is_best = improves(val.accuracy, val.loss, run.best)
                if is_best:
                    run.best = {"epoch": epoch, "val_accuracy": val.accuracy, "val_loss": val.loss}
                    save_checkpoint(run_dir / config.BEST_CHECKPOINT, run.payload(model, epoch, row))
                stale_epochs = 0 if is_best else stale_epochs + 1
                save_last(epoch, row)
                write_history(run_dir / config.HISTORY_FILE, run.history)
                convergence_plot(run.history, run_dir / config.PLOT_FILE, f"{model_name} on {Path(root).name}")
                reporter.line(epoch_line(row, epochs, is_best))
                if options["patience"] and stale_epochs >= options["patience"]:
                    reporter.line(f"Early stopping: no better validation accuracy for {stale_epochs} epochs")
                    break
        except Interrupted as interrupt:
            last = run_dir / config.LAST_CHECKPOINT
            reporter.line(f"Interrupted by {interrupt} during epoch {epoch}: {last} holds epochs 1-{epoch - 1} with "
                          f"everything needed to go on. Resume with: python train.py --resume {last}")
            raise
    best = run.best
    reporter.line(f"Best epoch {best['epoch']}: val accuracy {best['val_accuracy']:.4f}, val loss "
                  f"{best['val_loss']:.4f}. Evaluate it with: python eval.py {run_dir / config.BEST_CHECKPOINT}")
    return run_dir


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------
def load_config_file(ctx: click.Context, _param, value: Path | None):
    """--config FILE: its values become the defaults; options given on the command line win."""
    if value is None:
        return None
    try:
        values = json.loads(Path(value).read_text())
    except (OSError, ValueError) as error:
        raise click.BadParameter(f"{value}: not a readable JSON file ({error})") from None
    if not isinstance(values, dict):
        raise click.BadParameter(f"{value}: expected a JSON object of option names and values")
    values.pop("run", None)  # facts recorded by a previous run, not options
    known = {p.name for p in ctx.command.params} - {"config"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise click.BadParameter(f"{value}: unknown option(s) {', '.join(unknown)}")
    ctx.default_map = {**(ctx.default_map or {}), **values}
    return value


@click.command(context_settings={"show_default": True, "max_content_width": 110})
@click.option("--config", type=click.Path(exists=True, dir_okay=False, path_type=Path), callback=load_config_file,
              is_eager=True, expose_value=False, help="JSON file of options (e.g. a run's config.json) to re-run.")
@click.option("--model", type=click.Choice(MODEL_NAMES), default="simple", help="Network to train.")
@click.option("--epochs", type=click.IntRange(min=1), default=config.NUM_EPOCHS)
@click.option("--batch-size", type=click.IntRange(min=1), default=config.BATCH_SIZE)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=config.INIT_LR, help="Learning rate.")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default="adam", help="sgd uses momentum 0.9.")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=0.0)
@click.option("--lr-schedule", type=click.Choice(LR_SCHEDULES), default="none",
              help="cosine: from --lr towards 0 at the last epoch (re-planned when --resume adds epochs); plateau: "
                   "halve after 3 epochs in a row without a lower val loss.")
@click.option("--label-weight", type=click.FloatRange(min=0), default=config.LABEL_WEIGHT,
              help="Weight of the cross-entropy term.")
@click.option("--box-weight", type=click.FloatRange(min=0), default=config.BOX_WEIGHT,
              help="Weight of the box term.")
@click.option("--box-loss", type=click.Choice(BOX_LOSSES), default=DEFAULT_BOX_LOSS, help="Box regression loss.")
@click.option("--box-head/--no-box-head", default=True, help="--no-box-head: classification only (Parts 1-2).")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.5,
              help="Dropout of the classification head; 0 removes it (Part 1 Q9.2).")
@click.option("--batchnorm/--no-batchnorm", default=True, help="BatchNorm after each conv (not resnet).")
@click.option("--pretrained/--no-pretrained", default=True, help="resnet: start from ImageNet weights.")
@click.option("--freeze/--fine-tune", default=None,
              help="resnet: keep the backbone fixed, or train it too  [default: freeze when --pretrained]")
@click.option("--weights", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="resnet: ImageNet weights file, for machines that cannot download them.")
@click.option("--cut-val", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=config.CUT_VAL,
              help="Share of the shuffled rows that trains.")
@click.option("--cut-test", type=click.FloatRange(0, 1, min_open=True), default=config.CUT_TEST,
              help="Rows between --cut-val and this share validate; the rest test.")
@click.option("--train-fraction", type=click.FloatRange(0, 1, min_open=True), default=1.0,
              help="Keep this share of the training split, per class (Part 1 Q9.1).")
@click.option("--seed", type=int, default=config.SPLIT_SEED, help="Seeds the split, the weights and the batches.")
@click.option("--device", type=click.Choice(DEVICES), default="auto", help="auto: cuda, then mps, then cpu.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Threads decoding images  [default: CPU affinity, capped by SLURM_CPUS_PER_TASK]")
@click.option("--image-size", type=click.IntRange(min=32), default=config.IMAGE_SIZE, help="Network input side.")
@click.option("--dataset", type=click.Path(path_type=Path), default=None,
              help=f"Dataset folder  [default: ${config.DATASET_ENV_VAR}, {config.COURSE_DATASET}, ./dataset, "
                   f"else the generated demo set]")
@click.option("--skip-bad-rows", is_flag=True, help="Skip bad annotation rows and images instead of stopping.")
@click.option("--strict", is_flag=True,
              help="Stop on odd rows too (a box of zero width or height, a box clipped to the border), which are "
                   "otherwise kept with a warning.")
@click.option("--splits", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Use the split files of this folder (training_data.csv, val_data.csv, test_data.csv: a run "
                   "folder, or the course template's output/) instead of drawing a split.")
@click.option("--cache/--no-cache", default=True,
              help=f"Keep the decoded images in {config.CACHE_DIR.relative_to(config.PROJECT_ROOT)}/ (or "
                   f"${config.CACHE_ENV_VAR}) for later runs.")
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), default=config.OUTPUT_DIR)
@click.option("--name", default=None, help="Write into OUTPUT_DIR/NAME/ to keep runs apart.")
@click.option("--patience", type=click.IntRange(min=0), default=0,
              help="Stop after this many epochs without a better model; 0: never.")
@click.option("--overwrite", is_flag=True, help="Replace a previous run in the same folder.")
@click.option("--resume", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Go on with the run of this last.pth up to its planned epochs (with --epochs: more).")
def main(**options: Any) -> None:
    """Train a detector.

    \b
    python train.py                                   # Simple network, template settings
    python train.py --model resnet --fine-tune --name resnet_ft
    python train.py --cut-val 0.05 --cut-test 0.25 --name small   # Part 1 Q9.1
    python train.py --dropout 0 --no-batchnorm --epochs 200 --name plain
    python train.py --config output/plain/config.json --name plain_again
    srun --gres=shard:1 --cpus-per-task=8 --mem=12GB python train.py --model vgg --name vgg
    python train.py --resume output/vgg/last.pth      # after a time limit, preemption or Ctrl-C
    """
    ctx = click.get_current_context()
    if options["resume"] is not None:
        resume_run(ctx, options)
        return
    if options["cut_val"] >= options["cut_test"]:
        raise click.BadParameter(f"must be below --cut-test ({options['cut_test']})", ctx, param_hint="--cut-val")
    if options["splits"] is not None:
        given = [f"--{name.replace('_', '-')}" for name in ("cut_val", "cut_test")
                 if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE]
        if given:
            raise click.UsageError(f"--splits uses the split files as they are; {' and '.join(given)} cannot apply")
    smallest = min_image_size(options["model"])
    if options["image_size"] < smallest:
        raise click.BadParameter(f"{options['image_size']} is too small for --model {options['model']} (at least "
                                 f"{smallest} px)", ctx, param_hint="--image-size")
    if options["model"] != "resnet":
        for flag, key in (("--weights", "weights"), ("--no-pretrained", "pretrained"), ("--freeze/--fine-tune", "freeze")):
            source = ctx.get_parameter_source(key)
            if source is click.core.ParameterSource.COMMANDLINE:
                raise click.UsageError(f"{flag} applies to --model resnet only (got --model {options['model']})")
    if options["freeze"] is None:
        options["freeze"] = options["pretrained"]
    if options["workers"] is None:
        options["workers"] = usable_cpus()
    run_guarded(options)


def run_guarded(options: dict[str, Any], resume: dict | None = None, run_dir: Path | None = None) -> None:
    """fit(), with errors as one line and exit status 1, and signals as exit status 128 + signal."""
    try:
        fit(options, Reporter(), resume, run_dir)
    except (DataError, WeightsError, CheckpointError, TrainingError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    except Interrupted as interrupt:
        sys.exit(128 + interrupt.signum)


RESUME_OVERRIDES = ("epochs", "device", "workers", "dataset")


def resume_run(ctx: click.Context, options: dict[str, Any]) -> None:
    """--resume PATH: the run's own options, but for --epochs, --device, --workers, --dataset."""
    path = options["resume"]
    given = [name for name in ctx.params if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE]
    if ctx.default_map:  # --config FILE filled the defaults: they would be silently ignored
        raise click.UsageError("--config and --resume cannot go together: --resume goes on with the run's own options")
    extra = sorted(set(given) - {"resume", *RESUME_OVERRIDES})
    if extra:
        raise click.UsageError(f"--resume goes on with the run's own options; only {', '.join('--' + o for o in RESUME_OVERRIDES)} "
                               f"may be given with it (got --{', --'.join(n.replace('_', '-') for n in extra)})")
    try:
        checkpoint = load_checkpoint(path)
    except CheckpointError as error:
        raise click.ClickException(str(error)) from None
    if "optimizer" not in checkpoint or "rng" not in checkpoint:
        raise click.ClickException(f"--resume {path}: holds no training state (a best.pth?); resume from the run's last.pth")
    resumed = {k: v for k, v in checkpoint["config"].items() if k != "run"}
    resumed.update(dataset=Path(checkpoint["config"]["run"]["dataset"]), weights=None, workers=usable_cpus())
    resumed.setdefault("strict", False)  # options a run of an earlier version did not record
    resumed.setdefault("splits", None)
    resumed.update({k: options[k] for k in RESUME_OVERRIDES if k in given})
    if checkpoint["epoch"] >= resumed["epochs"]:  # nothing left: resubmitting a finished job is no error
        click.echo(f"{path}: the run already finished its {resumed['epochs']} epochs; nothing to do (pass --epochs N, "
                   f"more than {checkpoint['epoch']}, to train longer)")
        return
    run_guarded(resumed, checkpoint, Path(path).parent)


if __name__ == "__main__":
    main()
