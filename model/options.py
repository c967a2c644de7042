"""The options of a training run: one frozen object whose fields are train.py's options.

``config.json`` in a run folder is this object written out (``to_json``); ``train.py --config``
reads one back as the defaults of its options, and a checkpoint records it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from model import config
from model.network import model_options


@dataclass(frozen=True)
class TrainOptions:
    """Everything a training run depends on, each field one ``train.py`` option (``--box-head`` is
    ``box_head``). Defaults are the course template's settings."""

    # The network
    model: str = "simple"  # simple | deeper | vgg | resnet (model/network.py)
    box_head: bool = True  # False: classification only (Parts 1-2)
    dropout: float = 0.5  # dropout of the classification head; 0 removes it (Part 1 Q9.2)
    batchnorm: bool = True  # BatchNorm after each convolution (not resnet, which always has it)
    pretrained: bool = True  # resnet: start from ImageNet weights
    freeze: bool | None = None  # resnet: keep the backbone fixed; None: freeze when pretrained
    weights: Path | None = None  # resnet: ImageNet weights file, for machines that cannot download them
    image_size: int = config.IMAGE_SIZE  # side of the square network input, in pixels
    # The optimisation
    epochs: int = config.NUM_EPOCHS  # planned epochs
    batch_size: int = config.BATCH_SIZE
    lr: float = config.INIT_LR  # learning rate
    optimizer: str = "adam"  # adam | adamw | sgd (momentum 0.9)
    weight_decay: float = 0.0
    lr_schedule: str = "none"  # none | cosine | plateau (model/training.py, LearningRate)
    label_weight: float = config.LABEL_WEIGHT  # weight of the cross-entropy term
    box_weight: float = config.BOX_WEIGHT  # weight of the box term
    box_loss: str = config.DEFAULT_BOX_LOSS  # mse | smooth-l1 | giou | smooth-l1+giou (model/losses.py)
    patience: int = 0  # stop after this many epochs without a better model; 0: never
    augment: str = "off"  # off | light | strong: box-aware augmentation of training batches (model/augment.py)
    seed: int = config.SPLIT_SEED  # seeds the split, the weights and the batch order
    # The data
    dataset: Path | None = None  # None: $CVPR_DATASET, the course folder, ./dataset, else the demo set
    splits: Path | None = None  # a folder of split files to use as they are, instead of drawing a split
    cut_val: float = config.CUT_VAL  # share of the shuffled rows that trains
    cut_test: float = config.CUT_TEST  # rows between cut_val and this share validate, the rest test
    train_fraction: float = 1.0  # keep this share of the training split, per class (Part 1 Q9.1)
    skip_bad_rows: bool = False  # skip unusable rows instead of stopping
    strict: bool = False  # stop on odd rows too (zero-size or clipped boxes)
    cache: bool = True  # keep decoded images on disk for later runs (model/cache.py)
    workers: int | None = None  # threads decoding images; None: the usable CPUs
    # Where and on what
    device: str = "auto"  # auto | cpu | cuda | mps
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (model/precision.py)
    compile: bool = False  # torch.compile the model (compiled before epoch 1, timed apart)
    output_dir: Path = config.OUTPUT_DIR
    name: str | None = None  # the run goes into output_dir/name/ (output_dir/ without a name)
    overwrite: bool = False  # replace a previous run in that folder

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name if self.name else Path(self.output_dir)

    @property
    def network_options(self) -> dict[str, Any]:
        """The constructor options of the run's network (those that apply to it)."""
        return model_options(
            self.model, self.box_head, self.dropout, self.batchnorm, self.pretrained, self.freeze, self.image_size
        )

    def to_json(self) -> str:
        values = {key: str(value) if isinstance(value, Path) else value for key, value in asdict(self).items()}
        return json.dumps(values, indent=2) + "\n"

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainOptions:
        """Options from plain values (config.json, a checkpoint); keys unknown to this version are
        left out, missing ones take their defaults (runs of earlier versions)."""
        paths = {f.name for f in fields(cls) if "Path" in str(f.type)}
        known = {f.name for f in fields(cls)}
        chosen: dict[str, Any] = {
            key: Path(value) if key in paths and value is not None else value
            for key, value in values.items()
            if key in known
        }
        return cls(**chosen)


OPTION_NAMES = tuple(f.name for f in fields(TrainOptions))
