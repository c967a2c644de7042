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

from model import config
from model.core.errors import UserError
from model.core.runtime import Reporter, StopOnSignal, usable_cpus
from model.data import demo
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
from model.data.cache import ImageCache, cache_folder
from model.dataset import DetectionDataset, find_dataset
from model.training.options import TrainOptions


class TrainingError(UserError):
    """Training cannot go on (the loss diverged, a split is empty, no training image is left)."""


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


def locate_dataset(options: TrainOptions, reporter: Reporter) -> Path:
    """--dataset, $CVPR_DATASET, the course folder, ./dataset; else the demo set, generated once."""
    found = find_dataset(options.dataset)
    if found is not None:
        return found
    root = config.DEMO_DATASET
    if demo.ensure(root, config.DEMO_IMAGES, config.DEMO_SEED):
        reporter.line(
            f"No course dataset found (--dataset, ${config.DATASET_ENV_VAR}, {config.COURSE_DATASET}, "
            f"./{config.LOCAL_DATASET}): generated the demo dataset in {root}"
        )
    else:
        reporter.line(f"No course dataset found: using the demo dataset in {root}")
    return root


def choose_rows(
    options: TrainOptions, root: Path, problems: Problems, resumed: Path | None
) -> tuple[list[str], dict[str, list[Annotation]]]:
    """The classes and the rows of each split: a resumed run's own split files, given split files, or
    the template's shuffled cut."""
    rows = read_annotations(root, problems)
    classes = class_names(rows)
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
            where = (
                f"--splits {options.splits}"
                if options.splits
                else f"--cut-val {options.cut_val} --cut-test {options.cut_test}"
            )
            raise TrainingError(f"{where}: the {name} split is empty; widen it")
    return classes, splits


def training_sample(rows: list[Annotation], size: int, seed: int) -> list[Annotation]:
    """A fixed sample of ``size`` training rows (in their order): the same rows every epoch."""
    if size >= len(rows):
        return list(rows)
    chosen = sorted(random.Random(seed).sample(range(len(rows)), size))
    return [rows[i] for i in chosen]


def load_data(
    options: TrainOptions,
    reporter: Reporter,
    stop: StopOnSignal,
    resumed: Path | None,
    classes_of_run: list[str] | None = None,
) -> TrainingData:
    """The rows of each split and the decoded splits. A resumed run (its folder in ``resumed``, its
    classes in ``classes_of_run``) reads its own split files: it goes on with exactly the rows it began
    with, on a dataset of the same classes."""
    root = locate_dataset(options, reporter)
    problems = Problems(skip=options.skip_bad_rows, strict=options.strict)
    classes, splits = choose_rows(options, root, problems, resumed)
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
    if options.train_eval == "off":
        return None
    if options.train_eval == "full" or len(val) >= len(train):
        return train
    rows = training_sample(train.rows, max(1, len(val)), options.seed)
    return DetectionDataset(root, rows, classes, options.image_size, problems, cache=cache)
