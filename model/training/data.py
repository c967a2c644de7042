"""Stage 1 of a run: find the dataset, read and check its rows, split them, decode the images once.

The splits keep only the rows that can be used: a row skipped with --skip-bad-rows (an unreadable
image, a bad box) is left out of every split file, the test split's included, so that the split files
a run writes can all be evaluated later.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from model import config
from model.core.errors import UserError
from model.core.runtime import Reporter, StopOnSignal, usable_cpus
from model.data.annotations import (
    Annotation,
    Problems,
    check_labels,
    class_names,
    read_annotations,
    read_split_files,
    split_rows,
    subsample,
)
from model.data.location import locate_dataset
from model.experiment.options import TrainOptions

if TYPE_CHECKING:
    from model.data.cache import ImageCache
    from model.dataset import DetectionDataset


class TrainingError(UserError):
    """Training cannot go on (the loss diverged, a split is empty, no training image is left)."""


@dataclass
class Rows:
    """What a run reads before it decodes an image: the dataset, its classes, and each split's rows (as the
    split files will hold them). Every check of the rows and splits is made here, so that the plan's dry run
    makes them too, and a run refused for its data never imports torch."""

    root: Path
    classes: list[str]
    splits: dict[str, list[Annotation]]
    problems: Problems
    warnings: list[str]  # what the run may go on with but should say (a class absent from a split)


@dataclass
class TrainingData:
    """The dataset, its classes, the rows of each split (as the split files hold them) and the decoded
    splits: training, validation, and the training images measured in evaluation mode (--train-eval)."""

    root: Path
    classes: list[str]
    splits: dict[str, list[Annotation]]  # train / val / test rows, as written to the split files
    train: DetectionDataset
    val: DetectionDataset
    train_eval: DetectionDataset | None  # a fixed sample of train (or all of it); None with --train-eval off


def choose_rows(
    options: TrainOptions, root: Path, problems: Problems, resumed: Path | None
) -> tuple[list[str], dict[str, list[Annotation]]]:
    """The classes and the rows of each split: a resumed run's own split files, given split files, or
    the template's shuffled cut."""
    rows = read_annotations(root, problems)
    classes = class_names(rows)
    if len(classes) < 2:
        raise TrainingError(
            f"{root / 'annotations'}: only the class {classes[0]!r} has rows; a detector needs two classes or more "
            f"(check that every annotation file was copied)"
        )
    if resumed is not None:
        return classes, read_split_files(resumed, problems)
    if options.splits is not None:  # given split files, e.g. the template's output/
        splits = read_split_files(options.splits, problems)
        check_labels([row for part in splits.values() for row in part], classes, problems)
    else:
        assert options.cut_val is not None and options.cut_test is not None
        splits = split_rows(rows, options.cut_val, options.cut_test, options.seed)
    splits["train"] = subsample(splits["train"], options.train_fraction, options.seed)
    for name in ("train", "val"):
        if not splits[name]:
            raise TrainingError(f"{_where(options)}: the {name} split is empty; widen it")
    return classes, splits


def _where(options: TrainOptions) -> str:
    """The options that drew the split, as a message names them."""
    if options.splits is not None:
        return f"--splits {options.splits}"
    fraction = f" --train-fraction {options.train_fraction:g}" if options.train_fraction < 1 else ""
    return f"--cut-val {options.cut_val:g} --cut-test {options.cut_test:g}{fraction}"


def split_warnings(options: TrainOptions, classes: list[str], splits: dict[str, list[Annotation]]) -> list[str]:
    """A class with no image in a split: allowed (Part 1 Q9.3 asks for a training split of 0.5 %), but said: the
    network cannot learn a class it never sees, nor its accuracy be measured where it has no image."""
    lines = []
    for name, shown in (("train", "training"), ("val", "validation"), ("test", "test")):
        absent = sorted(set(classes) - {row.label for row in splits[name]})
        if not absent or (name != "train" and not splits[name]):
            continue
        drawn = f"the {shown} split ({_where(options)})"
        where = options.splits / config.SPLIT_FILES[name] if options.splits else drawn
        what = "the network cannot learn it" if name == "train" else f"its {shown} accuracy is not measured"
        lines.append(
            f"warning: class {' and '.join(absent)} has no image in {where} ({len(splits[name])} images): {what}"
        )
    return lines


def training_sample(rows: list[Annotation], size: int, seed: int) -> list[Annotation]:
    """A fixed sample of ``size`` training rows (in their order): the same rows every epoch."""
    if size >= len(rows):
        return list(rows)
    chosen = sorted(random.Random(seed).sample(range(len(rows)), size))
    return [rows[i] for i in chosen]


def plan_rows(options: TrainOptions, reporter: Reporter, resumed: Path | None = None) -> Rows:
    """Stage 1a: the dataset found, its rows read and checked, the split drawn (a resumed run, in ``resumed``,
    reads its own split files)."""
    root = locate_dataset(options.dataset, reporter.line)
    problems = Problems(skip=options.skip_bad_rows, strict=options.strict)
    classes, splits = choose_rows(options, root, problems, resumed)
    return Rows(root, classes, splits, problems, split_warnings(options, classes, splits))


def load_data(
    options: TrainOptions, rows: Rows, reporter: Reporter, stop: StopOnSignal, classes_of_run: list[str] | None = None
) -> TrainingData:
    """Stage 1b: the splits of ``rows`` decoded. A resumed run (its classes in ``classes_of_run``) goes on
    with exactly the rows it began with, on a dataset of the same classes."""
    from model.data.cache import ImageCache, cache_folder
    from model.dataset import DetectionDataset

    root, classes, splits, problems = rows.root, rows.classes, rows.splits, rows.problems
    if classes_of_run is not None and classes != classes_of_run:
        raise TrainingError(
            f"{root}: its classes are {', '.join(classes)}, but the run was trained on {', '.join(classes_of_run)}; "
            f"resume on the dataset the run was trained on (--dataset)"
        )
    began = time.perf_counter()
    # one decode of every row, shared by the splits (and by later runs, from the cache file)
    cache = ImageCache.build(
        root,
        [row for part in splits.values() for row in part],
        options.image_size,
        problems,
        options.workers or usable_cpus(),
        cache_folder() if options.cache else None,
        interrupt=stop.check,
    )
    parts = {
        name: DetectionDataset(root, splits[name], classes, options.image_size, problems, cache=cache)
        for name in ("train", "val", "test")
    }
    if not len(parts["train"]):
        raise TrainingError(
            f"{root}: no training image is left: all {len(splits['train'])} rows of the training split were skipped "
            f"({problems.summary()}); fix the dataset's images or rows"
        )
    splits = {name: part.rows for name, part in parts.items()}  # skipped rows stay out of every split file
    for line in problems.lines():
        reporter.line(line)
    train_eval = _train_eval(options, parts["train"], parts["val"], classes, root, problems, cache)
    counts = ", ".join(f"{name} {len(part)}" for name, part in splits.items())
    how = "read from the cache" if cache.from_disk else "decoded"
    reporter.line(
        f"Dataset {root}: classes {', '.join(classes)}; splits: {counts}; images {how} at "
        f"{options.image_size} px in {time.perf_counter() - began:.1f} s"
    )
    return TrainingData(root, classes, splits, parts["train"], parts["val"], train_eval)


def _train_eval(
    options: TrainOptions,
    train: DetectionDataset,
    val: DetectionDataset,
    classes: list[str],
    root: Path,
    problems: Problems,
    cache: ImageCache,
) -> DetectionDataset | None:
    """The training images measured in evaluation mode each epoch (--train-eval)."""
    from model.dataset import DetectionDataset

    if options.train_eval == "off":
        return None
    if options.train_eval == "full" or len(val) >= len(train):
        return train
    rows = training_sample(train.rows, max(1, len(val)), options.seed)
    return DetectionDataset(root, rows, classes, options.image_size, problems, cache=cache)
