"""Train a detector (class + box) on the course dataset, or on the demo dataset when none is found.

The run, top to bottom, is ``main``: its options (model/options.py), the data (model/dataset.py), the network
(model/network.py), the optimizer, the loss and the learning rate, then the epoch loop: ``train_one_epoch`` and
``evaluate`` (model/engine.py), then ``save_epoch``: the best model (highest validation accuracy, then lowest
validation loss), the last one, history.csv and the convergence plot. Writes into output/ (or output/NAME/):
best.pth, last.pth, history.csv, convergence_plot.png, config.json (the options), run.json (the dataset and its
fingerprint, the device, versions), the split files training_data.csv, val_data.csv, test_data.csv, and
manifest.json (the toolkit's files there).
"""

from __future__ import annotations

import gc
import json
import math
import platform
import sys
import time
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import click
import torch

from model import config, env
from model.annotations import write_rows_text
from model.augment import POLICIES, Augmenter
from model.dataset import TrainingData, drawn_by, load_splits, read_splits
from model.device import (
    Interrupted,
    Precision,
    Reporter,
    channels_last,
    place_model,
    prepare_device,
    resolve_precision,
    select_device,
    stop_on_signals,
    usable_cpus,
    why_no_cuda,
)
from model.engine import (
    Compute,
    EpochStats,
    LearningRate,
    evaluate,
    loss_for,
    make_optimizer,
    place_splits,
    train_one_epoch,
)
from model.errors import UserError
from model.network import build_model, count_parameters
from model.options import FIELDS, TrainOptions, at_tiny_scale, check, checked, flag, of, path_type, train_options
from model.runs import Checkpoint, CheckpointError, Run, RunRecord, RunWriter, checkpoint_bytes, history_bytes, improves

RESUME_OVERRIDES = ("epochs", "device", "workers", "dataset", "precision", "compile")  # what --resume may change
PLOT_INTERVAL = 20.0  # seconds between two drawings of the plot (always drawn after the last epoch)


@click.command(context_settings={"show_default": True, "max_content_width": 110})
@train_options
@click.option(
    "--overwrite", is_flag=True, help="Replace the run in the same folder (kept until the new one's first epoch)."
)
@click.option("--resume", type=path_type("file"), help="Go on with the run of this last.pth (with --epochs: longer).")
@click.option(
    "--resume-if-started",
    is_flag=True,
    help="Start the run, or go on with it when its folder already holds it (the same options): what a resubmitted "
    "Slurm job wants. A finished run has nothing to do.",
)
@click.pass_context
def main(ctx: click.Context, overwrite: bool, resume: Path | None, resume_if_started: bool, **_options: Any) -> None:
    """Train a detector.

    \b
    python train.py                                          # Simple network, template settings
    python train.py --no-box-head                            # Part 1: classification only
    python train.py --model resnet --fine-tune --name resnet_ft
    python train.py --no-box-head --dropout 0 --no-batchnorm --epochs 200 --name plain
    python train.py --config output/plain/config.json --name plain_again
    srun --gres=shard:1 --cpus-per-task=8 --mem=12GB python train.py --model vgg --name vgg
    python train.py --resume output/vgg/last.pth             # after a time limit, preemption or Ctrl-C
    """
    with checked():
        options, resumed = run_options(ctx, resume, resume_if_started)
        if resumed is not None and resumed.epoch >= options.epochs:  # a resubmitted finished job: no error
            click.echo(f"{resumed.path}: the run has trained its {resumed.epoch} epochs; nothing to do")
            return
        report, training = Reporter(), None
        run = Run(resumed.path.parent if resumed else options.run_dir)
        rows = read_splits(options, report.line, resumed)  # the data checked, before a write
        with stop_on_signals() as stop, run.writer("train.py", new=resumed is None, replace=overwrite) as writer:
            try:
                data = load_splits(options, rows, report.line, stop)
                training = Training.start(options, data, resumed, report)  # network, optimizer, loss, batches
                begin(writer, training, data, report)  # the split files, config.json, run.json
                tick = report.ticking(stop)  # a signal stops the epoch at its next batch
                for epoch in range(training.epoch + 1, options.epochs + 1):
                    lr = training.set_epoch(epoch)
                    report.start(f"epoch {epoch}/{options.epochs}", training.batches_per_epoch())
                    running = train_one_epoch(*training.train_args(), on_batch=tick)
                    measured = [
                        evaluate(training.model, split, training.loss_fn, training.compute, tick)[0] if split else None
                        for split in (training.train_eval, training.val)
                    ]
                    row = history_row(epoch, running, *measured, lr, training.cpu_started)
                    is_best = save_epoch(writer, training, row)  # best.pth, last.pth, history.csv, the plot
                    report.line(epoch_line(row, options.epochs, is_best))
                    if training.stopping_early():
                        report.line(f"Early stopping: no better validation accuracy for {options.patience} epochs")
                        break
            except Interrupted as interrupt:
                report.line(interrupted(interrupt, writer, training))
                sys.exit(128 + interrupt.signum)
            finally:
                report.stop()
        best = training.best or {}
        report.line(
            f"Best epoch {best['epoch']}: val accuracy {best['val_accuracy']:.4f}, val loss {best['val_loss']:.4f}. "
            f"Evaluate it with: python eval.py {run.checkpoint_path('best')}"
        )


def run_options(
    ctx: click.Context, resume: Path | None, resume_if_started: bool
) -> tuple[TrainOptions, Checkpoint | None]:
    """The run's options, checked once: the command line's (and --config's); or, to go on with a run, its own,
    but for what --resume lets a run change."""
    resumed = None
    if resume is not None:
        given = {n for n in ctx.params if ctx.get_parameter_source(n) is click.core.ParameterSource.COMMANDLINE}
        if ctx.meta.get("config"):
            raise click.UsageError(
                "--config and --resume do not go together: --resume goes on with the run's own options"
            )
        extra = sorted(given - {"resume", *RESUME_OVERRIDES})
        if extra:
            shown = ", ".join(flag(n, ctx.params[n]) if n in FIELDS else "--" + n.replace("_", "-") for n in extra)
            raise click.UsageError(
                f"--resume goes on with the run's own options; only {', '.join('--' + o for o in RESUME_OVERRIDES)} "
                f"may be given with it (got {shown})"
            )
        resumed = Checkpoint(resume)
        if not resumed.is_resumable:
            raise CheckpointError(f"--resume {resume}: holds no training state (a best.pth?); resume from its last.pth")
        check_config_unchanged(resumed)
        options = replace(resumed.options, dataset=resumed.dataset, weights=None, workers=None)
        options = replace(options, **{n: ctx.params[n] for n in RESUME_OVERRIDES if n in given})
        if options.epochs < resumed.epoch:
            raise UserError(
                f"--epochs {options.epochs}: {resume} has trained {resumed.epoch} epochs already; pass --epochs above "
                f"{resumed.epoch} to train longer, or drop --epochs"
            )
    else:
        options = of(ctx)
        if resume_if_started:
            resumed = started_run(options)
    warnings = check(options)
    if (tiny := at_tiny_scale(options)) != options:
        warnings.append(f"${env.TINY}=1: training {tiny.epochs} epoch at {tiny.image_size} px (doc/troubleshooting.md)")
    for line in warnings:
        click.echo(line)
    if resumed is None:
        Run(tiny.run_dir).check_place(tiny.output_dir)
    return tiny, resumed


def started_run(options: TrainOptions) -> Checkpoint | None:
    """--resume-if-started: the last.pth of the run in the options' folder when it holds one of the same options."""
    run = Run(options.run_dir)
    if run.status().state == "missing":
        return None
    checkpoint = run.checkpoint("last")
    differs = checkpoint.options.differences(options)
    if differs:
        shown = ", ".join(
            f"{flag(n)} {getattr(checkpoint.options, n)!r} (now {getattr(options, n)!r})" for n in differs[:3]
        )
        raise UserError(
            f"--resume-if-started: {run.folder} holds a run trained with other options ({shown}); pass --name NEW, or "
            "--overwrite to replace it"
        )
    return checkpoint


def check_config_unchanged(checkpoint: Checkpoint) -> None:
    """A config.json edited by hand says options the resumed run would not train with: refused, not ignored."""
    path = checkpoint.path.parent / config.CONFIG_FILE
    if not path.exists():
        return
    try:
        written = TrainOptions.from_dict(json.loads(path.read_text(encoding="utf-8")), str(path))
    except (OSError, ValueError, UserError):
        raise UserError(f"{path}: not the config.json train.py wrote (edited?); restore it to resume the run") from None
    differs = written.differences(checkpoint.options)
    if differs:
        shown = ", ".join(f"{flag(n)} {getattr(written, n)!r}" for n in differs[:3])
        raise UserError(
            f"{path}: says {shown}, but the run trained with "
            f"{', '.join(repr(getattr(checkpoint.options, n)) for n in differs[:3])}: --resume goes on with the run's "
            f"own options; restore config.json, or train a new run with --config {path} --name NEW"
        )


@dataclass
class Training:
    """Everything training changes (what last.pth saves to resume it exactly), and how it computes."""

    options: TrainOptions
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: LearningRate
    scaler: torch.amp.GradScaler  # fp16's loss scale (a pass-through in fp32 and bf16)
    generator: torch.Generator  # the batch order
    augmenter: Augmenter | None
    compute: Compute
    record: RunRecord
    splits: list  # the training, validation (and training-sample) batches on the device
    epoch: int = 0  # the last finished epoch
    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, float] | None = None  # epoch, val_accuracy, val_loss of the best epoch
    stale_epochs: int = 0  # epochs since the best one (early stopping)
    plotted: float = 0.0
    cpu_started: float = 0.0

    @classmethod
    def start(cls, o: TrainOptions, data: TrainingData, resumed: Checkpoint | None, report: Reporter) -> Training:
        """The network, its optimizer, schedule, loss and batches, fresh or as ``resumed`` left them."""
        device = select_device(o.device)
        if o.device == "auto" and device.type == "cpu" and env.gpu_granted():
            report.line(f"warning: training on the CPU although a GPU is granted: {why_no_cuda()}")
        prepare_device(device)
        precision = resolve_precision(o.precision, device)
        torch.manual_seed(o.seed)
        weights = {"weights": o.weights} if o.weights is not None else {}
        network = build_model(o.model, len(data.classes), load_weights=resumed is None, **o.network_options, **weights)
        model = place_model(network, device)
        optimizer = make_optimizer(
            o.optimizer, [p for p in model.parameters() if p.requires_grad], o.lr, o.weight_decay, device
        )
        augmenter = Augmenter(POLICIES[o.augment], o.seed) if o.augment != "off" else None
        record = RunRecord(
            o.model,
            o.network_options,
            data.classes,
            o.image_size,
            o.recorded(),
            run_facts(data, device, model, precision, o),
        )
        if len(data.train) == 1 and any(isinstance(m, torch.nn.BatchNorm2d) and m.training for m in model.modules()):
            raise UserError(
                f"{drawn_by(o)}: the training split holds one image, and BatchNorm cannot train on one; widen the "
                "split, or pass --no-batchnorm"
            )
        extra = [data.train_eval] if data.train_eval is not None and data.train_eval is not data.train else []
        splits = place_splits([data.train, data.val, *extra], device)
        schedule = LearningRate(o.lr_schedule, o.lr, o.epochs)
        batch_order = torch.Generator().manual_seed(o.seed)
        compute = Compute(o.batch_size, precision, channels_last(device))
        training = cls(
            o, model, optimizer, schedule, precision.grad_scaler(), batch_order, augmenter, compute, record, splits
        )
        if resumed is not None:
            training.resume(resumed, data)
        if o.compile:
            training.compile_model()
        return training

    def resume(self, checkpoint: Checkpoint, data: TrainingData) -> None:
        """The weights, optimizer, schedule, scaler, augmentation and random states of ``checkpoint``."""
        if data.classes != checkpoint.classes or data.fingerprints != checkpoint.facts.get("data", data.fingerprints):
            raise UserError(
                f"--resume {checkpoint.path}: {data.root} is not the data the run was trained on (other classes, "
                f"pictures or boxes for its rows than in {checkpoint.facts.get('dataset')}); resume on that dataset "
                "(--dataset), or train a new run"
            )
        state = checkpoint.data
        self.model.load_state_dict(state["state_dict"])
        for name, part in self.states.items():
            if state.get(name):  # an fp32 run's scaler state is empty: a new scaler starts afresh
                part.load_state_dict(state[name])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"].cpu())
        self.generator.set_state(rng["batches"].cpu())
        if "cuda" in rng and torch.cuda.is_available():  # as many GPUs as this node has (it may have fewer)
            for index, cuda_state in enumerate(rng["cuda"][: torch.cuda.device_count()]):
                torch.cuda.set_rng_state(cuda_state.cpu(), index)
        self.epoch, self.history, self.best = checkpoint.epoch, list(state["history"]), state["best"]
        self.stale_epochs = checkpoint.stale_epochs
        facts = dict(checkpoint.facts)
        self.record = replace(self.record, facts={**facts, "resumed": [*facts.get("resumed", []), self.record.facts]})

    def compile_model(self) -> None:
        """torch.compile, tried now on one batch in evaluation mode (no weight, statistic or random state moves),
        so that a machine that cannot compile says so before epoch 1."""
        import torch._inductor.config as inductor

        inductor.fallback_random = True  # dropout draws from torch's generator, as in eager mode: the same run
        compiled = torch.compile(self.model, dynamic=False)
        try:
            batch = next(self.splits[1].batches(self.options.batch_size))
            compiled.eval()
            with torch.no_grad(), self.compute.precision.autocast():
                compiled(self.splits[1].normalize(batch.images, self.compute.channels_last))
        except Exception as error:  # inductor needs a C++ compiler (and Triton on CUDA); MPS is not supported
            raise UserError(
                f"--compile: torch.compile cannot compile the model here ({error_line(error)}); train without --compile"
            ) from None
        self.model = compiled

    @property
    def states(self) -> dict[str, Any]:
        states = {"optimizer": self.optimizer, "schedule": self.schedule, "scaler": self.scaler}
        return {**states, "augment": self.augmenter} if self.augmenter is not None else states

    def train_args(self) -> tuple:
        """What ``train_one_epoch`` reads."""
        splits = self.splits[0], self.loss_fn, self.optimizer, self.scaler, self.generator, self.compute
        return (self.model, *splits, self.augmenter)

    @property
    def loss_fn(self):
        return loss_for(self.options)

    @property
    def val(self):
        return self.splits[1]

    @property
    def train_eval(self):
        """The training images measured in evaluation mode each epoch: a sample, all of them, or none."""
        return None if self.options.train_eval == "off" else self.splits[2 if len(self.splits) > 2 else 0]

    def batches_per_epoch(self) -> int:
        parts = (self.splits[0], self.val, self.train_eval)
        return sum(part.num_batches(self.options.batch_size) for part in parts if part is not None)

    def set_epoch(self, epoch: int) -> float:
        lr = self.schedule.at(epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.cpu_started = time.process_time()
        return lr

    def stopping_early(self) -> bool:
        return bool(self.options.patience) and self.stale_epochs >= self.options.patience


def error_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__


def run_facts(
    data: TrainingData, device: torch.device, model: torch.nn.Module, precision: Precision, o: TrainOptions
) -> dict[str, Any]:
    """What a run cannot be re-created from its options alone: its data (and their fingerprint), where, how."""
    total, trainable = count_parameters(model)
    return {
        "dataset": str(Path(data.root).resolve()),
        "data": data.fingerprints,  # per split: a hash of its rows and of their images' bytes
        "classes": data.classes,
        "device": str(device),
        "precision": precision.name,
        "workers": o.workers or usable_cpus(),
        "threads": torch.get_num_threads(),
        "parameters": total,
        "trainable_parameters": trainable,
        "torch": str(torch.__version__),
        "torchvision": metadata.version("torchvision"),
        "python": platform.python_version(),
        "host": platform.node(),
        "slurm": env.slurm_job(),
        "command": " ".join(sys.argv),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def begin(writer: RunWriter, training: Training, data: TrainingData, report: Reporter) -> None:
    """run.json; for a new run also its split files and config.json (aside, until its first epoch is saved)."""
    record = training.record
    writer.save(config.RUN_FILE, json_bytes(record.facts))
    batches = f"Batches {training.splits[0].describe()}; computing in {training.compute.precision.name}"
    batches += f" on {record.facts['device']}"
    if training.augmenter is not None:
        batches += f"; augmenting the training batches ({training.options.augment})"
    if training.train_eval is not None:
        batches += f"; training figures in evaluation mode on {len(training.train_eval)} training images"
    report.line(batches)
    if training.epoch:
        return report.line(
            f"Resuming {writer.run.folder} after epoch {training.epoch} of {training.options.epochs} on "
            f"{record.facts['device']}"
        )
    for name, filename in config.SPLIT_FILES.items():
        writer.save(filename, write_rows_text(data.splits[name]).encode())
    writer.save(config.CONFIG_FILE, json_bytes(record.options))
    facts, o = record.facts, training.options
    report.line(
        f"Training {o.model} ({facts['parameters']:,} parameters, {facts['trainable_parameters']:,} trainable) on "
        f"{facts['device']} for {o.epochs} epoch{'s' if o.epochs != 1 else ''}, batch {o.batch_size}, lr {o.lr:g}; "
        f"writing to {writer.run.folder}"
    )


def history_row(
    epoch: int, running: EpochStats, train: EpochStats | None, val: EpochStats, lr: float, cpu: float
) -> dict[str, float]:
    nan = math.nan
    measured = (
        train.as_dict("train")
        if train is not None
        else {f"train_{k}": nan for k in ("loss", "class_loss", "box_loss", "accuracy", "iou")}
    )
    return {
        "epoch": epoch,
        **measured,
        **val.as_dict("val"),
        **running.as_dict("running"),
        "train_images_evaluated": train.images if train is not None else 0,
        "seconds": running.seconds + val.seconds,
        "train_eval_seconds": train.seconds if train is not None else 0.0,
        "cpu_seconds": time.process_time() - cpu,
        "lr": lr,
    }


def save_epoch(writer: RunWriter, training: Training, row: dict[str, float]) -> bool:
    """The epoch recorded: best.pth when it is the best so far, last.pth, history.csv, the plot; after a new run's
    first epoch its files go into its folder. Whether the epoch is the best."""
    if not (math.isfinite(row["running_loss"]) and math.isfinite(row["val_loss"])):
        kept = (
            "nothing of this run was kept" if writer.staged else f"the checkpoints of epoch {training.epoch} are kept"
        )
        raise UserError(
            f"epoch {row['epoch']}: the loss is not finite (train {row['running_loss']}, val {row['val_loss']}); lower "
            f"--lr (now {training.options.lr:g}) or --box-weight; {kept} in {writer.run.folder}"
        )
    training.schedule.observe(row["val_loss"])
    training.epoch = int(row["epoch"])
    training.history.append(row)
    is_best = improves(row["val_accuracy"], row["val_loss"], training.best)
    model = getattr(training.model, "_orig_mod", training.model)  # a compiled model's weights are its module's
    if is_best:
        training.best = {"epoch": training.epoch, "val_accuracy": row["val_accuracy"], "val_loss": row["val_loss"]}
        writer.save(config.BEST_CHECKPOINT, checkpoint_bytes(training.record, model, training.epoch, row))
    training.stale_epochs = 0 if is_best else training.stale_epochs + 1
    rng = {"torch": torch.get_rng_state(), "batches": training.generator.get_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    states = {name: part.state_dict() for name, part in training.states.items()}
    last = dict(rng=rng, history=training.history, best=training.best, stale_epochs=training.stale_epochs, **states)
    writer.save(config.LAST_CHECKPOINT, checkpoint_bytes(training.record, model, training.epoch, row, **last))
    writer.save(config.HISTORY_FILE, history_bytes(training.history))
    last_one = training.epoch == training.options.epochs or training.stopping_early()
    if (plot := plot_bytes(training, force=last_one or writer.staged)) is not None:
        writer.save(config.PLOT_FILE, plot)
    writer.commit()
    return is_best


def plot_bytes(training: Training, force: bool) -> bytes | None:
    """The convergence plot, drawn at most every PLOT_INTERVAL seconds (a drawing costs about a small network's
    epoch on a GPU), and always after the last epoch or a stop."""
    if not training.history or not (force or time.monotonic() - training.plotted >= PLOT_INTERVAL):
        return None
    from model.plots import convergence_png  # matplotlib: half a second of imports, once the first epoch is done

    training.plotted = time.monotonic()
    return convergence_png(
        training.history, f"{training.options.model} on {Path(training.record.facts['dataset']).name}"
    )


def json_bytes(values: dict[str, Any]) -> bytes:
    return (json.dumps(values, indent=2, default=str) + "\n").encode()


def epoch_line(row: dict[str, float], epochs: int, is_best: bool) -> str:
    def iou(value: float) -> str:
        return "" if math.isnan(value) else f" iou {value:.3f}"

    train = "train" if not math.isnan(row["train_loss"]) else "running"
    return (
        f"epoch {int(row['epoch']):>3}/{epochs}  {train} loss {row[f'{train}_loss']:.4f} acc "
        f"{row[f'{train}_accuracy']:.3f}{iou(row[f'{train}_iou'])} | val loss {row['val_loss']:.4f} acc "
        f"{row['val_accuracy']:.3f}{iou(row['val_iou'])} | "
        f"{row['seconds']:.1f} s lr {row['lr']:.2e}{'  *best*' if is_best else ''}"
    )


def interrupted(interrupt: Interrupted, writer: RunWriter, training: Training | None) -> str:
    """What a stop by a signal kept, in one line (the plot drawn first)."""
    if training is None:
        return f"Interrupted by {interrupt} while reading the dataset: nothing was written"
    if not writer.staged and (plot := plot_bytes(training, force=True)) is not None:
        writer.save(config.PLOT_FILE, plot)
    epoch = training.epoch + 1
    if writer.staged:
        return (
            f"Interrupted by {interrupt} during epoch {epoch}, before the run's first epoch was saved: nothing of it "
            f"was kept (a run that was in {writer.run.folder} before is as it was); start it again"
        )
    last = writer.run.checkpoint_path("last")
    return (
        f"Interrupted by {interrupt} during epoch {epoch}: {last} holds epochs 1-{epoch - 1} with everything needed to "
        f"go on. Resume with: python train.py --resume {last}"
    )


if __name__ == "__main__":
    try:
        main()
    finally:  # the exit's last garbage collections then skip torch's objects: 0.1 s after the last line, not 1 s
        gc.freeze()
