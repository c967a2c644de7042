"""Where the dataset is, a run's splits, and one split as the tensors the networks eat.

    rows = read_splits(options, print)          the dataset found, its rows checked, the split drawn (no decode)
    data = load_splits(options, rows, print)    each split decoded once (model/images.py's cache)
    data.train.images  (N, 3, S, S) uint8 RGB   labels (N,) int64, index into the sorted class names
    data.train.boxes   (N, 4) float32 xyxy divided by the ORIGINAL image's width and height, in [0, 1]

The splits keep only the rows that can be used: a row skipped with --skip-bad-rows is left out of every split
file, the test split's included, so that a run's split files can all be evaluated later.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from model import config, env
from model.annotations import (
    Annotation,
    DataError,
    Problems,
    check_box,
    check_labels,
    class_names,
    image_path,
    read_annotations,
    read_split_files,
    split_rows,
    subsample,
)
from model.files import is_dataset
from model.images import (
    ImageCache,
    box_to_unit,
    cache_folder,
    fingerprint,
    fits_in_memory,
    normalize,
    row_digests,
    stored_size,
)

TINY_DEMO_IMAGES = 240  # the demo set with $CVPR_TINY=1 (Part 1 Q9.3 trains on 0.5 % of it: one image)


class DetectionDataset(torch.utils.data.Dataset):
    """The usable rows of one split, decoded once (by an ImageCache, shared between the splits when given); a
    split too large for memory stays memory-mapped in the cache and is gathered batch by batch."""

    def __init__(self, root, rows, classes, image_size, problems, workers=1, mean=None, std=None, cache=None):
        self.root, self.classes, self.image_size = Path(root), list(classes), image_size
        self.mean, self.std = tuple(mean or config.IMAGENET_MEAN), tuple(std or config.IMAGENET_STD)
        if cache is None or any(row.key not in cache.index for row in rows):
            cache = ImageCache.build(root, rows, image_size, problems, workers)
        self.rows, positions, labels, boxes = [], [], [], []
        for row, i in zip(rows, cache.lookup(rows).tolist()):
            width, height = (int(v) for v in cache.sizes[i])
            stored = lambda row=row: stored_size(image_path(root, row))  # noqa: E731  (said only for a box outside)
            box = check_box(row, width, height, problems, stored) if cache.decoded[i] else None  # else reported
            if box is not None:
                self.rows.append(row)
                positions.append(i)
                labels.append(self.classes.index(row.label))
                boxes.append(box_to_unit(box, width, height))
        position = torch.tensor(positions, dtype=torch.int64)
        self.labels = torch.tensor(labels, dtype=torch.int64)  # (N,)
        self.boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)  # (N, 4) in [0, 1]
        self.sizes = cache.sizes[position].reshape(-1, 2)  # (N, 2) original (width, height)
        in_memory = fits_in_memory(self.images_nbytes)
        self._source, self._position = (cache.images[position], None) if in_memory else (cache.images, position)

    @property
    def images(self) -> torch.Tensor:
        """(N, 3, S, S) uint8 (read from the memory map when the split does not fit in memory)."""
        return self._source if self._position is None else self._source[self._position]

    @property
    def images_nbytes(self) -> int:
        return len(self.rows) * 3 * self.image_size**2

    def gather(self, idx: torch.Tensor) -> torch.Tensor:
        """(B,) indices -> (B, 3, S, S) uint8."""
        return self._source[idx if self._position is None else self._position[idx]]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        """(3, S, S) float32 normalised image, label index, (4,) box in [0, 1] (for a DataLoader)."""
        return normalize(self.gather(torch.tensor([i])), self.mean, self.std)[0], self.labels[i], self.boxes[i]

    def paths(self) -> list[Path]:
        return [image_path(self.root, row) for row in self.rows]


# ----------------------------------------------------------------------------------------------
# Where the dataset is
# ----------------------------------------------------------------------------------------------
def find_dataset(explicit: Path | None) -> Path | None:
    """--dataset, $CVPR_DATASET, the course cluster's folder, ./dataset; None when none of them exists. A folder
    given (option or variable) that holds no dataset is an error, never a silent fallback."""
    if explicit is not None:
        if not is_dataset(explicit):
            raise DataError(f"--dataset {explicit}: no images/ and annotations/ folders there (check the path)")
        return Path(explicit)
    named = env.dataset()
    if named is not None and not is_dataset(named):
        raise DataError(
            f"${env.DATASET}={named}: no images/ and annotations/ folders there (fix or unset the variable)"
        )
    return named or next((p for p in (config.COURSE_DATASET, config.LOCAL_DATASET) if is_dataset(p)), None)


def locate_dataset(explicit: Path | None, echo: Callable[[str], None], demo_root=None, demo_images=None) -> Path:
    """``find_dataset``'s, else the demo set, generated once (and said in one line)."""
    from model import demo

    found = find_dataset(explicit)
    if found is not None:
        return found
    root, images = demo_root or config.DEMO_DATASET, demo_images or config.DEMO_IMAGES
    if env.tiny() and demo_root is None:  # the docs' commands at the smallest scale: a small demo set of their own
        root, images = root.with_name(f"{root.name}-tiny"), TINY_DEMO_IMAGES
    if demo.ensure(root, images, config.DEMO_SEED):
        searched = f"--dataset, ${env.DATASET}, {config.COURSE_DATASET}, ./{config.LOCAL_DATASET}"
        echo(f"No course dataset found ({searched}): generated the demo dataset in {root}")
    else:
        echo(f"No course dataset found: using the demo dataset in {root}")
    return root


# ----------------------------------------------------------------------------------------------
# A run's splits
# ----------------------------------------------------------------------------------------------
@dataclass
class Rows:
    """What a run reads before it decodes an image: every check of the rows and the splits is made here, so
    that the plan's dry run makes them too."""

    root: Path
    classes: list[str]
    splits: dict[str, list[Annotation]]  # train / val / test, as the split files hold them
    problems: Problems


def read_splits(options: Any, echo: Callable[[str], None], resumed: Any = None) -> Rows:
    """The dataset found, its rows read and checked, the split drawn, what a run goes on with but should know
    said; a resumed run (``resumed``, its last.pth) reads its own split files on a dataset of its classes, given
    split files (--splits) are read, else the template's shuffled cut."""
    root = locate_dataset(options.dataset, echo)
    problems = Problems(skip=options.skip_bad_rows, strict=options.strict)
    rows = read_annotations(root, problems)
    classes = class_names(rows)
    if len(classes) < 2:
        raise DataError(
            f"{root / 'annotations'}: only the class {classes[0]!r} has rows; a detector needs two classes or more "
            "(check that every annotation file was copied)"
        )
    if resumed is not None:
        if classes != resumed.classes:
            raise DataError(
                f"{root}: its classes are {', '.join(classes)}, but {resumed.path} was trained on "
                f"{', '.join(resumed.classes)}; resume on the dataset the run was trained on (--dataset)"
            )
        return Rows(root, classes, read_split_files(resumed.path.parent, problems), problems)
    if options.splits is not None:  # e.g. the course template's output/
        splits = read_split_files(options.splits, problems)
        check_labels([row for part in splits.values() for row in part], classes, problems)
    else:
        splits = split_rows(rows, options.cut_val, options.cut_test, options.seed)
    splits["train"] = subsample(splits["train"], options.train_fraction, options.seed)
    for name in ("train", "val"):
        if not splits[name]:
            raise DataError(f"{drawn_by(options)}: the {name} split is empty; widen it")
    for line in split_warnings(options, classes, splits):
        echo(line)
    return Rows(root, classes, splits, problems)


def drawn_by(options: Any) -> str:
    """The options that drew the split, as a message names them."""
    if options.splits is not None:
        return f"--splits {options.splits}"
    fraction = f" --train-fraction {options.train_fraction:g}" if options.train_fraction < 1 else ""
    return f"--cut-val {options.cut_val:g} --cut-test {options.cut_test:g}{fraction}"


def split_warnings(options: Any, classes: Sequence[str], splits: dict[str, list[Annotation]]) -> list[str]:
    """A class with no image in a split: allowed (Part 1 Q9.3 trains on 0.5 %), but said: the network cannot
    learn a class it never sees, nor its accuracy be measured where it has no image."""
    lines = []
    for name, shown in (("train", "training"), ("val", "validation"), ("test", "test")):
        absent = sorted(set(classes) - {row.label for row in splits[name]})
        if absent and (name == "train" or splits[name]):
            where = options.splits / config.SPLIT_FILES[name] if options.splits else f"the {shown} split"
            where = where if options.splits else f"{where} ({drawn_by(options)})"
            what = "the network cannot learn it" if name == "train" else f"its {shown} accuracy is not measured"
            count = len(splits[name])
            lines.append(f"warning: class {' and '.join(absent)} has no image in {where} ({count} images): {what}")
    return lines


@dataclass
class TrainingData:
    root: Path
    classes: list[str]
    splits: dict[str, list[Annotation]]  # as written to the split files: the rows that decoded
    train: DetectionDataset
    val: DetectionDataset
    train_eval: DetectionDataset | None  # the training images measured in evaluation mode (--train-eval)
    fingerprints: dict[str, str]  # per split: its rows and their images' bytes, hashed (run.json keeps them)


def load_splits(options: Any, rows: Rows, echo: Callable[[str], None], interrupt=lambda: None) -> TrainingData:
    """Every row decoded once (shared by the splits, and by later runs through the cache file)."""
    from model.device import usable_cpus

    root, problems, began = rows.root, rows.problems, time.perf_counter()
    everything = [row for part in rows.splits.values() for row in part]
    workers = options.workers or usable_cpus()
    folder = cache_folder() if options.cache else None
    digests = row_digests(root, everything)
    cache = ImageCache.build(root, everything, options.image_size, problems, workers, folder, interrupt, digests)
    parts = {
        name: DetectionDataset(root, part, rows.classes, options.image_size, problems, cache=cache)
        for name, part in rows.splits.items()
    }
    if not len(parts["train"]):
        raise DataError(
            f"{root}: no training image is left: all {len(rows.splits['train'])} rows of the training split were "
            f"skipped ({problems.summary()}); fix the dataset's images or rows"
        )
    for line in problems.lines():
        echo(line)
    train, val = parts["train"], parts["val"]
    train_eval = None if options.train_eval == "off" else train
    if options.train_eval == "sample" and len(val) < len(train):  # a fixed sample, the same rows every epoch
        chosen = sorted(random.Random(options.seed).sample(range(len(train)), max(1, len(val))))
        sample = [train.rows[i] for i in chosen]
        train_eval = DetectionDataset(root, sample, rows.classes, options.image_size, problems, cache=cache)
    counts = ", ".join(f"{name} {len(part)}" for name, part in parts.items())
    how = "read from the cache" if cache.from_disk else "decoded"
    echo(
        f"Dataset {root}: classes {', '.join(rows.classes)}; splits: {counts}; images {how} at {options.image_size} "
        f"px in {time.perf_counter() - began:.1f} s"
    )
    splits = {name: part.rows for name, part in parts.items()}  # skipped rows stay out of every split file
    fingerprints = {name: fingerprint(digests, part) for name, part in splits.items()}
    return TrainingData(root, rows.classes, splits, train, val, train_eval, fingerprints)
