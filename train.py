"""Train a detector (class + box) on the course dataset, or on the demo dataset when none is found.

``main`` is the run, top to bottom: its options (model/options.py), the data (model/dataset.py), the network
(model/network.py), the optimizer and the loss (model/engine.py), then the epochs: ``train_one_epoch`` and
``evaluate``, then ``save_epoch``: the best model (``improves``: the highest validation accuracy, then the lowest
validation loss), the last one, history.csv and the convergence plot. It writes into output/ (or output/NAME/):
best.pth, last.pth, history.csv, convergence_plot.png, config.json (the options), run.json (the dataset and the
fingerprint of its splits, the device, versions), the split files training_data.csv, val_data.csv, test_data.csv,
and manifest.json (the toolkit's files there).
"""

from __future__ import annotations

import atexit
import gc
import json
import math
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import click
import torch

from model import config, env
from model.annotations import write_rows_text
from model.augment import POLICIES, Augmenter
from model.checkpoint import Checkpoint, CheckpointError, RunRecord, checkpoint_bytes
from model.cli import checked, path_type
from model.dataset import TrainingData, drawn_by, load_splits, read_splits
from model.device import (
    Interrupted,
    Reporter,
    channels_last,
    place_model,
    prepare_device,
    resolve_precision,
    select_device,
    stop_on_signals,
    why_no_cuda,
)
from model.engine import Compute, LearningRate, evaluate, loss_for, make_optimizer, place_splits, train_one_epoch
from model.errors import UserError, first_line
from model.network import build_model
from model.options import FIELDS, TrainOptions, at_tiny_scale, check, flag, of, train_options
from model.runs import (
    Run,
    RunWriter,
    check_config_unchanged,
    epoch_line,
    history_bytes,
    history_row,
    improves,
    run_facts,
    started_run,
)

RESUME_OVERRIDES = ("epochs", "device", "workers", "dataset", "precision", "compile")  # what --resume may change
PLOT_INTERVAL = 20.0  # seconds between two drawings of the plot (always drawn after the last epoch)


@click.command(context_settings={"show_default": True, "max_content_width": 110})
@train_options
@click.option("--overwrite", is_flag=True, help="Replace the run in the folder (kept until the new one's first epoch).")
@click.option("--resume", type=path_type("file"), help="Go on with the run of this last.pth (with --epochs: longer).")
@click.option("--resume-if-started", is_flag=True, help="Start the run, or go on with it when its folder already holds "
              "it (the same options): what a resubmitted Slurm job wants. A finished run has nothing to "
              "do.")  # fmt: skip
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
        report, state = Reporter(), None
        run = Run(resumed.path.parent if resumed else options.run_dir)
        device = select_device(options.device)  # --device cuda on a machine without one: refused before the data
        rows = read_splits(options, report.line, resumed)  # the data checked before anything is written
        with stop_on_signals() as stop, run.writer("train.py", new=resumed is None, replace=overwrite) as writer:
            try:
                data = load_splits(options, rows, report.line, stop, resumed.facts if resumed else None)
                torch.manual_seed(options.seed)  # the network's initial weights
                model = build_model(options.model, len(data.classes), load_weights=not resumed, **network_args(options))
                model = place_model(model, device)
                trainable = [p for p in model.parameters() if p.requires_grad]
                optimizer = make_optimizer(options.optimizer, trainable, options.lr, options.weight_decay, device)
                loss_fn = loss_for(options)  # compute_loss: label_weight x cross-entropy + box_weight x box loss
                state = State.start(options, data, model, optimizer, resumed, report)  # schedule, batches, states
                begin(writer, state, data, report)  # the split files, config.json, run.json
                tick = report.ticking(stop)  # a signal stops the epoch at its next batch
                for epoch in range(state.epoch + 1, options.epochs + 1):
                    lr = state.set_epoch(epoch)
                    report.start(f"epoch {epoch}/{options.epochs}", state.batches_per_epoch())
                    running = train_one_epoch(state.model, state.train, loss_fn, optimizer, state.scaler,
                                              state.generator, state.compute, state.augmenter, tick)  # fmt: skip
                    sample = None  # the training figures in evaluation mode (--train-eval)
                    if state.train_eval:
                        sample, _ = evaluate(state.model, state.train_eval, loss_fn, state.compute, tick)
                    val, _ = evaluate(state.model, state.val, loss_fn, state.compute, tick)
                    row = history_row(epoch, running, sample, val, lr, state.cpu_started)
                    is_best = save_epoch(writer, state, row)  # best.pth, last.pth, history.csv, the plot
                    report.line(epoch_line(row, options.epochs, is_best))
                    if state.stopping_early():
                        report.line(f"Early stopping: no better validation accuracy for {options.patience} epochs")
                        break
            except Interrupted as interrupt:
                report.line(interrupted(interrupt, writer, state))
                sys.exit(128 + interrupt.signum)
            finally:
                report.stop()
        best = state.best or {}
        report.line(
            f"Best epoch {best['epoch']}: val accuracy {best['val_accuracy']:.4f}, val loss {best['val_loss']:.4f}. "
            f"Evaluate it with: python eval.py {run.checkpoint_path('best')}"
        )


def run_options(ctx: click.Context, resume: Path | None, resume_if_started: bool) -> tuple[TrainOptions, Any]:
    """The run's options, checked once: the command line's (and --config's); or, to go on with a run, its own,
    but for what --resume lets a run change. The run to go on with (its last.pth), when there is one."""
    resumed = None
    if resume is not None:
        given = {n for n in ctx.params if ctx.get_parameter_source(n) is click.core.ParameterSource.COMMANDLINE}
        if ctx.meta.get("config"):
            raise click.UsageError("--config and --resume do not go together: --resume goes on with the run's options")
        if extra := sorted(given - {"resume", *RESUME_OVERRIDES}):
            shown = ", ".join(flag(n, ctx.params[n]) if n in FIELDS else "--" + n.replace("_", "-") for n in extra)
            allowed = ", ".join("--" + o for o in RESUME_OVERRIDES)
            raise click.UsageError(f"--resume goes on with the run's own options; only {allowed} may be given with it "
                                   f"(got {shown})")  # fmt: skip
        resumed = Checkpoint(resume)
        if not resumed.is_resumable:
            raise CheckpointError(f"--resume {resume}: holds no training state (a best.pth?); resume from its last.pth")
        check_config_unchanged(resumed)
        options = replace(resumed.options, dataset=resumed.dataset, weights=None, workers=None)
        options = replace(options, **{n: ctx.params[n] for n in RESUME_OVERRIDES if n in given})
        if options.epochs < resumed.epoch:
            raise UserError(f"--epochs {options.epochs}: {resume} has trained {resumed.epoch} epochs already; pass "
                            f"--epochs above {resumed.epoch} to train longer, or drop --epochs")  # fmt: skip
    else:
        options = of(ctx)
        resumed = started_run(options) if resume_if_started else None
    warnings = check(options)
    if (tiny := at_tiny_scale(options)) != options:
        warnings.append(f"${env.TINY}=1: training {tiny.epochs} epoch at {tiny.image_size} px (doc/troubleshooting.md)")
    for line in warnings:
        click.echo(line)
    if resumed is None:
        Run(tiny.run_dir).check_place(tiny.output_dir)
    return tiny, resumed


def network_args(options: TrainOptions) -> dict[str, Any]:
    """The network's constructor arguments, and the ImageNet weights file to start from when given."""
    return {**options.network_options, **({"weights": options.weights} if options.weights is not None else {})}


@dataclass
class State:
    """What training changes besides the weights (all that last.pth saves to resume exactly), and how it computes."""

    options: TrainOptions
    model: torch.nn.Module  # or its torch.compile'd wrapper
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
    def start(cls, o: TrainOptions, data: TrainingData, model, optimizer, resumed: Any, report: Reporter) -> State:
        """The schedule, precision, batches and random streams, fresh or as ``resumed`` (a last.pth) left them."""
        device = next(model.parameters()).device
        if o.device == "auto" and device.type == "cpu" and env.gpu_granted():
            report.line(f"warning: training on the CPU although a GPU is granted: {why_no_cuda()}")
        prepare_device(device)
        precision = resolve_precision(o.precision, device)
        if len(data.train) == 1 and any(isinstance(m, torch.nn.BatchNorm2d) and m.training for m in model.modules()):
            raise UserError(f"{drawn_by(o)}: the training split holds one image, and BatchNorm cannot train on one; "
                            "widen the split, or pass --no-batchnorm")  # fmt: skip
        facts = run_facts(data, device, model, precision.name, o)
        record = RunRecord(o.model, o.network_options, data.classes, o.image_size, o.recorded(), facts)
        sample = [data.train_eval] if data.train_eval is not None and data.train_eval is not data.train else []
        augmenter = Augmenter(POLICIES[o.augment], o.seed) if o.augment != "off" else None
        state = cls(
            o, model, optimizer, LearningRate(o.lr_schedule, o.lr, o.epochs), precision.grad_scaler(),
            torch.Generator().manual_seed(o.seed), augmenter, Compute(o.batch_size, precision, channels_last(device)),
            record, place_splits([data.train, data.val, *sample], device),
        )  # fmt: skip
        if resumed is not None:
            state.resume(resumed)
        if o.compile:
            state.compile_model()
        return state

    def resume(self, checkpoint: Checkpoint) -> None:
        """The weights, optimizer, schedule, scaler, augmentation and random states of ``checkpoint``, on the data
        it trained on (load_splits checked their fingerprints)."""
        saved = checkpoint.data
        self.model.load_state_dict(saved["state_dict"])
        for name, part in self.states.items():
            if saved.get(name):  # an fp32 run's scaler state is empty: a new scaler starts afresh
                part.load_state_dict(saved[name])
        torch.set_rng_state(saved["rng"]["torch"].cpu())
        self.generator.set_state(saved["rng"]["batches"].cpu())
        if "cuda" in saved["rng"] and torch.cuda.is_available():  # as many GPUs as this node has (maybe fewer)
            for index, cuda_state in enumerate(saved["rng"]["cuda"][: torch.cuda.device_count()]):
                torch.cuda.set_rng_state(cuda_state.cpu(), index)
        self.epoch, self.history, self.best = checkpoint.epoch, list(saved["history"]), saved["best"]
        self.stale_epochs = checkpoint.stale_epochs
        facts = dict(checkpoint.facts)
        self.record = replace(self.record, facts={**facts, "resumed": [*facts.get("resumed", []), self.record.facts]})

    def compile_model(self) -> None:
        """torch.compile, tried now on one batch in evaluation mode (no weight, statistic or random state moves),
        so that a machine that cannot compile says so before epoch 1."""
        import torch._inductor.config as inductor

        inductor.fallback_random = True  # dropout draws from torch's generator, as in eager mode: the same run
        compiled: Any = torch.compile(self.model, dynamic=False)
        try:
            compiled.eval()
            images = next(self.val.batches(self.options.batch_size)).images
            with torch.no_grad(), self.compute.precision.autocast():
                compiled(self.val.normalize(images, self.compute.channels_last))
        except Exception as error:  # inductor needs a C++ compiler (and Triton on CUDA); MPS is not supported
            raise UserError(f"--compile: torch.compile cannot compile the model here ({first_line(error)}); train "
                            "without --compile") from None  # fmt: skip
        self.model = compiled

    @property
    def states(self) -> dict[str, Any]:
        states = {"optimizer": self.optimizer, "schedule": self.schedule, "scaler": self.scaler}
        return {**states, "augment": self.augmenter} if self.augmenter is not None else states

    train = property(lambda self: self.splits[0])
    val = property(lambda self: self.splits[1])

    @property
    def train_eval(self):
        """The training images measured in evaluation mode each epoch: a sample, all of them, or none."""
        return None if self.options.train_eval == "off" else self.splits[2 if len(self.splits) > 2 else 0]

    def batches_per_epoch(self) -> int:
        parts = (self.train, self.val, self.train_eval)
        return sum(part.num_batches(self.options.batch_size) for part in parts if part is not None)

    def set_epoch(self, epoch: int) -> float:
        lr = self.schedule.at(epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.cpu_started = time.process_time()
        return lr

    def stopping_early(self) -> bool:
        return bool(self.options.patience) and self.stale_epochs >= self.options.patience


def begin(writer: RunWriter, state: State, data: TrainingData, report: Reporter) -> None:
    """run.json; for a new run also its split files and config.json (aside, until its first epoch is saved)."""
    facts, o = state.record.facts, state.options
    writer.save(config.RUN_FILE, json_bytes(facts))
    batches = f"Batches {state.train.describe()}; computing in {state.compute.precision.name} on {facts['device']}"
    batches += f"; augmenting the training batches ({o.augment})" if state.augmenter is not None else ""
    if state.train_eval is not None:
        batches += f"; training figures in evaluation mode on {len(state.train_eval)} training images"
    report.line(batches)
    if state.epoch:
        report.line(f"Resuming {writer.run.folder} after epoch {state.epoch} of {o.epochs} on {facts['device']}")
        return
    for name, filename in config.SPLIT_FILES.items():
        writer.save(filename, write_rows_text(data.splits[name]).encode())
    writer.save(config.CONFIG_FILE, json_bytes(state.record.options))
    report.line(f"Training {o.model} ({facts['parameters']:,} parameters, {facts['trainable_parameters']:,} trainable) "
                f"on {facts['device']} for {o.epochs} epoch{'s' if o.epochs != 1 else ''}, batch {o.batch_size}, lr "
                f"{o.lr:g}; writing to {writer.run.folder}")  # fmt: skip


def save_epoch(writer: RunWriter, state: State, row: dict[str, float]) -> bool:
    """The epoch recorded: best.pth when it ``improves`` on the best so far (Part 1 Q6), last.pth, history.csv and
    the plot; after a new run's first epoch its files go into its folder. Whether the epoch is the best."""
    if not (math.isfinite(row["running_loss"]) and math.isfinite(row["val_loss"])):
        kept = "nothing of this run was kept" if writer.staged else f"the checkpoints of epoch {state.epoch} are kept"
        raise UserError(f"epoch {row['epoch']}: the loss is not finite (train {row['running_loss']}, val "
                        f"{row['val_loss']}); lower --lr (now {state.options.lr:g}) or --box-weight; {kept} in "
                        f"{writer.run.folder}")  # fmt: skip
    state.schedule.observe(row["val_loss"])
    state.epoch, is_best = int(row["epoch"]), improves(row["val_accuracy"], row["val_loss"], state.best)
    state.history.append(row)
    model = getattr(state.model, "_orig_mod", state.model)  # a compiled model's weights are its module's
    if is_best:
        state.best = {"epoch": state.epoch, "val_accuracy": row["val_accuracy"], "val_loss": row["val_loss"]}
        writer.save(config.BEST_CHECKPOINT, checkpoint_bytes(state.record, model, state.epoch, row))
    state.stale_epochs = 0 if is_best else state.stale_epochs + 1
    rng: dict[str, Any] = {"torch": torch.get_rng_state(), "batches": state.generator.get_state()}
    rng.update({"cuda": torch.cuda.get_rng_state_all()} if torch.cuda.is_available() else {})
    resumes = {name: part.state_dict() for name, part in state.states.items()}
    resumes.update(rng=rng, history=state.history, best=state.best, stale_epochs=state.stale_epochs)
    writer.save(config.LAST_CHECKPOINT, checkpoint_bytes(state.record, model, state.epoch, row, **resumes))
    writer.save(config.HISTORY_FILE, history_bytes(state.history))
    last_one = state.epoch == state.options.epochs or state.stopping_early()
    if (plot := plot_bytes(state, force=last_one or writer.staged)) is not None:
        writer.save(config.PLOT_FILE, plot)
    writer.commit()
    return is_best


def plot_bytes(state: State, force: bool) -> bytes | None:
    """The convergence plot, drawn at most every PLOT_INTERVAL seconds (a drawing costs about a small network's
    epoch on a GPU), and always after the last epoch or a stop."""
    if not state.history or not (force or time.monotonic() - state.plotted >= PLOT_INTERVAL):
        return None
    from model.plots import convergence_png  # matplotlib: half a second of imports, once the first epoch is done

    state.plotted = time.monotonic()
    return convergence_png(state.history, f"{state.options.model} on {Path(state.record.facts['dataset']).name}")


def json_bytes(values: dict[str, Any]) -> bytes:
    return (json.dumps(values, indent=2, default=str) + "\n").encode()


def interrupted(interrupt: Interrupted, writer: RunWriter, state: State | None) -> str:
    """What a stop by a signal kept, in one line (the plot drawn first)."""
    if state is None:
        return f"Interrupted by {interrupt} while reading the dataset: nothing was written"
    if not writer.staged and (plot := plot_bytes(state, force=True)) is not None:
        writer.save(config.PLOT_FILE, plot)
    epoch = state.epoch + 1
    if writer.staged:
        return (f"Interrupted by {interrupt} during epoch {epoch}, before the run's first epoch was saved: "
                f"nothing of it was kept (a run that was in {writer.run.folder} before is as it was); start it "
                "again")  # fmt: skip
    last = writer.run.checkpoint_path("last")
    return (f"Interrupted by {interrupt} during epoch {epoch}: {last} holds epochs 1-{epoch - 1} with everything "
            f"needed to go on. Resume with: python train.py --resume {last}")  # fmt: skip


if __name__ == "__main__":
    atexit.register(gc.freeze)  # the exit's last garbage collections skip torch's objects: 0.2 s, not 0.5-1 s
    main()
