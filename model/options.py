"""The options of a training run: what train.py takes, checked once.

``train_options`` puts every option of a run on a click command (train.py's, and the parser the practical's plan
reads its runs' ``args`` with); ``TrainOptions.of(ctx)`` turns the parsed values into one frozen object, checked
once: ranges and choices by click (on the command line and in --config's file alike), the rest by ``check``. An
option that does not apply to the run (``--box-weight`` without a box head, ``--batchnorm`` for a ResNet,
``--cut-val`` with ``--splits``) is refused when given, and not recorded: ``config.json`` holds the options that
apply, and nothing of what one command does (``--overwrite``, ``--resume``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import click

from model import config, env
from model.augment import AUGMENT_POLICIES
from model.cli import FiniteFloat, device_option, path_type, precision_option
from model.engine import BOX_LOSSES, LR_SCHEDULES, OPTIMIZERS
from model.errors import UserError
from model.network import NETWORKS


@dataclass(frozen=True)
class TrainOptions:
    """Everything a run depends on; each field one train.py option. Defaults: the course template's settings."""

    model: str = "simple"
    box_head: bool = True
    dropout: float = 0.5
    batchnorm: bool = True
    pretrained: bool = True
    freeze: bool | None = None  # None: freeze when pretrained
    weights: Path | None = None
    image_size: int = config.IMAGE_SIZE
    epochs: int = config.NUM_EPOCHS
    batch_size: int = config.BATCH_SIZE
    lr: float = config.INIT_LR
    optimizer: str = "adam"
    weight_decay: float = 0.0
    lr_schedule: str = "none"
    label_weight: float = config.LABEL_WEIGHT
    box_weight: float = config.BOX_WEIGHT
    box_loss: str = config.DEFAULT_BOX_LOSS
    patience: int = 0
    augment: str = "off"
    seed: int = config.SPLIT_SEED
    train_eval: str = "sample"
    dataset: Path | None = None
    splits: Path | None = None
    cut_val: float = config.CUT_VAL
    cut_test: float = config.CUT_TEST
    train_fraction: float = 1.0
    skip_bad_rows: bool = False
    strict: bool = False
    cache: bool = True
    workers: int | None = None
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    output_dir: Path = config.OUTPUT_DIR
    name: str | None = None

    def __post_init__(self) -> None:
        if self.freeze is None:
            object.__setattr__(self, "freeze", self.pretrained)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name if self.name else Path(self.output_dir)

    @property
    def network_options(self) -> dict[str, Any]:
        """The run's network's constructor arguments (what a checkpoint records to rebuild it)."""
        own = {name: getattr(self, name) for name in NETWORKS[self.model].options() if name != "weights"}
        return {"box_head": self.box_head, "dropout": self.dropout, "image_size": self.image_size, **own}

    def recorded(self) -> dict[str, Any]:
        """The options as config.json and the checkpoints record them: plain values, those that apply."""
        values = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}
        kept = ("dataset", "splits", "weights", "name")  # None says something there
        return {k: v for k, v in values.items() if not_applying(self, k) is None and (v is not None or k in kept)}

    def differences(self, other: TrainOptions) -> list[str]:
        """The options that make ``other`` another run than this one (not where or how it ran)."""
        mine, theirs = self.recorded(), other.recorded()
        return sorted(n for n in (mine.keys() | theirs.keys()) - HOW_IT_RAN if mine.get(n) != theirs.get(n))

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str) -> TrainOptions:
        """The options a run recorded (a checkpoint's, config.json): each checked as its option is, unknown keys
        left out, missing ones their defaults; a UserError naming ``where`` and the key."""
        options = cls(**typed(values, where, strict=False))
        check(options)
        return options


# Where and how a run computes, not what it trains: a finished run is the same run whatever these say.
FIELDS = {f.name for f in fields(TrainOptions)}
HOW_IT_RAN = {"dataset", "weights", "output_dir", "name", "workers", "device", "precision", "compile", "cache"}
DEFAULTS = TrainOptions()


def not_applying(o: TrainOptions, name: str) -> str | None:
    """Why option ``name`` does not apply to the run ``o`` (the option that rules it out), or None when it does."""
    if name in ("box_weight", "box_loss") and not o.box_head:
        return "--no-box-head"
    if name in ("cut_val", "cut_test") and o.splits is not None:
        return f"--splits {o.splits}"
    if name in {p for n in NETWORKS.values() for p in n.options()} - set(NETWORKS[o.model].options()):
        return f"--model {o.model}"
    return None


def check(o: TrainOptions) -> list[str]:
    """What ranges cannot say; the warnings of a run that may go on."""
    smallest = NETWORKS[o.model].min_image_size
    if o.image_size < smallest:
        raise UserError(f"--image-size {o.image_size} is too small for --model {o.model} (at least {smallest} px)")
    if o.weights is not None and not o.pretrained:
        raise UserError("--weights gives ImageNet weights to start from: it does not go with --no-pretrained")
    if o.label_weight == 0 and (not o.box_head or o.box_weight == 0):
        raise UserError("--label-weight 0 leaves nothing to learn without a box term: raise --label-weight or "
                        "--box-weight")  # fmt: skip
    if o.splits is None and o.cut_val >= o.cut_test:
        raise UserError(f"--cut-val {o.cut_val:g} must be below --cut-test ({o.cut_test:g})")
    plain = o.name is None or (o.name not in ("", ".", "..") and not o.name.startswith(".") and o.name.isprintable())
    if o.name is not None and len(o.name.encode()) > 200:  # with the toolkit's temporary names, past NAME_MAX
        raise UserError(f"--name: {len(o.name.encode())} bytes long; a run's name is at most 200 bytes: choose a "
                        "shorter one")  # fmt: skip
    if not plain or any(c in (o.name or "") for c in "/\\\0"):
        raise UserError(f"--name {o.name!r}: a run's name is one plain folder name (no '/', no control character, not "
                        "starting with '.'), so that the run stays inside --output-dir")  # fmt: skip
    if o.freeze and not o.pretrained and "freeze" in NETWORKS[o.model].options():
        return ["warning: --freeze with --no-pretrained keeps the backbone's random weights fixed: only the heads "
                "learn (pass --fine-tune to train the backbone from scratch too)"]  # fmt: skip
    return []


def at_tiny_scale(options: TrainOptions) -> TrainOptions:
    """With $CVPR_TINY=1 (how the docs' commands are tested), the run at the smallest scale: one epoch at the
    network's smallest side. train.py trains so and the plan plans so."""
    return replace(options, epochs=1, image_size=NETWORKS[options.model].min_image_size) if env.tiny() else options


# ----------------------------------------------------------------------------------------------
# The command line
# ----------------------------------------------------------------------------------------------
def _for(option: str) -> str:
    return "for --model " + " or ".join(n for n, c in NETWORKS.items() if option in c.options())


def _range(low: float, high: float, low_open: bool = False, high_open: bool = False) -> Any:
    """A range of whole numbers when both ends are ints, else of finite floats (``*_open``: the end excluded)."""
    if isinstance(low, int) and isinstance(high, int):
        return click.IntRange(low, high)
    return FiniteFloat(low, high, min_open=low_open, max_open=high_open)


def _option(flags: str, kind: Any, help: str) -> Callable:
    """The click option of a TrainOptions field: its default is the field's; ``kind`` None makes a flag (a switch
    when ``flags`` names both forms); a default that depends on other options is said in the help, [default: ...]."""
    name = flags.split("/")[0][2:].replace("-", "_")
    default, shown = getattr(DEFAULTS, name), SHOWN_DEFAULTS.get(name)
    if kind is None and "/" not in flags:
        return click.option(flags, is_flag=True, default=default, help=help)
    return click.option(flags, type=kind, default=None if shown else default, show_default=shown, help=help)


SHOWN_DEFAULTS = {  # defaults that depend on other options or on the machine (None in the option)
    "freeze": "freeze when --pretrained",
    "dataset": "$CVPR_DATASET, the course folder, ./dataset, else the demo set",
    "workers": "CPU affinity, capped by SLURM_CPUS_PER_TASK",
}
# fmt: off
TRAIN_OPTIONS = [
    _option("--model", click.Choice(list(NETWORKS)), "Network to train (model/network.py): "
            + "; ".join(f"{n}: {c.help()}" for n, c in NETWORKS.items())),
    _option("--box-head/--no-box-head", None, "--no-box-head: classification only (Parts 1-2)."),
    _option("--dropout", _range(0.0, 1.0, high_open=True), "Dropout of the classification head; 0 removes it "
            "(Part 1 Q9.2)."),
    _option("--batchnorm/--no-batchnorm", None, f"BatchNorm after each convolution ({_for('batchnorm')})."),
    _option("--pretrained/--no-pretrained", None, f"Start from ImageNet weights ({_for('pretrained')})."),
    _option("--freeze/--fine-tune", None, f"Keep the pretrained backbone fixed, or train it too ({_for('freeze')})."),
    _option("--weights", path_type("file"), "ImageNet weights file, for machines that cannot download them "
            f"({_for('weights')})."),
    _option("--image-size", _range(1, 2048), "Side of the square network input, in pixels (at least the network's "
            "smallest)."),
    _option("--epochs", _range(1, 1_000_000), "Epochs to train."),
    _option("--batch-size", _range(1, 65536), "Images per training step."),
    _option("--lr", _range(0.0, 1e6, low_open=True), "Learning rate."),
    _option("--optimizer", click.Choice(OPTIMIZERS), "sgd uses momentum 0.9."),
    _option("--weight-decay", _range(0.0, 1e6), "Weight decay of the optimizer."),
    _option("--lr-schedule", click.Choice(LR_SCHEDULES), "cosine: from --lr towards 0 at the last epoch (re-planned "
            "when --resume adds epochs); plateau: halve after 3 epochs in a row without a lower val loss."),
    _option("--label-weight", _range(0.0, 1e6), "Weight of the cross-entropy term."),
    _option("--box-weight", _range(0.0, 1e6), "Weight of the box term (with a box head)."),
    _option("--box-loss", click.Choice(BOX_LOSSES), "Box regression loss (model/engine.py; with a box head)."),
    _option("--patience", _range(0, 1_000_000), "Stop after this many epochs without a better model; 0: never."),
    _option("--augment", click.Choice(AUGMENT_POLICIES), "Box-aware augmentation of the training batches, on the "
            "device: light (flip, zoom 0.9-1.1, shift, colour) or strong (zoom 0.7-1.3, stronger colour, grayscale, "
            "blur); model/augment.py lists each."),
    _option("--seed", _range(0, 2**32 - 1), "Seeds the split, the weights and the batches."),
    _option("--train-eval", click.Choice(("sample", "full", "off")), "Training loss, accuracy and IoU measured each "
            "epoch in evaluation mode (dropout off, as eval.py measures them), on a fixed sample of the training "
            "split as large as the validation split, on all of it (full), or not (off: the running figures of the "
            "training pass only)."),
    _option("--dataset", path_type(), "Dataset folder."),
    _option("--splits", path_type(), "Use the split files of this folder (training_data.csv, val_data.csv, "
            "test_data.csv: a run folder, or the course template's output/) instead of drawing a split."),
    _option("--cut-val", _range(0.0, 1.0, True, True), "Share of the shuffled rows that trains (without --splits)."),
    _option("--cut-test", _range(0.0, 1.0, low_open=True), "Rows between --cut-val and this share validate; the rest "
            "test."),
    _option("--train-fraction", _range(0.0, 1.0, low_open=True), "Keep this share of the training split, per class "
            "(Part 1 Q9.1)."),
    _option("--skip-bad-rows", None, "Skip bad annotation rows and images instead of stopping."),
    _option("--strict", None, "Stop on odd rows too (a box of zero width or height, a box clipped to the border), "
            "which are otherwise kept with a warning."),
    _option("--cache/--no-cache", None, "Keep the decoded images on disk for later runs (output/cache/, or "
            "$CVPR_CACHE_DIR)."),
    _option("--workers", _range(1, 1024), "Threads decoding images."),
    device_option(),
    precision_option(),
    _option("--compile/--no-compile", None, "torch.compile the model (tried before epoch 1, whose time includes "
            "compiling its training step)."),
    _option("--output-dir", path_type(), "Folder of the runs."),
    _option("--name", str, "Write into OUTPUT_DIR/NAME/ to keep runs apart."),
]
# fmt: on
NOT_RECORDED = ("run", "resume", "overwrite", "resume_if_started")  # what earlier config.json files also held
JSON_TYPES = {click.types.BoolParamType: (bool,), click.IntRange: (int,), FiniteFloat: (int, float)}  # else str


def read_config(ctx: click.Context, _param: click.Parameter, path: Path | None) -> None:
    """--config FILE (a run's config.json): its values become the defaults, each checked as its option is; the
    command line wins. Never what a command does (--overwrite, --resume): only the run's options."""
    if path is None:
        return
    try:
        values = json.loads(path.read_text(encoding="utf-8-sig"), object_pairs_hook=_no_duplicates)
    except (OSError, ValueError) as error:  # UnicodeDecodeError is a ValueError
        raise click.BadParameter(f"{path}: not a readable JSON file ({error}); fix the file",
                                 param_hint="--config") from None  # fmt: skip
    try:
        ctx.default_map = {**(ctx.default_map or {}), **typed(values, str(path), strict=True)}
    except UserError as error:  # click's parsing is not inside the command's one-line errors yet
        raise click.BadParameter(str(error), param_hint="--config") from None
    ctx.meta["config"] = path


def typed(values: Any, where: str, strict: bool) -> dict[str, Any]:
    """A JSON object of options (config.json, a checkpoint's record) as the options' values, each checked by its
    click option; ``strict``: an unknown name is refused (else left out, as a later version may add some)."""
    if not isinstance(values, dict):
        raise UserError(f"{where}: expected a JSON object of option names and values; fix the file")
    params = {p.name: p for p in PARSER.params if p.name in FIELDS}
    unknown = sorted(set(values) - set(params) - set(NOT_RECORDED))
    if unknown and strict:
        raise UserError(f"{where}: unknown option(s) {', '.join(unknown)}; fix the file")
    result: dict[str, Any] = {}
    for name, value in values.items():
        param = params.get(name)
        if param is None or value is None:
            result.update({name: None} if param else {})
            continue
        kind = param.type
        expected = JSON_TYPES.get(type(kind), (str,))
        try:
            if not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected):
                raise click.BadParameter("true or false" if bool in expected else f"expected {kind.name}")
            path = isinstance(kind, click.Path) and not strict  # a recorded path may have moved since
            result[name] = Path(str(value)) if path else kind.convert(value, param, None)
        except click.BadParameter as error:
            raise UserError(f"{where}: its entry {name!r} is {json.dumps(value)} ({error.message}); fix the "
                            "file") from None  # fmt: skip
    return result


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if twice := sorted({key for key in keys if keys.count(key) > 1}):
        raise ValueError(f"{', '.join(twice)} given twice; keep one")
    return dict(pairs)


def train_options(command: Callable) -> Callable:
    """Every option of a run on ``command``: --config, then TrainOptions' fields in their order."""
    for option in reversed(TRAIN_OPTIONS):
        command = option(command)
    return click.option("--config", type=click.Path(exists=True, dir_okay=False, path_type=Path), callback=read_config,
                        is_eager=True, expose_value=False, help="JSON file of options (e.g. a run's config.json) to "
                        "train again with.")(command)  # fmt: skip


def of(ctx: click.Context, lenient: frozenset[str] = frozenset()) -> TrainOptions:
    """The TrainOptions of a parsed command line: an option given (on it, or in --config's file) that does not
    apply to the run is refused, naming where it came from; one of ``lenient`` (the plan's [defaults]) is left out
    instead, and listed in ``ctx.meta["left_out"]``."""
    values = {f.name: ctx.params[f.name] for f in fields(TrainOptions)}
    options = TrainOptions(**values)
    ctx.meta["left_out"] = []
    for name, value in values.items():
        source = ctx.get_parameter_source(name)
        given = source is click.core.ParameterSource.COMMANDLINE
        from_file = source is click.core.ParameterSource.DEFAULT_MAP and value != getattr(DEFAULTS, name)
        why = not_applying(options, name)
        if why and name in lenient:
            ctx.meta["left_out"].append(name)
            options = replace(options, **{name: getattr(DEFAULTS, name)})
        elif why and (given or from_file):
            where = f" (in --config {ctx.meta['config']})" if from_file else ""
            raise UserError(f"{flag(name, value)}{where} does not apply with {why}; drop it")
    return options


def flag(name: str, value: Any = None) -> str:
    """The command-line form of option ``name`` (``cut_val`` -> ``--cut-val``; ``freeze`` False -> ``--fine-tune``)."""
    param = next(p for p in PARSER.params if p.name == name)
    return param.secondary_opts[0] if value is False and param.secondary_opts else param.opts[0]


@click.command("train.py")
@train_options
def PARSER(**_values: Any) -> None:
    """The options of a run, as train.py parses them (the practical's plan reads its runs' args with it)."""


def parsed(args: list[str]) -> click.Context:
    """``python train.py ARGS`` parsed; a UserError (a click error's message) when train.py would refuse them."""
    try:
        return PARSER.make_context("train.py", list(args))
    except click.ClickException as error:
        raise UserError(error.format_message()) from None


def parse(args: list[str], lenient: frozenset[str] = frozenset()) -> tuple[TrainOptions, list[str]]:
    """The options ``python train.py ARGS`` trains with, and the options of ``lenient`` left out because they do
    not apply to the run; a UserError when train.py would refuse them."""
    ctx = parsed(args)
    options = of(ctx, lenient)
    check(options)
    return options, ctx.meta["left_out"]


def given_names(args: list[str]) -> set[str]:
    """The options ``args`` give (``--no-box-head`` -> ``box_head``), parsed as train.py parses them."""
    ctx = parsed(args)
    return {n for n in ctx.params if ctx.get_parameter_source(n) is click.core.ParameterSource.COMMANDLINE}
