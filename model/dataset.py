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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from model import config, env
from model.annotations import (
    Annotation,
    Box,
    DataError,
    Problems,
    check_labels,
    class_names,
    image_files,
    image_path,
    read_annotations,
    read_rows,
    read_split_files,
    split_rows,
    subsample,
    web_rows,
)
from model.errors import UserError
from model.files import WriteError, is_dataset, read_json, refuse_data_folder
from model.images import ImageCache, box_to_unit, fingerprint, normalize, row_digests, stored_size

# A box may stick out of its image by this many pixels (annotation tools round corners outward): it is then clipped.
# Beyond that the row is reported as bad.
BOX_TOLERANCE_PX = 2.0
TINY_DEMO_IMAGES = 240  # the demo set with $CVPR_TINY=1 (Part 1 Q9.3 trains on 0.5 % of it: one image)


class DetectionDataset(torch.utils.data.Dataset):
    """The usable rows of one split, decoded once (by an ImageCache, shared between the splits when given) and
    gathered batch by batch from it."""

    def __init__(self, root, rows, classes, image_size, problems, workers=1, mean=None, std=None, cache=None):
        self.root, self.classes, self.image_size = Path(root), list(classes), image_size
        self.mean, self.std = tuple(mean or config.IMAGENET_MEAN), tuple(std or config.IMAGENET_STD)
        cache = cache or ImageCache.build(root, rows, image_size, problems, workers)  # a given one holds the rows
        self.rows, positions, boxes = [], [], []
        for row, i in zip(rows, [cache.index[row.key] for row in rows]):
            width, height = (int(v) for v in cache.sizes[i])
            # an image that did not decode is reported by the cache, a box that cannot be used by check_box
            if cache.decoded[i] and (box := check_box(row, width, height, problems, image_path(root, row))):
                self.rows.append(row)
                positions.append(i)
                boxes.append(box_to_unit(box, width, height))
        self._position = torch.tensor(positions, dtype=torch.int64)  # (N,) the split's rows in the cache
        self.labels = torch.tensor([self.classes.index(row.label) for row in self.rows], dtype=torch.int64)  # (N,)
        self.boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)  # (N, 4) in [0, 1]
        self.sizes = cache.sizes[self._position].reshape(-1, 2)  # (N, 2) original (width, height)
        self._cached = cache.images  # (all, 3, S, S) uint8, not copied: a batch gathers its rows from the cache

    @property
    def images(self) -> torch.Tensor:
        """(N, 3, S, S) uint8, gathered from the cache."""
        return self._cached[self._position]

    @property
    def images_nbytes(self) -> int:
        return len(self.rows) * 3 * self.image_size**2

    def gather(self, idx: torch.Tensor) -> torch.Tensor:
        """(B,) indices -> (B, 3, S, S) uint8."""
        return self._cached[self._position[idx]]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        """(3, S, S) float32 normalised image, label index, (4,) box in [0, 1] (for a DataLoader)."""
        return normalize(self.gather(torch.tensor([i])), self.mean, self.std)[0], self.labels[i], self.boxes[i]

    def paths(self) -> list[Path]:
        return [image_path(self.root, row) for row in self.rows]


# ----------------------------------------------------------------------------------------------
# Where the dataset is, and where its decoded images are kept
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


def default_demo() -> tuple[Path, int]:
    """The demo set used where no dataset is found, and its size; the docs' commands at the smallest scale
    ($CVPR_TINY=1) have a small one of their own."""
    if env.tiny():
        return config.DEMO_DATASET.with_name(f"{config.DEMO_DATASET.name}-tiny"), TINY_DEMO_IMAGES
    return config.DEMO_DATASET, config.DEMO_IMAGES


def locate_dataset(explicit: Path | None, echo: Callable[[str], object], demo_root=None, demo_images=0) -> Path:
    """``find_dataset``'s, else the demo set (``default_demo``'s, or ``demo_images`` at ``demo_root``), generated
    once (and said in one line)."""
    from model import demo

    if (found := find_dataset(explicit)) is not None:
        return found
    root, images = (demo_root, demo_images) if demo_root is not None else default_demo()
    if demo.is_complete(root, images, config.DEMO_SEED):  # generated once, by an earlier run
        echo(f"No course dataset found: using the demo dataset in {root}")
    else:
        demo.generate(root, images, config.DEMO_SEED)
        searched = f"--dataset, ${env.DATASET}, {config.COURSE_DATASET}, ./{config.LOCAL_DATASET}"
        echo(f"No course dataset found ({searched}): generated the demo dataset in {root}")
    return root


def cache_folder() -> Path:
    """Where decoded images are kept: $CVPR_CACHE_DIR, else output/cache/ (never inside a data folder)."""
    named = env.cache_dir()
    if named is not None:
        try:
            refuse_data_folder(named, f"${env.CACHE_DIR}")
        except WriteError as error:
            raise WriteError(f"{error}, or pass --no-cache") from None
    return named or config.CACHE_DIR


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
    # a class with no image in a split: allowed (Part 1 Q9.3 trains on 0.5 %), but said: the network cannot learn a
    # class it never sees, nor its accuracy be measured where it has no image
    for name, shown in (("train", "training"), ("val", "validation"), ("test", "test")):
        absent = sorted(set(classes) - {row.label for row in splits[name]})
        if absent and (name == "train" or splits[name]):
            drawn = f"the {shown} split ({drawn_by(options)})"
            where = options.splits / config.SPLIT_FILES[name] if options.splits else drawn
            what = "the network cannot learn it" if name == "train" else f"its {shown} accuracy is not measured"
            echo(f"warning: class {' and '.join(absent)} has no image in {where} ({len(splits[name])} images): {what}")
    return Rows(root, classes, splits, problems)


def drawn_by(options: Any) -> str:
    """The options that drew the split, as a message names them."""
    if options.splits is not None:
        return f"--splits {options.splits}"
    fraction = f" --train-fraction {options.train_fraction:g}" if options.train_fraction < 1 else ""
    return f"--cut-val {options.cut_val:g} --cut-test {options.cut_test:g}{fraction}"


@dataclass
class TrainingData:
    root: Path
    classes: list[str]
    splits: dict[str, list[Annotation]]  # as written to the split files: the rows that decoded
    train: DetectionDataset
    val: DetectionDataset
    train_eval: DetectionDataset | None  # the training images measured in evaluation mode (--train-eval)
    fingerprints: dict[str, str]  # per split: its rows and their images' bytes, hashed (run.json keeps them)


def load_splits(options: Any, rows: Rows, echo: Callable[[str], None], interrupt=lambda: None, trained=None):
    """Every row decoded once (shared by the splits, and by later runs through the cache file). ``trained``: the
    run.json of the run to go on with, whose splits' fingerprints these pictures must have."""
    from model.device import usable_cpus

    root, problems, began = rows.root, rows.problems, time.perf_counter()
    everything = [row for part in rows.splits.values() for row in part]
    workers = options.workers or usable_cpus()
    folder = cache_folder() if options.cache else None
    digests = row_digests(root, everything)
    recorded = (trained or {}).get("data")
    if recorded and recorded != {name: fingerprint(digests, part) for name, part in rows.splits.items()}:
        raise DataError(
            f"{root}: holds other pictures or boxes for the run's rows than it trained on (in "
            f"{trained.get('dataset')}); resume on that dataset (--dataset), or train anew"
        )
    cache = ImageCache.build(root, everything, options.image_size, problems, workers, folder, interrupt, digests)

    def decoded(part: list[Annotation]) -> DetectionDataset:  # the usable rows of ``part``, from the shared cache
        return DetectionDataset(root, part, rows.classes, options.image_size, problems, cache=cache)

    parts = {name: decoded(part) for name, part in rows.splits.items()}
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
        train_eval = decoded([train.rows[i] for i in chosen])
    counts = ", ".join(f"{name} {len(part)}" for name, part in parts.items())
    how = "read from the cache" if cache.from_disk else "decoded"
    echo(
        f"Dataset {root}: classes {', '.join(rows.classes)}; splits: {counts}; images {how} at {options.image_size} "
        f"px in {time.perf_counter() - began:.1f} s"
    )
    splits = {name: part.rows for name, part in parts.items()}  # skipped rows stay out of every split file
    fingerprints = {name: fingerprint(digests, part) for name, part in splits.items()}
    return TrainingData(root, rows.classes, splits, train, val, train_eval, fingerprints)


def check_box(row: Annotation, width: int, height: int, problems: Problems, path: Path | None = None) -> Box | None:
    """The row's box clipped to its (width, height) image, or None (reported) when it is unusable; ``path``, its
    image, is read only to name its stored size when a box lies outside.

    A box of zero width or height is what the annotation says (Caltech-101 has one): it is kept,
    with a warning, since it still trains the classifier and its box loss stays finite. Each
    corner is clipped on its own, so a box past the border can never come out inverted.
    """
    x1, y1, x2, y2 = row.box
    if row.label_only:
        return row.box  # an image known by its label alone (an internet image without a drawn box)
    box = f"box {x1:g},{y1:g},{x2:g},{y2:g}"
    if x2 < x1 or y2 < y1:
        problems.report(row.where, f"{box} is inverted (endX < startX or endY < startY)")
        return None
    if min(x1, y1) < -BOX_TOLERANCE_PX:
        problems.report(row.where, f"{box} starts outside the image")
        return None
    if x2 > width + BOX_TOLERANCE_PX or y2 > height + BOX_TOLERANCE_PX:
        w, h = stored_size(path) if path is not None else (width, height)  # the file's own size, its header's
        note = f" (the file is {w}x{h}, turned upright by its EXIF orientation)" if (w, h) != (width, height) else ""
        problems.report(row.where, f"{box} lies outside the {width}x{height} image{note}")
        return None
    clipped = (min(max(x1, 0.0), width), min(max(y1, 0.0), height), min(max(x2, 0.0), width), min(max(y2, 0.0), height))
    if clipped != (x1, y1, x2, y2):
        problems.odd(row.where, f"{box} was clipped to the {width}x{height} image")
    if clipped[2] == clipped[0] or clipped[3] == clipped[1]:
        side = "width" if clipped[2] == clipped[0] else "height"
        problems.odd(row.where, f"{box} has zero {side}; kept (it trains the classifier, its box loss stays finite)")
    return clipped


# ----------------------------------------------------------------------------------------------
# Where a CSV's images are, and the images predict.py is given
# ----------------------------------------------------------------------------------------------
def images_root(csv_path: Path, dataset: Path | None, checkpoint: Any) -> Path:
    """Where a CSV's images are: --dataset; else the CSV's own dataset (DATASET/annotations/x.csv, or a folder of
    internet images beside images/); else, for a run's split file, the dataset that run recorded (run.json beside
    it); else the dataset the model was trained on."""
    if dataset is not None:
        if not (Path(dataset) / "images").is_dir():
            raise DataError(f"--dataset {dataset}: no images/ folder there (check the path)")
        return Path(dataset)
    for candidate in (Path(csv_path).parent.parent, Path(csv_path).parent):
        if (candidate / "images").is_dir():
            return candidate
    run_file = Path(csv_path).parent / config.RUN_FILE  # a run's split file: the dataset that run recorded
    facts = read_json(run_file)
    recorded = facts.get("dataset") if isinstance(facts, dict) else None
    found = Path(recorded) if recorded else checkpoint.dataset
    if recorded and checkpoint.dataset is not None and Path(recorded).resolve() != checkpoint.dataset.resolve():
        import click

        click.echo(
            f"warning: {csv_path} is a split of the run in {run_file.parent}, trained on {recorded}: its images are "
            f"read there, not in {checkpoint.dataset} ({checkpoint.path}'s dataset)",
            err=True,
        )
    if found is None:
        raise DataError(f"{csv_path}: cannot tell where its images are; pass --dataset PATH")
    return found


@dataclass
class Item:
    path: Path
    label: str | None = None  # the true label, when known
    box: Box | None = None  # the true box in pixels, when known

    def file_name(self, index: int, suffix: str) -> str:
        """The name it is saved under: its place in the inputs, its label and its file."""
        return f"{index:04d}_{self.label or 'image'}_{self.path.stem}{suffix}"


def web_folder(path: Path) -> Path | None:
    """The web_images-like folder of ``path`` (it, or its parent when ``path`` is its images/)."""
    return next((c for c in (path, path.parent) if (c / "images").is_dir() and not (c / "annotations").is_dir()), None)


def collect_items(inputs: tuple[Path, ...], dataset: Path | None, checkpoint: Any, problems: Problems) -> list[Item]:
    """Every image INPUT names, with its true label and box where known."""
    items = [item for given in inputs for item in items_of(Path(given), dataset, checkpoint, problems)]
    if not items:
        raise UserError(f"no image found in {', '.join(map(str, inputs))}")
    if not any(item.path.exists() for item in items):
        raise UserError(f"{items[0].path.parent.parent}: none of the {len(items)} images of "
                        f"{', '.join(map(str, inputs))} is there (has the dataset moved?); pass --dataset with the "
                        "folder that holds them")  # fmt: skip
    return items


def items_of(path: Path, dataset: Path | None, checkpoint: Any, problems: Problems) -> list[Item]:
    if path.is_file() and path.suffix.lower() in config.IMAGE_EXTENSIONS:
        return [Item(path)]
    if path.is_file() and path.suffix.lower() == ".csv":
        root, rows = images_root(path, dataset, checkpoint), read_rows(path, problems)
    elif is_dataset(path):
        root, rows = path, read_annotations(path, problems)
    elif path.is_dir() and (folder := web_folder(path)) is not None:
        root, rows = folder, web_rows(folder, problems)  # internet images: boxes where annotations.csv has one
    elif path.is_dir():  # images of <label>/ subfolders, and the images beside them (their label unknown)
        labelled = [Item(p, c) for c in checkpoint.classes if (path / c).is_dir() for p in image_files(path / c)]
        return labelled + [Item(p) for p in image_files(path)]
    else:
        raise UserError(f"INPUT {path}: not a CSV file, an image or a folder")
    rows = check_labels(rows, checkpoint.classes, problems)
    return [Item(image_path(root, r), r.label, None if r.label_only else r.box) for r in rows]
