"""Internet images (Part 1 Q10, Part 2 Q4, Part 3 Q9), as they come: every image under
``web_images/images/<label>/`` is one row, with its box when ``web_images/annotations.csv`` gives one
and by its label alone otherwise (its box NaN: scored for its label, left out of the box figures)."""

from __future__ import annotations

import math
from pathlib import Path

from model import config
from model.core.files import write_text
from model.data.annotations import Annotation, Problems, is_plain_name, read_rows, write_rows_text

WEB_IMAGES = config.PROJECT_ROOT / "web_images"
ANNOTATIONS = "annotations.csv"


def web_images(folder: Path = WEB_IMAGES) -> list[Path]:
    """The image files under ``folder``/images/<label>/, sorted."""
    images = Path(folder) / "images"
    if not images.is_dir():
        return []
    return sorted(
        p
        for label in images.iterdir()
        if label.is_dir() and is_plain_name(label.name) and not label.name.startswith(".")
        for p in label.iterdir()
        if p.is_file() and p.suffix.lower() in config.IMAGE_EXTENSIONS and not p.name.startswith(".")
    )


def boxed_rows(folder: Path, problems: Problems) -> dict[str, Annotation]:
    """The rows of ``folder``/annotations.csv by image key (label/filename)."""
    path = Path(folder) / ANNOTATIONS
    return {row.key: row for row in read_rows(path, problems)} if path.exists() else {}


def web_rows(folder: Path = WEB_IMAGES, problems: Problems | None = None) -> list[Annotation]:
    """One row per internet image: its annotations.csv row, or its label alone (box NaN)."""
    problems = problems or Problems(skip=True)
    boxed = boxed_rows(folder, problems)
    rows = []
    for path in web_images(folder):
        key = f"{path.parent.name}/{path.name}"
        nan = math.nan
        rows.append(boxed.get(key) or Annotation(path.name, nan, nan, nan, nan, path.parent.name, str(path), 0))
    return rows


def add_box(folder: Path, row: Annotation) -> Path:
    """``row`` added to (or replacing the row of the same image in) ``folder``/annotations.csv; the file's
    other rows are kept as they are, and the file is written whole."""
    path = Path(folder) / ANNOTATIONS
    rows = {r.key: r for r in read_rows(path, Problems(skip=False))} if path.exists() else {}
    rows[row.key] = row
    write_text(path, write_rows_text(list(rows.values())) + "\n", data=True)  # the boxes a student drew
    return path
