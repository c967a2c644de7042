"""The options of a training run: one frozen object that checks itself, each field one train.py option.

``config.json`` in a run folder is this object written out (``to_json``): only the options that apply
to the run's network (a Simple run has no ``pretrained``), and ``from_dict`` reads it (or an earlier
version's) back. Building a TrainOptions checks every value, alone and with the others (finite numbers,
ranges, an image size the network can take, options of another network, a plain run name): the command
line only assembles the values, and a wrong one is an OptionError naming its option.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from model import config
from model.core.errors import UserError
from model.core.precision import PRECISIONS
from model.core.runtime import DEVICES
from model.network import MODEL_NAMES, min_image_size, model_options, takes_option
from model.training.augment import AUGMENT_POLICIES
from model.training.losses import BOX_LOSSES

OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("none", "cosine", "plateau")
TRAIN_EVALS = ("sample", "full", "off")
# Flags with two forms: the form a message names.
SWITCHES = {
    "box_head": "--box-head/--no-box-head",
    "batchnorm": "--batchnorm/--no-batchnorm",
    "pretrained": "--pretrained/--no-pretrained",
    "freeze": "--freeze/--fine-tune",
    "cache": "--cache/--no-cache",
    "compile": "--compile/--no-compile",
}
# Where and how a run computes, not what it trains: a finished run is the same run whatever these say.
HOW_IT_RAN = frozenset(
    {"dataset", "weights", "output_dir", "name", "overwrite", "workers", "device", "precision", "compile", "cache"}
)


class OptionError(UserError):
    """An option's value is impossible, alone or with the others."""


def flag(name: str) -> str:
    """The command-line form of the option ``name`` (``cut_val`` -> ``--cut-val``)."""
    return SWITCHES.get(name, "--" + name.replace("_", "-"))


@dataclass(frozen=True)
class TrainOptions:
    """Everything a training run depends on, each field one ``train.py`` option (``--box-head`` is
    ``box_head``). Defaults are the course template's settings; None marks an option that does not
    apply (``pretrained`` of a Simple network, ``cut_val`` with ``--splits``) or, for ``workers``, the
    usable CPUs of the machine it runs on."""

    # The network
    model: str = "simple"  # simple | deeper | vgg | resnet (model/network.py)
    box_head: bool = True  # False: classification only (Parts 1-2)
    dropout: float = 0.5  # dropout of the classification head; 0 removes it (Part 1 Q9.2)
    batchnorm: bool | None = None  # BatchNorm after each convolution; None: on (not resnet, which always has it)
    pretrained: bool | None = None  # resnet: start from ImageNet weights; None: yes
    freeze: bool | None = None  # resnet: keep the backbone fixed; None: freeze when pretrained
    weights: Path | None = None  # resnet: ImageNet weights file, for machines that cannot download them
    image_size: int = config.IMAGE_SIZE  # side of the square network input, in pixels
    # The optimisation
    epochs: int = config.NUM_EPOCHS  # planned epochs
    batch_size: int = config.BATCH_SIZE
    lr: float = config.INIT_LR  # learning rate
    optimizer: str = "adam"  # adam | adamw | sgd (momentum 0.9)
    weight_decay: float = 0.0
    lr_schedule: str = "none"  # none | cosine | plateau (model/training/schedule.py)
    label_weight: float = config.LABEL_WEIGHT  # weight of the cross-entropy term
    box_weight: float = config.BOX_WEIGHT  # weight of the box term
    box_loss: str = config.DEFAULT_BOX_LOSS  # mse | smooth-l1 | giou | smooth-l1+giou (model/training/losses.py)
    patience: int = 0  # stop after this many epochs without a better model; 0: never
    augment: str = "off"  # off | light | strong: box-aware augmentation of training batches
    seed: int = config.SPLIT_SEED  # seeds the split, the weights and the batch order
    train_eval: str = "sample"  # training figures in evaluation mode each epoch: sample | full | off
    # The data
    dataset: Path | None = None  # None: $CVPR_DATASET, the course folder, ./dataset, else the demo set
    splits: Path | None = None  # a folder of split files to use as they are, instead of drawing a split
    cut_val: float | None = None  # share of the shuffled rows that trains; None: 0.8 (none with --splits)
    cut_test: float | None = None  # rows between cut_val and this share validate, the rest test; None: 0.9
    train_fraction: float = 1.0  # keep this share of the training split, per class (Part 1 Q9.1)
    skip_bad_rows: bool = False  # skip unusable rows instead of stopping
    strict: bool = False  # stop on odd rows too (zero-size or clipped boxes)
    cache: bool = True  # keep decoded images on disk for later runs (model/data/cache.py)
    workers: int | None = None  # threads decoding images; None: the usable CPUs
    # Where and on what
    device: str = "auto"  # auto | cpu | cuda | mps
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (model/core/precision.py)
    compile: bool = False  # torch.compile the model (compiled before epoch 1, timed apart)
    output_dir: Path = config.OUTPUT_DIR
    name: str | None = None  # the run goes into output_dir/name/ (output_dir/ without a name)
    overwrite: bool = False  # replace a previous run in that folder

    def __post_init__(self) -> None:
        for name, value in self._resolved().items():
            object.__setattr__(self, name, value)
        _check(self)

    def _resolved(self) -> dict[str, Any]:
        """The defaults that depend on other options."""
        resnet = takes_option(self.model, "pretrained") if self.model in MODEL_NAMES else False
        resolved: dict[str, Any] = {}
        if resnet and self.pretrained is None:
            resolved["pretrained"] = True
        if resnet and self.freeze is None:
            resolved["freeze"] = resolved.get("pretrained", self.pretrained)
        if not resnet and self.model in MODEL_NAMES and self.batchnorm is None:
            resolved["batchnorm"] = True
        if self.splits is None:
            resolved["cut_val"] = config.CUT_VAL if self.cut_val is None else self.cut_val
            resolved["cut_test"] = config.CUT_TEST if self.cut_test is None else self.cut_test
        for name in ("dataset", "splits", "weights", "output_dir"):
            value = getattr(self, name)
            if isinstance(value, str):
                resolved[name] = Path(value)
        return resolved

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name if self.name else Path(self.output_dir)

    @property
    def network_options(self) -> dict[str, Any]:
        """The constructor options of the run's network (those that apply to it)."""
        return model_options(
            self.model,
            self.box_head,
            self.dropout,
            bool(self.batchnorm),
            bool(self.pretrained),
            self.freeze,
            self.image_size,
        )

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
    def from_dict(cls, values: dict[str, Any]) -> TrainOptions:
        """Options recorded by a run (config.json, a checkpoint), of this version or an earlier one:
        keys unknown to this version are left out, missing ones take their defaults, and options that
        earlier versions recorded for networks they do not apply to are dropped."""
        known = {f.name for f in fields(cls)}
        chosen = {key: value for key, value in values.items() if key in known}
        model = chosen.get("model", cls.model)
        for name in ("pretrained", "freeze", "weights", "batchnorm"):
            if model in MODEL_NAMES and not takes_option(model, name):
                chosen.pop(name, None)
        if chosen.get("splits") is not None:
            chosen.pop("cut_val", None)
            chosen.pop("cut_test", None)
        return cls(**chosen)


ALWAYS_RECORDED = frozenset({"dataset", "splits", "weights", "name"})  # None means something there
OPTION_NAMES = tuple(f.name for f in fields(TrainOptions))


# ----------------------------------------------------------------------------------------------
# The checks
# ----------------------------------------------------------------------------------------------
def _check(options: TrainOptions) -> None:
    _check_choices(options)
    _check_numbers(options)
    _check_network(options)
    _check_data(options)
    _check_name(options.name)


def _check_choices(o: TrainOptions) -> None:
    for name, choices in (
        ("model", MODEL_NAMES),
        ("optimizer", OPTIMIZERS),
        ("lr_schedule", LR_SCHEDULES),
        ("box_loss", BOX_LOSSES),
        ("augment", AUGMENT_POLICIES),
        ("train_eval", TRAIN_EVALS),
        ("device", DEVICES),
        ("precision", PRECISIONS),
    ):
        if getattr(o, name) not in choices:
            raise OptionError(f"{flag(name)} {getattr(o, name)!r}: choose one of {', '.join(choices)}")


def _number(name: str, value: Any, low: float, high: float, low_open: bool = False, high_open: bool = False) -> None:
    """``value`` must be a finite number in the range (open ends excluded)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise OptionError(f"{flag(name)} {value!r}: expected a finite number")
    if value < low or (low_open and value == low) or value > high or (high_open and value == high):
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        raise OptionError(f"{flag(name)} {value!r}: must be in {left}{low:g}, {high:g}{right}")


def _integer(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise OptionError(f"{flag(name)} {value!r}: expected a whole number of at least {low}")


def _check_numbers(o: TrainOptions) -> None:
    _number("dropout", o.dropout, 0, 1, high_open=True)
    _number("lr", o.lr, 0, math.inf, low_open=True)
    for name in ("weight_decay", "label_weight", "box_weight"):
        _number(name, getattr(o, name), 0, 1e6)
    if o.label_weight == 0 and (o.box_weight == 0 or not o.box_head):
        raise OptionError(
            "--label-weight 0 leaves nothing to learn without a box term: raise --label-weight or --box-weight"
        )
    _number("train_fraction", o.train_fraction, 0, 1, low_open=True)
    for name, low in (("epochs", 1), ("batch_size", 1), ("patience", 0), ("seed", 0), ("image_size", 1)):
        _integer(name, getattr(o, name), low)
    if o.workers is not None:
        _integer("workers", o.workers, 1)


def _check_network(o: TrainOptions) -> None:
    smallest = min_image_size(o.model)
    if o.image_size < smallest:
        raise OptionError(f"--image-size {o.image_size} is too small for --model {o.model} (at least {smallest} px)")
    for name in ("pretrained", "freeze", "weights", "batchnorm"):
        if getattr(o, name) is not None and not takes_option(o.model, name):
            others = [m for m in MODEL_NAMES if takes_option(m, name)]
            raise OptionError(f"{flag(name)} applies to --model {' or '.join(others)} only (got --model {o.model})")
    if o.weights is not None and not o.pretrained:
        raise OptionError("--weights gives ImageNet weights to start from: it does not go with --no-pretrained")


def _check_data(o: TrainOptions) -> None:
    if o.splits is not None:
        given = [flag(n) for n in ("cut_val", "cut_test") if getattr(o, n) is not None]
        if given:
            raise OptionError(f"--splits uses the split files as they are; {' and '.join(given)} cannot apply")
        return
    _number("cut_val", o.cut_val, 0, 1, low_open=True, high_open=True)
    _number("cut_test", o.cut_test, 0, 1, low_open=True)
    assert o.cut_val is not None and o.cut_test is not None
    if o.cut_val >= o.cut_test:
        raise OptionError(f"--cut-val {o.cut_val:g} must be below --cut-test ({o.cut_test:g})")


def _check_name(name: str | None) -> None:
    """A run's name is one plain folder name: the run stays inside --output-dir."""
    if name is None:
        return
    if not name or name in (".", "..") or any(c in name for c in "/\\\0") or name.startswith("."):
        raise OptionError(
            f"--name {name!r}: a run's name is one plain folder name (no '/', not starting with '.'), so that the "
            f"run stays inside --output-dir"
        )
