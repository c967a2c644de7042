"""train.py's command line: the option declarations, and the one way to turn arguments into a
TrainOptions (``options_from_args``), which the practical's plan uses for its runs' ``args`` too.

The command line only assembles values: every check is TrainOptions' own (model/training/options.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from model import config
from model.core.cli import FiniteFloat, device_option, precision_option
from model.network import MODEL_NAMES, takes_option
from model.training.augment import AUGMENT_POLICIES
from model.training.losses import BOX_LOSSES
from model.training.options import LR_SCHEDULES, OPTIMIZERS, TRAIN_EVALS, OptionError, TrainOptions, flag

DEFAULTS = TrainOptions()
NOT_OPTIONS = ("resume", "resume_if_started")  # train.py's own flags: what to do, not what the run is
F = TypeVar("F", bound=Callable[..., Any])


def load_config_file(ctx: click.Context, _param: click.Parameter, value: Path | None) -> Path | None:
    """--config FILE: its values become the defaults; options given on the command line win."""
    if value is None:
        return None
    try:
        values = json.loads(Path(value).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise click.BadParameter(f"{value}: not a readable JSON file ({error})") from None
    if not isinstance(values, dict):
        raise click.BadParameter(f"{value}: expected a JSON object of option names and values")
    for recorded in ("run", "resume"):  # run facts and the resume flag that earlier versions kept in it
        values.pop(recorded, None)
    known = {p.name for p in ctx.command.params} - {"config", *NOT_OPTIONS}
    unknown = sorted(set(values) - known)
    if unknown:
        raise click.BadParameter(f"{value}: unknown option(s) {', '.join(unknown)}")
    ctx.default_map = {**(ctx.default_map or {}), **values}
    return value


# Every option of a run, in --help's order.
DECLARATIONS = [
    click.option(
        "--config",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        callback=load_config_file,
        is_eager=True,
        expose_value=False,
        help="JSON file of options (e.g. a run's config.json) to re-run.",
    ),
    click.option("--model", type=click.Choice(MODEL_NAMES), default=DEFAULTS.model, help="Network to train."),
    click.option("--epochs", type=click.IntRange(min=1), default=DEFAULTS.epochs),
    click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULTS.batch_size),
    click.option("--lr", type=FiniteFloat(min=0, min_open=True), default=DEFAULTS.lr, help="Learning rate."),
    click.option(
        "--optimizer", type=click.Choice(OPTIMIZERS), default=DEFAULTS.optimizer, help="sgd uses momentum 0.9."
    ),
    click.option("--weight-decay", type=FiniteFloat(min=0), default=DEFAULTS.weight_decay),
    click.option(
        "--lr-schedule",
        type=click.Choice(LR_SCHEDULES),
        default=DEFAULTS.lr_schedule,
        help="cosine: from --lr towards 0 at the last epoch (re-planned when --resume adds epochs); plateau: "
        "halve after 3 epochs in a row without a lower val loss.",
    ),
    click.option(
        "--label-weight",
        type=FiniteFloat(min=0),
        default=DEFAULTS.label_weight,
        help="Weight of the cross-entropy term.",
    ),
    click.option("--box-weight", type=FiniteFloat(min=0), default=DEFAULTS.box_weight, help="Weight of the box term."),
    click.option("--box-loss", type=click.Choice(BOX_LOSSES), default=DEFAULTS.box_loss, help="Box regression loss."),
    click.option(
        "--box-head/--no-box-head",
        default=DEFAULTS.box_head,
        help="--no-box-head: classification only (Parts 1-2).",
    ),
    click.option(
        "--dropout",
        type=FiniteFloat(0, 1, max_open=True),
        default=DEFAULTS.dropout,
        help="Dropout of the classification head; 0 removes it (Part 1 Q9.2).",
    ),
    click.option(
        "--batchnorm/--no-batchnorm",
        default=None,
        help="BatchNorm after each conv (not resnet, which always has it)  [default: batchnorm]",
    ),
    click.option(
        "--pretrained/--no-pretrained",
        default=None,
        help="resnet: start from ImageNet weights  [default: pretrained]",
    ),
    click.option(
        "--freeze/--fine-tune",
        default=None,
        help="resnet: keep the backbone fixed, or train it too  [default: freeze when --pretrained]",
    ),
    click.option(
        "--weights",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=None,
        help="resnet: ImageNet weights file, for machines that cannot download them.",
    ),
    click.option(
        "--cut-val",
        type=FiniteFloat(0, 1, min_open=True, max_open=True),
        default=None,
        help=f"Share of the shuffled rows that trains  [default: {config.CUT_VAL}]",
    ),
    click.option(
        "--cut-test",
        type=FiniteFloat(0, 1, min_open=True),
        default=None,
        help=f"Rows between --cut-val and this share validate; the rest test  [default: {config.CUT_TEST}]",
    ),
    click.option(
        "--train-fraction",
        type=FiniteFloat(0, 1, min_open=True),
        default=DEFAULTS.train_fraction,
        help="Keep this share of the training split, per class (Part 1 Q9.1).",
    ),
    click.option(
        "--seed",
        type=click.IntRange(min=0),
        default=DEFAULTS.seed,
        help="Seeds the split, the weights and the batches.",
    ),
    click.option(
        "--train-eval",
        type=click.Choice(TRAIN_EVALS),
        default=DEFAULTS.train_eval,
        help="Training loss, accuracy and IoU measured each epoch in evaluation mode (dropout off, as eval.py "
        "measures them), on a fixed sample of the training split as large as the validation split, on all of "
        "it (full), or not (off: the running figures of the training pass only).",
    ),
    device_option(DEFAULTS.device),
    precision_option(DEFAULTS.precision),
    click.option(
        "--augment",
        type=click.Choice(AUGMENT_POLICIES),
        default=DEFAULTS.augment,
        help="Box-aware augmentation of the training batches, on the device: light (flip, zoom 0.9-1.1, shift, "
        "colour) or strong (zoom 0.7-1.3, stronger colour, grayscale, blur); model/training/augment.py lists each.",
    ),
    click.option(
        "--compile/--no-compile",
        default=DEFAULTS.compile,
        help="torch.compile the model; compiled before epoch 1, its time reported apart.",
    ),
    click.option(
        "--workers",
        type=click.IntRange(min=1),
        default=None,
        help="Threads decoding images  [default: CPU affinity, capped by SLURM_CPUS_PER_TASK]",
    ),
    click.option("--image-size", type=click.IntRange(min=32), default=DEFAULTS.image_size, help="Network input side."),
    click.option(
        "--dataset",
        type=click.Path(path_type=Path),
        default=None,
        help=f"Dataset folder  [default: ${config.DATASET_ENV_VAR}, {config.COURSE_DATASET}, ./dataset, "
        f"else the generated demo set]",
    ),
    click.option("--skip-bad-rows", is_flag=True, help="Skip bad annotation rows and images instead of stopping."),
    click.option(
        "--strict",
        is_flag=True,
        help="Stop on odd rows too (a box of zero width or height, a box clipped to the border), which are "
        "otherwise kept with a warning.",
    ),
    click.option(
        "--splits",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Use the split files of this folder (training_data.csv, val_data.csv, test_data.csv: a run "
        "folder, or the course template's output/) instead of drawing a split.",
    ),
    click.option(
        "--cache/--no-cache",
        default=DEFAULTS.cache,
        help=f"Keep the decoded images in {config.CACHE_DIR.relative_to(config.PROJECT_ROOT)}/ (or "
        f"${config.CACHE_ENV_VAR}) for later runs.",
    ),
    click.option(
        "--output-dir",
        type=click.Path(path_type=Path),
        default=DEFAULTS.output_dir,
        help="Folder of the runs.",
    ),
    click.option("--name", default=None, help="Write into OUTPUT_DIR/NAME/ to keep runs apart."),
    click.option(
        "--patience",
        type=click.IntRange(min=0),
        default=DEFAULTS.patience,
        help="Stop after this many epochs without a better model; 0: never.",
    ),
    click.option(
        "--overwrite",
        is_flag=True,
        help="Replace a previous run in the same folder (kept until the new run's first epoch is saved).",
    ),
]


def _options(f: F) -> F:
    """Every option of a run (DECLARATIONS) on the command ``f``."""
    for declaration in reversed(DECLARATIONS):
        f = declaration(f)
    return f


def given(ctx: click.Context) -> set[str]:
    """The options given on the command line (not defaults, not --config's values)."""
    return {name for name in ctx.params if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE}


def assemble(ctx: click.Context, values: dict[str, Any]) -> TrainOptions:
    """The TrainOptions of ``values``: options left at their defaults (or from --config) that do not apply
    to the chosen network are dropped; one given on the command line for another network is an error."""
    chosen = {key: value for key, value in values.items() if key not in NOT_OPTIONS}
    typed = given(ctx)
    for name in ("pretrained", "freeze", "weights", "batchnorm"):
        if name not in typed and not takes_option(chosen["model"], name):
            chosen[name] = None
    if chosen.get("splits") is not None:
        for name in ("cut_val", "cut_test"):
            if name not in typed:
                chosen[name] = None
    return TrainOptions(**chosen)


@click.command("train.py", context_settings={"show_default": True, "max_content_width": 110})
@_options
def _parser(**values: Any) -> None:
    """The options of a run (the plan's ``args``)."""


def options_from_args(args: Sequence[str]) -> TrainOptions:
    """The options ``python train.py ARGS`` would train with; click's UsageError (or an OptionError)
    when it would refuse them."""
    with _parser.make_context("train.py", list(args)) as ctx:
        return assemble(ctx, dict(ctx.params))


def describe_failure(error: Exception) -> str:
    """The one-line message of a refused argument list."""
    if isinstance(error, click.ClickException):
        return error.format_message()
    if isinstance(error, OptionError):
        return str(error)
    raise error


train_options = _options  # the decorator train.py's command uses
__all__ = ["DEFAULTS", "assemble", "describe_failure", "flag", "given", "options_from_args", "train_options"]
