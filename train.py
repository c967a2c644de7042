"""Train a detector (class + box) on the course dataset, or on the demo dataset when none is found.

Writes into the run folder (output/, or output/NAME/ with --name): best.pth, last.pth,
history.csv, convergence_plot.png, config.json (the options), run.json (dataset, device, versions)
and the split files training_data.csv, val_data.csv, test_data.csv. The stages are in
model/training.py; this script only turns its command line into a TrainOptions.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from model import config
from model.augment import AUGMENT_POLICIES
from model.checkpoint import Checkpoint, CheckpointError
from model.errors import one_line_errors
from model.losses import BOX_LOSSES
from model.network import MODEL_NAMES, TAKEN_ONLY_BY, min_image_size, takes_option
from model.options import TrainOptions
from model.precision import PRECISIONS
from model.runtime import DEVICES, Interrupted, Reporter, usable_cpus
from model.training import LR_SCHEDULES, OPTIMIZERS, fit

DEFAULTS = TrainOptions()
RESUME_OVERRIDES = ("epochs", "device", "workers", "dataset", "precision", "compile")  # what --resume lets a run change


def load_config_file(ctx: click.Context, _param: click.Parameter, value: Path | None) -> Path | None:
    """--config FILE: its values become the defaults; options given on the command line win."""
    if value is None:
        return None
    try:
        values = json.loads(Path(value).read_text())
    except (OSError, ValueError) as error:
        raise click.BadParameter(f"{value}: not a readable JSON file ({error})") from None
    if not isinstance(values, dict):
        raise click.BadParameter(f"{value}: expected a JSON object of option names and values")
    for recorded in ("run", "resume"):  # run facts and the resume flag that earlier versions kept in it
        values.pop(recorded, None)
    known = {p.name for p in ctx.command.params} - {"config"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise click.BadParameter(f"{value}: unknown option(s) {', '.join(unknown)}")
    ctx.default_map = {**(ctx.default_map or {}), **values}
    return value


@click.command(context_settings={"show_default": True, "max_content_width": 110})
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    callback=load_config_file,
    is_eager=True,
    expose_value=False,
    help="JSON file of options (e.g. a run's config.json) to re-run.",
)
@click.option("--model", type=click.Choice(MODEL_NAMES), default=DEFAULTS.model, help="Network to train.")
@click.option("--epochs", type=click.IntRange(min=1), default=DEFAULTS.epochs)
@click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULTS.batch_size)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=DEFAULTS.lr, help="Learning rate.")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=DEFAULTS.optimizer, help="sgd uses momentum 0.9.")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=DEFAULTS.weight_decay)
@click.option(
    "--lr-schedule",
    type=click.Choice(LR_SCHEDULES),
    default=DEFAULTS.lr_schedule,
    help="cosine: from --lr towards 0 at the last epoch (re-planned when --resume adds epochs); plateau: "
    "halve after 3 epochs in a row without a lower val loss.",
)
@click.option(
    "--label-weight",
    type=click.FloatRange(min=0),
    default=DEFAULTS.label_weight,
    help="Weight of the cross-entropy term.",
)
@click.option("--box-weight", type=click.FloatRange(min=0), default=DEFAULTS.box_weight, help="Weight of the box term.")
@click.option("--box-loss", type=click.Choice(BOX_LOSSES), default=DEFAULTS.box_loss, help="Box regression loss.")
@click.option(
    "--box-head/--no-box-head", default=DEFAULTS.box_head, help="--no-box-head: classification only (Parts 1-2)."
)
@click.option(
    "--dropout",
    type=click.FloatRange(0, 1, max_open=True),
    default=DEFAULTS.dropout,
    help="Dropout of the classification head; 0 removes it (Part 1 Q9.2).",
)
@click.option("--batchnorm/--no-batchnorm", default=DEFAULTS.batchnorm, help="BatchNorm after each conv (not resnet).")
@click.option("--pretrained/--no-pretrained", default=DEFAULTS.pretrained, help="resnet: start from ImageNet weights.")
@click.option(
    "--freeze/--fine-tune",
    default=DEFAULTS.freeze,
    help="resnet: keep the backbone fixed, or train it too  [default: freeze when --pretrained]",
)
@click.option(
    "--weights",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=DEFAULTS.weights,
    help="resnet: ImageNet weights file, for machines that cannot download them.",
)
@click.option(
    "--cut-val",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=DEFAULTS.cut_val,
    help="Share of the shuffled rows that trains.",
)
@click.option(
    "--cut-test",
    type=click.FloatRange(0, 1, min_open=True),
    default=DEFAULTS.cut_test,
    help="Rows between --cut-val and this share validate; the rest test.",
)
@click.option(
    "--train-fraction",
    type=click.FloatRange(0, 1, min_open=True),
    default=DEFAULTS.train_fraction,
    help="Keep this share of the training split, per class (Part 1 Q9.1).",
)
@click.option("--seed", type=int, default=DEFAULTS.seed, help="Seeds the split, the weights and the batches.")
@click.option("--device", type=click.Choice(DEVICES), default=DEFAULTS.device, help="auto: cuda, then mps, then cpu.")
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default=DEFAULTS.precision,
    help="Autocast: auto is bf16 on a CUDA GPU that has it (else fp16 with a gradient scaler), fp32 on CPU and MPS.",
)
@click.option(
    "--augment",
    type=click.Choice(AUGMENT_POLICIES),
    default=DEFAULTS.augment,
    help="Box-aware augmentation of the training batches, on the device: light (flip, zoom 0.9-1.1, shift, "
    "colour) or strong (zoom 0.7-1.3, stronger colour, grayscale, blur); model/augment.py lists each.",
)
@click.option(
    "--compile/--no-compile",
    default=DEFAULTS.compile,
    help="torch.compile the model; compiled before epoch 1, its time reported apart.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=DEFAULTS.workers,
    help="Threads decoding images  [default: CPU affinity, capped by SLURM_CPUS_PER_TASK]",
)
@click.option("--image-size", type=click.IntRange(min=32), default=DEFAULTS.image_size, help="Network input side.")
@click.option(
    "--dataset",
    type=click.Path(path_type=Path),
    default=DEFAULTS.dataset,
    help=f"Dataset folder  [default: ${config.DATASET_ENV_VAR}, {config.COURSE_DATASET}, ./dataset, "
    f"else the generated demo set]",
)
@click.option("--skip-bad-rows", is_flag=True, help="Skip bad annotation rows and images instead of stopping.")
@click.option(
    "--strict",
    is_flag=True,
    help="Stop on odd rows too (a box of zero width or height, a box clipped to the border), which are "
    "otherwise kept with a warning.",
)
@click.option(
    "--splits",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULTS.splits,
    help="Use the split files of this folder (training_data.csv, val_data.csv, test_data.csv: a run "
    "folder, or the course template's output/) instead of drawing a split.",
)
@click.option(
    "--cache/--no-cache",
    default=DEFAULTS.cache,
    help=f"Keep the decoded images in {config.CACHE_DIR.relative_to(config.PROJECT_ROOT)}/ (or "
    f"${config.CACHE_ENV_VAR}) for later runs.",
)
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULTS.output_dir,
    help="Folder of the runs.",
)
@click.option("--name", default=DEFAULTS.name, help="Write into OUTPUT_DIR/NAME/ to keep runs apart.")
@click.option(
    "--patience",
    type=click.IntRange(min=0),
    default=DEFAULTS.patience,
    help="Stop after this many epochs without a better model; 0: never.",
)
@click.option("--overwrite", is_flag=True, help="Replace a previous run in the same folder.")
@click.option(
    "--resume",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Go on with the run of this last.pth up to its planned epochs (with --epochs: more).",
)
def main(resume: Path | None, **values: Any) -> None:
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
    with one_line_errors():
        checkpoint = None
        if resume is None:
            options = new_options(ctx, values)
        else:
            checkpoint = Checkpoint.load(resume)
            options = resumed_options(ctx, checkpoint, values)
            if checkpoint.epoch >= options.epochs:  # nothing left: resubmitting a finished job is no error
                click.echo(
                    f"{resume}: the run already finished its {options.epochs} epochs; nothing to do (pass "
                    f"--epochs N, more than {checkpoint.epoch}, to train longer)"
                )
                return
        try:
            fit(options, Reporter(), checkpoint)
        except Interrupted as interrupt:
            sys.exit(128 + interrupt.signum)


def options_from_args(args: Sequence[str]) -> TrainOptions:
    """The options ``python train.py ARGS`` would train with, checked as the command line checks them
    (click's UsageError or BadParameter otherwise): the practical's plan reads its runs with it."""
    with main.make_context("train.py", list(args)) as ctx:
        values = dict(ctx.params)
        if values.pop("resume") is not None:
            raise click.UsageError("--resume is not a run's option")
        return new_options(ctx, values)


def given_on_command_line(ctx: click.Context) -> list[str]:
    return [name for name in ctx.params if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE]


def flag(ctx: click.Context, name: str) -> str:
    """The option as --help shows it (e.g. --freeze/--fine-tune)."""
    param = next(p for p in ctx.command.params if p.name == name)
    return "/".join(param.opts + param.secondary_opts)


def new_options(ctx: click.Context, values: dict[str, Any]) -> TrainOptions:
    """The options of a new run, checked together; the freeze and worker defaults resolved."""
    given = given_on_command_line(ctx)
    if values["cut_val"] >= values["cut_test"]:
        raise click.BadParameter(f"must be below --cut-test ({values['cut_test']})", ctx, param_hint="--cut-val")
    if values["splits"] is not None:
        cuts = [flag(ctx, name) for name in ("cut_val", "cut_test") if name in given]
        if cuts:
            raise click.UsageError(f"--splits uses the split files as they are; {' and '.join(cuts)} cannot apply")
    smallest = min_image_size(values["model"])
    if values["image_size"] < smallest:
        raise click.BadParameter(
            f"{values['image_size']} is too small for --model {values['model']} (at least {smallest} px)",
            ctx,
            param_hint="--image-size",
        )
    for name in TAKEN_ONLY_BY:
        if name in given and not takes_option(values["model"], name):
            raise click.UsageError(
                f"{flag(ctx, name)} applies to --model {' or '.join(TAKEN_ONLY_BY[name])} only "
                f"(got --model {values['model']})"
            )
    if values["freeze"] is None:
        values["freeze"] = values["pretrained"]
    if values["workers"] is None:
        values["workers"] = usable_cpus()
    return TrainOptions(**values)


def resumed_options(ctx: click.Context, checkpoint: Checkpoint, values: dict[str, Any]) -> TrainOptions:
    """The run's own options, but for --epochs, --device, --workers and --dataset given with --resume."""
    given = given_on_command_line(ctx)
    if ctx.default_map:  # --config FILE filled the defaults: they would be silently ignored
        raise click.UsageError("--config and --resume cannot go together: --resume goes on with the run's own options")
    extra = sorted(set(given) - {"resume", *RESUME_OVERRIDES})
    if extra:
        raise click.UsageError(
            f"--resume goes on with the run's own options; only "
            f"{', '.join('--' + o for o in RESUME_OVERRIDES)} may be given with it (got "
            f"{', '.join(flag(ctx, name) for name in extra)})"
        )
    if not checkpoint.is_resumable:
        raise CheckpointError(
            f"--resume {checkpoint.path}: holds no training state (a best.pth?); resume from the run's last.pth"
        )
    options = replace(checkpoint.options, dataset=checkpoint.dataset, weights=None, workers=usable_cpus())
    return replace(options, **{name: values[name] for name in RESUME_OVERRIDES if name in given})


if __name__ == "__main__":
    main()
