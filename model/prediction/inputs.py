"""predict.py's INPUT: any mix of CSV files in the course row format (split files, annotation files,
web_images/annotations.csv: true label and box known), image files, and folders (a dataset, a folder laid out
as images/<label>/ or <label>/ giving the true label, or plain images)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from model import config
from model.core.errors import UserError
from model.data.annotations import Annotation, Problems, check_labels, image_path, read_annotations, read_rows
from model.data.web import web_rows
from model.evaluation.inference import images_root
from model.runs.checkpoint import Checkpoint

Box = tuple[float, float, float, float]  # xyxy in pixels


@dataclass
class Item:
    path: Path
    label: str | None = None  # true label, when known
    box: Box | None = None  # true box in pixels, when known

    def file_name(self, index: int, suffix: str) -> str:
        """The name it is saved under: its place in the inputs, its label and its file."""
        return f"{index:04d}_{self.label or 'image'}_{self.path.stem}{suffix}"


def image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in config.IMAGE_EXTENSIONS and not p.name.startswith(".")
    )


def _rows_to_items(root: Path, rows: list[Annotation]) -> list[Item]:
    return [Item(image_path(root, row), row.label, row.box) for row in rows]


def web_folder(path: Path) -> Path | None:
    """The web_images-like folder of ``path`` (it, or its parent when ``path`` is its images/)."""
    for candidate in (path, path.parent):
        if (candidate / "images").is_dir() and not (candidate / "annotations").is_dir():
            return candidate
    return None


def collect_items(
    inputs: tuple[Path, ...], dataset: Path | None, checkpoint: Checkpoint, problems: Problems
) -> list[Item]:
    """Every image INPUT names, with its true label and box where known."""
    items: list[Item] = []
    for given in inputs:
        items += _items_of(Path(given), dataset, checkpoint, problems)
    if not items:
        raise UserError(f"no image found in {', '.join(map(str, inputs))}")
    if not any(item.path.exists() for item in items):
        raise UserError(
            f"{items[0].path.parent.parent}: none of the {len(items)} images of {', '.join(map(str, inputs))} is "
            f"there (has the dataset moved?); pass --dataset with the folder that holds them"
        )
    return items


def _items_of(path: Path, dataset: Path | None, checkpoint: Checkpoint, problems: Problems) -> list[Item]:
    classes = checkpoint.classes
    if path.is_file() and path.suffix.lower() == ".csv":
        rows = check_labels(read_rows(path, problems), classes, problems)
        return _rows_to_items(images_root(path, dataset, checkpoint), rows)
    if path.is_file() and path.suffix.lower() in config.IMAGE_EXTENSIONS:
        return [Item(path)]
    if path.is_dir() and (path / "annotations").is_dir() and (path / "images").is_dir():
        return _rows_to_items(path, check_labels(read_annotations(path, problems), classes, problems))
    folder = web_folder(path) if path.is_dir() else None
    if folder is not None:  # internet images: boxes where annotations.csv has one
        rows = check_labels(web_rows(folder, problems), classes, problems)
        return [Item(image_path(folder, r), r.label, None if r.label_only else r.box) for r in rows]
    if path.is_dir():
        folders = [path / c for c in classes if (path / c).is_dir()]
        labelled = [Item(p, folder.name) for folder in folders for p in image_files(folder)]
        return labelled or [Item(p) for p in image_files(path)]
    raise UserError(f"INPUT {path}: not a CSV file, an image or a folder")
