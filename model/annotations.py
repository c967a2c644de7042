"""The course layout and its annotation rows: reading, checking, splitting, writing.

Layout (read here; written by the demo generator and the Caltech-101 importer)::

    DATASET/images/<label>/<file>.jpg
    DATASET/annotations/<label>.csv     rows "filename,startX,startY,endX,endY,label", no header

Boxes are absolute pixels, top-left and bottom-right corners. An image is identified by
``label/filename``: file names repeat across classes. Class indices are the sorted labels.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from model import config
from model.errors import UserError
from model.files import write_file

MAX_REPORTED_PROBLEMS = 5  # the bad or odd rows a message names; the others are counted
NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:nan|inf)", re.IGNORECASE)


Box = tuple[float, float, float, float]  # xyxy


class DataError(UserError):
    """Bad input in the dataset; the message is one line naming the file, the line and the fix."""


# ----------------------------------------------------------------------------------------------
# Annotation rows
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Annotation:
    """One row of an annotation or split file; coordinates in pixels of the original image."""

    filename: str
    x1: float
    y1: float
    x2: float
    y2: float
    label: str
    source: str = ""  # file the row was read from, for error messages
    line: int = 0  # 1-based line number in that file

    @property
    def key(self) -> str:
        """Unique identifier of the image: file names repeat across classes."""
        return f"{self.label}/{self.filename}"

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}" if self.source else self.key

    def to_row(self) -> str:
        numbers = (str(int(v)) if float(v).is_integer() else f"{v:.2f}" for v in self.box)
        return ",".join([self.filename, *numbers, self.label])

    @property
    def label_only(self) -> bool:
        """No box is known (its corners are NaN): an internet image given by its label alone."""
        return not all(math.isfinite(v) for v in self.box)

    @property
    def box(self) -> Box:
        return (self.x1, self.y1, self.x2, self.y2)


@dataclass
class Problems:
    """Collects what is wrong with the input rows.

    Bad rows (unusable: unparseable, missing image, unknown label, box outside its image) raise
    at the first one, or with ``skip`` are recorded and left out. Odd rows (usable as they are: a
    box of zero width or height, a box clipped to the border) are kept with a warning, or with
    ``strict`` raise like bad rows.
    """

    skip: bool
    strict: bool = False
    items: list[str] = field(default_factory=list)
    oddities: list[str] = field(default_factory=list)

    def report(self, where: str, what: str, fix: str = "") -> None:
        message = f"{where}: {what}"
        if not self.skip:
            raise DataError(f"{message} ({fix or 'fix or remove the row, or pass --skip-bad-rows to skip such rows'})")
        self.items.append(message)

    def odd(self, where: str, what: str) -> None:
        """A row that is usable as it is: kept with a warning, or an error with ``strict``."""
        message = f"{where}: {what}"
        if self.strict:
            raise DataError(f"{message} (--strict stops on such rows; fix the row, or drop --strict to keep it)")
        self.oddities.append(message)

    def summary(self) -> str | None:
        """One line saying how many rows were skipped and which (the first few), or None."""
        return _listing(f"skipped {len(self.items)} bad row(s)", self.items)

    def lines(self) -> list[str]:
        """What to tell the user once the rows are read: the skipped rows, then the odd rows kept."""
        return [line for line in (self.summary(), self.warning()) if line]

    def warning(self) -> str | None:
        """One line naming the odd rows that were kept (the first few), or None."""
        return _listing(f"warning: kept {len(self.oddities)} odd row(s)", self.oddities)


def _listing(head: str, items: Sequence[str]) -> str | None:
    more = f"; and {len(items) - MAX_REPORTED_PROBLEMS} more" if len(items) > MAX_REPORTED_PROBLEMS else ""
    return f"{head}: {'; '.join(items[:MAX_REPORTED_PROBLEMS])}{more}" if items else None


def parse_row(text: str, source: str, line: int, problems: Problems) -> Annotation | None:
    """Parse one ``filename,startX,startY,endX,endY,label`` row; None when blank or bad."""
    fields = [f.strip() for f in text.split(",")]
    if fields == [""]:
        return None
    if (problem := row_problem(fields)) is not None:
        problems.report(f"{source}:{line}", problem)
        return None
    # The box's geometry is checked against its image when the image is loaded (check_box):
    # files with degenerate boxes, such as the course's own splits, still parse.
    filename, x1, y1, x2, y2, label = fields
    return Annotation(filename, float(x1), float(y1), float(x2), float(y2), label, source, line)


def row_problem(fields: list[str]) -> str | None:
    """What makes a row's ``fields`` unusable, or None."""
    if len(fields) != 6:
        return f"expected 6 fields filename,startX,startY,endX,endY,label, got {len(fields)}"
    filename, *coords, label = fields
    if not all(NUMBER.fullmatch(c) for c in coords):  # float() also reads "2_48" as 248, and full-width digits
        return f"non-numeric coordinate in {','.join(coords)!r} (plain decimal numbers only)"
    if not all(math.isfinite(float(c)) for c in coords):
        return f"non-finite coordinate in {','.join(coords)!r}"
    if not filename or not label:
        return "empty file name or label"
    named = next((f"{w} {n!r}" for w, n in (("file name", filename), ("label", label)) if not is_plain_name(n)), None)
    layout = "the images are DATASET/images/<label>/<file>"
    return f"{named} is not a plain name (no folder, no '..'): {layout}" if named else None


def read_rows(path: Path, problems: Problems) -> list[Annotation]:
    """All rows of one annotation or split file (no header; last line may lack its newline)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file (check the path)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot be read as a text CSV file ({error})") from None
    rows = [row for n, line in enumerate(text.splitlines(), 1) if (row := parse_row(line, str(path), n, problems))]
    if rows and all(0 <= v <= 1 for row in rows for v in row.box) and any(v % 1 for row in rows for v in row.box):
        raise DataError(  # parse_row keeps finite boxes only
            f"{path}: every box lies within [0, 1] (line {rows[0].line}: {','.join(f'{v:g}' for v in rows[0].box)}):"
            " boxes divided by the image's size, as YOLO writes them? The course's rows are in pixels "
            "(filename,startX,startY,endX,endY,label): convert them"
        )
    return rows


def is_plain_name(name: str) -> bool:
    """A single file or folder name: rows never reach outside DATASET/images/<label>/."""
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0")


def _visible(entry: Path) -> bool:
    return not entry.name.startswith((".", "_"))


def read_annotations(root: Path, problems: Problems) -> list[Annotation]:
    """Rows of every ``annotations/*.csv`` of a dataset, in file order, the files in the course
    cluster's order (motorcycle, airplane, face, then any other by name): the order the
    template's split is drawn from.

    Rows whose label has no ``images/<label>/`` folder are reported; stray folders under images/
    without rows and hidden files (.DS_Store, ._*) are ignored.
    """
    annotations_dir, images_dir = Path(root) / "annotations", Path(root) / "images"
    for folder in (annotations_dir, images_dir):
        if not folder.is_dir():
            raise DataError(f"{folder}: missing; a dataset holds images/<label>/ and annotations/*.csv")
    order = config.ANNOTATION_FILE_ORDER
    csvs = (p for p in annotations_dir.iterdir() if p.suffix.lower() == ".csv" and _visible(p))
    files = sorted(csvs, key=lambda p: (order.index(p.name) if p.name in order else len(order), p.name))
    if not files:
        raise DataError(f"{annotations_dir}: no .csv annotation file (expected e.g. airplane.csv, face.csv)")
    known = {p.name for p in images_dir.iterdir() if p.is_dir() and _visible(p)}
    rows = []
    for path in files:
        for row in read_rows(path, problems):
            if row.label not in known:
                problems.report(row.where, f"unknown label {row.label!r}: no folder {images_dir / row.label}")
                continue
            rows.append(row)
    for label in sorted(known - {row.label for row in rows}):  # a class that would silently drop out of training
        # images/<label>/ holds images but no row names them (a half-copied dataset?): said with the annotation
        # file that should hold its rows
        count = sum(p.suffix.lower() in config.IMAGE_EXTENSIONS for p in (images_dir / label).iterdir())
        if count:
            path = next((p for p in files if p.stem.lower() == label.lower()), annotations_dir / f"{label}.csv")
            if path.stem != label:
                what = f"holds no row labelled {label!r} (its name differs from images/{label}/ in case only)"
            else:
                what = "holds no row" if path.exists() else "is missing"
            problems.report(
                str(path),
                f"{what} while {images_dir / label} holds {count} image(s), so class {label!r} would be left out",
                "copy the annotation file again, or pass --skip-bad-rows to train without that class",
            )
    if not rows:
        raise DataError(f"{annotations_dir}: the annotation files hold no usable row")
    check_unique(rows)
    return rows


def check_unique(rows: Sequence[Annotation]) -> None:
    """One box per image: a second row for the same label/filename is an error."""
    seen: dict[str, str] = {}
    for row in rows:
        if row.key in seen:
            raise DataError(f"{row.where}: {row.key} is annotated twice (first at {seen[row.key]}); keep one row")
        seen[row.key] = row.where


def class_names(rows: Sequence[Annotation]) -> list[str]:
    """Sorted labels: the class index of a label never depends on the filesystem."""
    return sorted({row.label for row in rows})


def check_labels(rows: Sequence[Annotation], classes: Sequence[str], problems: Problems) -> list[Annotation]:
    """Rows whose label is one of ``classes`` (e.g. a checkpoint's); others are reported."""
    for row in rows:
        if row.label not in classes:
            problems.report(row.where, f"unknown label {row.label!r}; the model knows {', '.join(classes)}")
    return [row for row in rows if row.label in classes]


# ----------------------------------------------------------------------------------------------
# Splits
# ----------------------------------------------------------------------------------------------
def split_rows(
    rows: Sequence[Annotation], cut_val=config.CUT_VAL, cut_test=config.CUT_TEST, seed: int = config.SPLIT_SEED
) -> dict[str, list[Annotation]]:
    """Seeded shuffle, then cut at int(cut_val*N) and int(cut_test*N), as the course template (0 < cut_val <
    cut_test <= 1: --cut-val's and --cut-test's ranges, and options.check)."""
    shuffled = list(rows)
    random.Random(seed).shuffle(shuffled)
    a, b = int(cut_val * len(shuffled)), int(cut_test * len(shuffled))
    return {"train": shuffled[:a], "val": shuffled[a:b], "test": shuffled[b:]}


def read_split_files(folder: Path, problems: Problems) -> dict[str, list[Annotation]]:
    """The three split files of a run folder, or of the course template's output/ (same names)."""
    if missing := [name for name in config.SPLIT_FILES.values() if not (folder / name).is_file()]:
        raise DataError(
            f"{folder}: no {missing[0]} there; a split folder holds "
            f"{', '.join(config.SPLIT_FILES.values())} (a run folder, or the template's output/)"
        )
    splits = {name: read_rows(folder / filename, problems) for name, filename in config.SPLIT_FILES.items()}
    check_unique([row for part in splits.values() for row in part])
    return splits


def subsample(rows: Sequence[Annotation], fraction: float, seed: int = config.SPLIT_SEED) -> list[Annotation]:
    """A stratified ``fraction`` of rows (at least one per class), order kept (Part 1 Q9.1); all of them for 1
    (--train-fraction's range is (0, 1])."""
    rng, chosen = random.Random(seed), list[int]()
    for label in class_names(rows):
        indices = [i for i, row in enumerate(rows) if row.label == label]
        chosen += rng.sample(indices, max(1, round(fraction * len(indices))))
    return [rows[i] for i in sorted(chosen)]


def write_rows_text(rows: Sequence[Annotation]) -> str:
    """Rows as the course template writes its split files: joined by newlines, no header, no newline
    after the last row (so the course's own split files come out byte for byte)."""
    return "\n".join(row.to_row() for row in rows)


def image_path(root: Path, row: Annotation) -> Path:
    return Path(root) / "images" / row.label / row.filename


# ----------------------------------------------------------------------------------------------
# Internet images (Part 1 Q10, Part 2 Q4, Part 3 Q9), as they come: every image under web_images/images/<label>/
# is one row, with its box when web_images/annotations.csv gives one, by its label alone otherwise (box NaN)
# ----------------------------------------------------------------------------------------------
WEB_IMAGES = config.PROJECT_ROOT / "web_images"
ANNOTATIONS = "annotations.csv"


def image_files(folder: Path) -> list[Path]:
    """The image files in ``folder`` (hidden ones apart), sorted."""
    visible = (p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    return sorted(p for p in visible if p.suffix.lower() in config.IMAGE_EXTENSIONS)


def web_images(folder: Path) -> list[Path]:
    """The image files under ``folder``/images/<label>/, sorted."""
    images = Path(folder) / "images"
    labels = [f for f in (sorted(images.iterdir()) if images.is_dir() else []) if f.is_dir() and is_plain_name(f.name)]
    return [p for label in labels if not label.name.startswith(".") for p in image_files(label)]


def boxed_rows(folder: Path, problems: Problems) -> dict[str, Annotation]:
    """The rows of ``folder``/annotations.csv by image key (label/filename)."""
    path = Path(folder) / ANNOTATIONS
    return {row.key: row for row in read_rows(path, problems)} if path.exists() else {}


def web_rows(folder: Path, problems: Problems) -> list[Annotation]:
    """One row per internet image: its annotations.csv row, or its label alone (box NaN)."""
    boxed, nan = boxed_rows(folder, problems), math.nan
    return [
        boxed.get(f"{p.parent.name}/{p.name}") or Annotation(p.name, nan, nan, nan, nan, p.parent.name, str(p), 0)
        for p in web_images(folder)
    ]


def add_box(folder: Path, row: Annotation) -> Path:
    """``row`` added to (or replacing the row of the same image in) ``folder``/annotations.csv; the file's
    other rows are kept as they are, and the file is written whole."""
    path, rows = Path(folder) / ANNOTATIONS, {**boxed_rows(folder, Problems(skip=False)), row.key: row}
    write_file(path, (write_rows_text(list(rows.values())) + "\n").encode(), data_folder=True)  # a student's boxes
    return path
