"""The options of a training run: one frozen object that checks itself, each field one train.py option.

Each field carries its ``Spec``: its help, the range or choices it takes, and when it applies (``--box-loss``
only with a box head, ``--pretrained`` only for a network that takes it, ``--cut-val`` only without
``--splits``). This is the one place those facts are written: train.py's command line is derived from the
specs (model/training/command.py: types and help only, the ranges shown as these checks enforce them), and
building a TrainOptions checks every value, alone and with the others. An option that does not apply to the
run is None; given anyway, it is an OptionError naming it.

``config.json`` in a run folder is this object written out (``to_json``: only the options that apply), and
``from_dict`` reads it (or an earlier version's) back.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from model import config
from model.core import env
from model.core.errors import UserError
from model.core.precision import PRECISIONS
from model.core.runtime import DEVICES
from model.data.augment import AUGMENT_POLICIES
from model.experiment.loss import BOX_LOSSES
from model.experiment.schedule import LR_SCHEDULES, OPTIMIZERS
from model.network import NETWORKS, min_image_size, model_names, networks_taking, takes_option

TRAIN_EVALS = ("sample", "full", "off")
MAX_SEED = 2**32 - 1  # numpy's and torch's generators both take seeds below 2**32


class OptionError(UserError):
    """An option's value is impossible, alone or with the others; ``option`` names the field."""

    def __init__(self, message: str, option: str | None = None):
        super().__init__(message)
        self.option = option


@dataclass(frozen=True)
class Spec:
    """What one option is. ``low``/``high``: its range (``open`` ends excluded); ``choices``: the values it
    takes; ``applies``: when it means something (else it must be None); ``shown_default``: said in the help where
    the field's default (None) stands for one that depends on other options."""

    help: str | Callable[[], str]  # a callable where the text follows from a registry (the networks)
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: Callable[[], tuple[str, ...]] | None = None
    switch: str | None = None  # both forms of a flag, e.g. "--box-head/--no-box-head"
    applies: Callable[[Any], bool] | None = None
    applies_to: str = ""  # how a message says when it applies, e.g. "with a box head"
    shown_default: str | None = None
    kind: str = ""  # "file" or "folder" for paths

    @property
    def text(self) -> str:
        return self.help() if callable(self.help) else self.help

    def interval(self) -> str:
        """The range as the help and the messages show it, e.g. ``[1, 1000000]`` or ``(0, 1)``; "" without one."""
        if self.low is None or self.high is None:
            return ""
        return f"{'(' if self.low_open else '['}{_shown(self.low)}, {_shown(self.high)}{')' if self.high_open else ']'}"


def _shown(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


def option(default: Any, help: str | Callable[[], str], **spec: Any) -> Any:
    """A TrainOptions field with its Spec."""
    return field(default=default, metadata={"spec": Spec(help, **spec)})


def _box_head(o: Any) -> bool:
    return bool(o.box_head)


def _takes(name: str) -> Callable[[Any], bool]:
    return lambda o: o.model in NETWORKS and takes_option(o.model, name)


def _cuts(o: Any) -> bool:
    return o.splits is None


def _model_help() -> str:
    return "Network to train (model/network.py): " + "; ".join(
        f"{name}: {cls.help()}" for name, cls in NETWORKS.items()
    )


def _only(name: str) -> str:
    return "for --model " + " or ".join(networks_taking(name))


@dataclass(frozen=True)
class TrainOptions:
    """Everything a training run depends on, each field one ``train.py`` option (``--box-head`` is
    ``box_head``). Defaults are the course template's settings."""

    # The network
    model: str = option("simple", _model_help, choices=model_names)
    box_head: bool = option(True, "--no-box-head: classification only (Parts 1-2).", switch="--box-head/--no-box-head")
    dropout: float = option(
        0.5, "Dropout of the classification head; 0 removes it (Part 1 Q9.2).", low=0, high=1, high_open=True
    )
    batchnorm: bool | None = option(
        None,
        "BatchNorm after each convolution.",
        switch="--batchnorm/--no-batchnorm",
        applies=_takes("batchnorm"),
        applies_to=_only("batchnorm"),
        shown_default="batchnorm",
    )
    pretrained: bool | None = option(
        None,
        "Start from ImageNet weights.",
        switch="--pretrained/--no-pretrained",
        applies=_takes("pretrained"),
        applies_to=_only("pretrained"),
        shown_default="pretrained",
    )
    freeze: bool | None = option(
        None,
        "Keep the pretrained backbone fixed (--freeze), or train it too (--fine-tune).",
        switch="--freeze/--fine-tune",
        applies=_takes("freeze"),
        applies_to=_only("freeze"),
        shown_default="freeze when --pretrained",
    )
    weights: Path | None = option(
        None,
        "ImageNet weights file, for machines that cannot download them.",
        applies=_takes("weights"),
        applies_to=_only("weights"),
        kind="file",
    )
    image_size: int = option(
        config.IMAGE_SIZE,
        "Side of the square network input, in pixels (at least the network's smallest).",
        low=1,
        high=2048,
    )
    # The optimisation
    epochs: int = option(config.NUM_EPOCHS, "Epochs to train.", low=1, high=1_000_000)
    batch_size: int = option(config.BATCH_SIZE, "Images per training step.", low=1, high=65536)
    lr: float = option(config.INIT_LR, "Learning rate.", low=0, high=1e6, low_open=True)
    optimizer: str = option("adam", "sgd uses momentum 0.9.", choices=lambda: OPTIMIZERS)
    weight_decay: float = option(0.0, "Weight decay of the optimizer.", low=0, high=1e6)
    lr_schedule: str = option(
        "none",
        "cosine: from --lr towards 0 at the last epoch (re-planned when --resume adds epochs); plateau: "
        "halve after 3 epochs in a row without a lower val loss.",
        choices=lambda: LR_SCHEDULES,
    )
    label_weight: float = option(config.LABEL_WEIGHT, "Weight of the cross-entropy term.", low=0, high=1e6)
    box_weight: float | None = option(
        None,
        "Weight of the box term.",
        low=0,
        high=1e6,
        applies=_box_head,
        applies_to="with a box head",
        shown_default=f"{config.BOX_WEIGHT:g}",
    )
    box_loss: str | None = option(
        None,
        "Box regression loss (model/experiment/loss.py).",
        choices=lambda: BOX_LOSSES,
        applies=_box_head,
        applies_to="with a box head",
        shown_default=config.DEFAULT_BOX_LOSS,
    )
    patience: int = option(0, "Stop after this many epochs without a better model; 0: never.", low=0, high=1_000_000)
    augment: str = option(
        "off",
        "Box-aware augmentation of the training batches, on the device: light (flip, zoom 0.9-1.1, shift, "
        "colour) or strong (zoom 0.7-1.3, stronger colour, grayscale, blur); model/data/augment.py lists each.",
        choices=lambda: AUGMENT_POLICIES,
    )
    seed: int = option(config.SPLIT_SEED, "Seeds the split, the weights and the batches.", low=0, high=MAX_SEED)
    train_eval: str = option(
        "sample",
        "Training loss, accuracy and IoU measured each epoch in evaluation mode (dropout off, as eval.py "
        "measures them), on a fixed sample of the training split as large as the validation split, on all of it "
        "(full), or not (off: the running figures of the training pass only).",
        choices=lambda: TRAIN_EVALS,
    )
    # The data
    dataset: Path | None = option(
        None,
        "Dataset folder.",
        kind="folder",
        shown_default="$CVPR_DATASET, the course folder, ./dataset, else the demo set",
    )
    splits: Path | None = option(
        None,
        "Use the split files of this folder (training_data.csv, val_data.csv, test_data.csv: a run folder, or "
        "the course template's output/) instead of drawing a split.",
        kind="folder",
    )
    cut_val: float | None = option(
        None,
        "Share of the shuffled rows that trains.",
        low=0,
        high=1,
        low_open=True,
        high_open=True,
        applies=_cuts,
        applies_to="without --splits",
        shown_default=f"{config.CUT_VAL:g}",
    )
    cut_test: float | None = option(
        None,
        "Rows between --cut-val and this share validate; the rest test.",
        low=0,
        high=1,
        low_open=True,
        applies=_cuts,
        applies_to="without --splits",
        shown_default=f"{config.CUT_TEST:g}",
    )
    train_fraction: float = option(
        1.0, "Keep this share of the training split, per class (Part 1 Q9.1).", low=0, high=1, low_open=True
    )
    skip_bad_rows: bool = option(False, "Skip bad annotation rows and images instead of stopping.")
    strict: bool = option(
        False,
        "Stop on odd rows too (a box of zero width or height, a box clipped to the border), "
        "which are otherwise kept with a warning.",
    )
    cache: bool = option(
        True,
        "Keep the decoded images on disk for later runs (output/cache/, or $CVPR_CACHE_DIR).",
        switch="--cache/--no-cache",
    )
    workers: int | None = option(
        None, "Threads decoding images.", low=1, high=1024, shown_default="CPU affinity, capped by SLURM_CPUS_PER_TASK"
    )
    # Where and on what
    device: str = option("auto", "auto: cuda, then mps, then cpu.", choices=lambda: DEVICES)
    precision: str = option(
        "auto",
        "Autocast: auto is bf16 on a CUDA GPU that has it (else fp16 with a gradient scaler), and on a CPU "
        "with native bfloat16 instructions; fp32 elsewhere.",
        choices=lambda: PRECISIONS,
    )
    compile: bool = option(
        False,
        "torch.compile the model; compiled before epoch 1, its time reported apart.",
        switch="--compile/--no-compile",
    )
    output_dir: Path = option(config.OUTPUT_DIR, "Folder of the runs.", kind="folder")
    name: str | None = option(None, "Write into OUTPUT_DIR/NAME/ to keep runs apart.")
    overwrite: bool = option(
        False, "Replace a previous run in the same folder (kept until the new run's first epoch is saved)."
    )

    def __post_init__(self) -> None:
        for name, value in self._resolved().items():
            object.__setattr__(self, name, value)
        _check(self)

    def _resolved(self) -> dict[str, Any]:
        """Paths as Paths, and the defaults that depend on other options, where they apply."""
        resolved: dict[str, Any] = {
            name: Path(value) for name in PATH_OPTIONS if isinstance(value := getattr(self, name), str)
        }
        if self.model not in NETWORKS:
            return resolved  # refused by the checks
        view = SimpleNamespace(**{**asdict(self), **resolved})
        for name, default in DERIVED_DEFAULTS.items():
            if getattr(self, name) is None and SPECS[name].applies(view):  # type: ignore[misc]
                resolved[name] = default(view) if callable(default) else default
                setattr(view, name, resolved[name])
        return resolved

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name if self.name else Path(self.output_dir)

    @property
    def network_options(self) -> dict[str, Any]:
        """The constructor options of the run's network (what a checkpoint records): the common ones and the
        network's own that apply (the ImageNet weights file is where they come from, not what the network is)."""
        own = {name: getattr(self, name) for name in NETWORKS[self.model].options() if name != "weights"}
        return {"box_head": self.box_head, "dropout": self.dropout, "image_size": self.image_size, **own}

    def recorded(self) -> dict[str, Any]:
        """The options as config.json records them: plain values, only those that apply."""
        values = {key: str(value) if isinstance(value, Path) else value for key, value in asdict(self).items()}
        return {key: value for key, value in values.items() if value is not None or key in ALWAYS_RECORDED}

    def warnings(self) -> list[str]:
        """Combinations that are allowed but rarely meant."""
        if self.freeze and self.pretrained is False:
            return [
                "warning: --freeze with --no-pretrained keeps the backbone's random weights fixed: only the heads "
                "learn (pass --fine-tune to train the backbone from scratch too)"
            ]
        return []

    def to_json(self) -> str:
        return json.dumps(self.recorded(), indent=2) + "\n"

    def differences(self, other: TrainOptions) -> list[str]:
        """The options that make ``other`` another run than this one (not where or how it ran)."""
        return [
            f.name for f in fields(self) if f.name not in HOW_IT_RAN and getattr(self, f.name) != getattr(other, f.name)
        ]

    def with_values(self, **values: Any) -> TrainOptions:
        return replace(self, **values)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainOptions:
        """Options recorded by a run (config.json, a checkpoint), of this version or an earlier one: keys
        unknown to this version are left out, missing ones take their defaults, and options that earlier
        versions recorded where they do not apply are dropped."""
        chosen = {key: value for key, value in values.items() if key in SPECS}
        return cls(**without_inapplicable(chosen))


def without_inapplicable(values: Mapping[str, Any], keep: frozenset[str] = frozenset()) -> dict[str, Any]:
    """``values`` without the options that do not apply to the run they describe (those in ``keep`` stay, so
    that building the options refuses them)."""
    defaults = {f.name: f.default for f in fields(TrainOptions)}
    view = SimpleNamespace(**{**defaults, **values})
    if view.model not in NETWORKS:
        return dict(values)
    return {
        key: value
        for key, value in values.items()
        if key in keep or SPECS[key].applies is None or SPECS[key].applies(view)  # type: ignore[misc]
    }


SPECS: dict[str, Spec] = {f.name: f.metadata["spec"] for f in fields(TrainOptions)}
TYPES: dict[str, str] = {f.name: str(f.type).split("|")[0].strip() for f in fields(TrainOptions)}  # "int", "Path"...
OPTION_NAMES = tuple(SPECS)
PATH_OPTIONS = tuple(name for name, kind in TYPES.items() if kind == "Path")
# Defaults that depend on other options (the field's own default is None).
DERIVED_DEFAULTS: dict[str, Any] = {
    "batchnorm": True,
    "pretrained": True,
    "freeze": lambda o: o.pretrained,
    "box_weight": config.BOX_WEIGHT,
    "box_loss": config.DEFAULT_BOX_LOSS,
    "cut_val": config.CUT_VAL,
    "cut_test": config.CUT_TEST,
}
ALWAYS_RECORDED = frozenset({"dataset", "splits", "weights", "name"})  # None means something there
# Where and how a run computes, not what it trains: a finished run is the same run whatever these say.
HOW_IT_RAN = frozenset(
    {"dataset", "weights", "output_dir", "name", "overwrite", "workers", "device", "precision", "compile", "cache"}
)


def at_tiny_scale(options: TrainOptions) -> TrainOptions:
    """With $CVPR_TINY=1 (what the docs' commands test runs them with), the run at the smallest scale: one epoch,
    the network's smallest input side. train.py trains so and the plan plans so (its estimate, its statuses)."""
    if not env.tiny():
        return options
    return replace(options, epochs=1, image_size=min_image_size(options.model))


def flag(name: str, value: Any = None) -> str:
    """The command-line form of the option ``name`` (``cut_val`` -> ``--cut-val``); of a switch, the form of
    ``value`` (``freeze`` False -> ``--fine-tune``), or both forms without one."""
    spec = SPECS.get(name)
    if spec is None or not spec.switch:
        return "--" + name.replace("_", "-")
    on, off = spec.switch.split("/")
    return spec.switch if value is None else on if value else off


# ----------------------------------------------------------------------------------------------
# The checks
# ----------------------------------------------------------------------------------------------
def _check(options: TrainOptions) -> None:
    for f in fields(options):
        _check_value(f.name, getattr(options, f.name), SPECS[f.name])
    if options.model not in NETWORKS:
        return
    _check_applies(options)
    _check_together(options)
    _check_name(options.name)


def _check_value(name: str, value: Any, spec: Spec) -> None:
    """One option alone: its type, its range, its choices."""
    if value is None:
        return
    kind = TYPES[name]
    if spec.choices is not None:
        if value not in spec.choices():
            raise OptionError(f"{flag(name)} {value!r}: choose one of {', '.join(spec.choices())}", name)
    elif kind == "bool" and not isinstance(value, bool):
        raise OptionError(f"{flag(name)} {value!r}: expected true or false", name)
    elif kind in ("int", "float"):
        _number(name, value, spec, whole=kind == "int")
    elif kind == "Path" and not isinstance(value, Path):
        raise OptionError(f"{flag(name)} {value!r}: expected a path", name)
    elif kind == "str" and not isinstance(value, str):
        raise OptionError(f"{flag(name)} {value!r}: expected text", name)


def _number(name: str, value: Any, spec: Spec, whole: bool) -> None:
    """``value`` must be a finite number (a whole one when ``whole``) in the spec's range."""
    if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)):
        raise OptionError(f"{flag(name)} {value!r}: expected a {'whole' if whole else 'finite'} number", name)
    if not math.isfinite(value):
        raise OptionError(f"{flag(name)} {value!r}: expected a finite number", name)
    low, high = spec.low, spec.high
    if (low is not None and (value < low or (spec.low_open and value == low))) or (
        high is not None and (value > high or (spec.high_open and value == high))
    ):
        raise OptionError(f"{flag(name)} {value!r}: must be in {spec.interval()}", name)


def _check_applies(o: TrainOptions) -> None:
    """An option that does not apply to the run is None: given anyway, it is refused."""
    for name, spec in SPECS.items():
        if spec.applies is not None and getattr(o, name) is not None and not spec.applies(o):
            why = {
                "with a box head": "--no-box-head",
                "without --splits": f"--splits {o.splits}",
            }.get(spec.applies_to, f"--model {o.model}")
            raise OptionError(
                f"{flag(name, getattr(o, name))} applies {spec.applies_to} only (got {why}); drop it", name
            )


def _check_together(o: TrainOptions) -> None:
    smallest = min_image_size(o.model)
    if o.image_size < smallest:
        raise OptionError(
            f"--image-size {o.image_size} is too small for --model {o.model} (at least {smallest} px)", "image_size"
        )
    if o.weights is not None and not o.pretrained:
        raise OptionError(
            "--weights gives ImageNet weights to start from: it does not go with --no-pretrained", "weights"
        )
    if o.label_weight == 0 and (not o.box_head or o.box_weight == 0):
        raise OptionError(
            "--label-weight 0 leaves nothing to learn without a box term: raise --label-weight or --box-weight",
            "label_weight",
        )
    if o.cut_val is not None and o.cut_test is not None and o.cut_val >= o.cut_test:
        raise OptionError(f"--cut-val {o.cut_val:g} must be below --cut-test ({o.cut_test:g})", "cut_val")


def _check_name(name: str | None) -> None:
    """A run's name is one plain folder name: the run stays inside --output-dir."""
    if name is None:
        return
    plain = name and name not in (".", "..") and not name.startswith(".") and name.isprintable()
    if not plain or any(c in name for c in "/\\\0"):
        raise OptionError(
            f"--name {name!r}: a run's name is one plain folder name (no '/', no control character, not starting "
            f"with '.'), so that the run stays inside --output-dir",
            "name",
        )
