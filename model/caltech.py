"""Rebuild the course dataset from the original Caltech-101 release.

Caltech-101 ships images as ``101_ObjectCategories/<category>/image_XXXX.jpg`` and boxes as
``Annotations/<folder>/annotation_XXXX.mat`` whose ``box_coord`` is [top, bottom, left, right].
The course uses three categories, renamed::

    airplanes  + Airplanes_Side_2  -> airplane
    Faces      + Faces_2           -> face
    Motorbikes + Motorbikes_16     -> motorcycle

    python -m model.caltech ~/caltech101 dataset     # then: python train.py (finds ./dataset)
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import click
import cv2
import numpy as np
import scipy.io

from model.errors import UserError, one_line_errors

# course label -> (image folder, annotation folder)
CATEGORIES = {
    "airplane": ("airplanes", "Airplanes_Side_2"),
    "face": ("Faces", "Faces_2"),
    "motorcycle": ("Motorbikes", "Motorbikes_16"),
}


class CaltechError(UserError):
    """A one-line error naming the file and the fix."""


def find_folder(source: Path, name: str) -> Path:
    """``source/name`` or ``source/<one level>/name`` (archives unpack with an extra folder)."""
    for candidate in (source / name, *sorted(source.glob(f"*/{name}"))):
        if candidate.is_dir():
            return candidate
    raise CaltechError(
        f"{source}: no {name}/ folder found; point at the folder holding 101_ObjectCategories/ and Annotations/"
    )


def import_caltech(source: Path, destination: Path) -> dict[str, int]:
    """Copy the three categories into the course layout; returns images written per label.

    Boxes are clipped to their image (a few Caltech boxes end a pixel past the border). The
    dataset is written beside ``destination`` and moved into place complete: a failed import
    leaves nothing, and a folder that holds anything is refused.
    """
    roots = find_folder(source, "101_ObjectCategories"), find_folder(source, "Annotations")
    if destination.exists() and any(destination.iterdir()):
        raise CaltechError(f"{destination}: exists and is not empty; choose a new folder")
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent))
    try:
        counts = {label: _import_category(roots, folders, label, staging) for label, folders in CATEGORIES.items()}
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # the staging folder is ours alone
        raise
    if destination.exists():
        destination.rmdir()  # empty (checked above)
    staging.rename(destination)
    return counts


def _import_category(roots: tuple[Path, Path], folders: tuple[str, str], label: str, destination: Path) -> int:
    """One category's images and boxes, from its image and annotation ``folders`` under the Caltech ``roots``."""
    image_dir, mat_dir = (root / folder for root, folder in zip(roots, folders))
    for folder in (image_dir, mat_dir):
        if not folder.is_dir():
            raise CaltechError(f"{folder}: missing from the Caltech-101 folders")
    out_dir = destination / "images" / label
    out_dir.mkdir(parents=True)
    rows = []
    for image_path in sorted(image_dir.glob("image_*.jpg")):
        mat_path = mat_dir / f"annotation_{image_path.stem.split('_')[-1]}.mat"
        if not mat_path.exists():
            raise CaltechError(f"{mat_path}: missing annotation for {image_path}")
        image = cv2.imread(str(image_path))
        if image is None:
            raise CaltechError(f"{image_path}: unreadable image")
        height, width = image.shape[:2]
        try:  # box_coord is [top, bottom, left, right]
            coords = np.asarray(scipy.io.loadmat(str(mat_path))["box_coord"]).ravel()[:4]
            top, bottom, left, right = (round(float(v)) for v in coords)
        except Exception as error:  # scipy raises several types for a broken file
            raise CaltechError(f"{mat_path}: not a Caltech-101 annotation with box_coord ({error})") from None
        box = (left, top, right, bottom)
        x1, y1, x2, y2 = np.clip(box, 0, (width, height, width, height))  # each corner on its own: never inverted
        if x2 <= x1 or y2 <= y1:
            raise CaltechError(
                f"{mat_path}: its box {','.join(map(str, box))} lies outside the {width}x{height} image {image_path}; "
                "fix or remove that annotation"
            )
        shutil.copy2(image_path, out_dir / image_path.name)
        rows.append(f"{image_path.name},{x1},{y1},{x2},{y2},{label}")
    if not rows:
        raise CaltechError(f"{image_dir}: no image_*.jpg file")
    (destination / "annotations").mkdir(exist_ok=True)
    (destination / "annotations" / f"{label}.csv").write_text("\n".join(rows), encoding="utf-8")
    return len(rows)


@click.command()
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("destination", type=click.Path(file_okay=False, path_type=Path))
def main(source: Path, destination: Path) -> None:
    """Convert Caltech-101 (SOURCE holds 101_ObjectCategories/ and Annotations/) to the course
    layout in DESTINATION.

    \b
    python -m model.caltech ~/caltech101 dataset
    python train.py --dataset dataset
    """
    with one_line_errors():
        counts = import_caltech(source, destination)
    summary = ", ".join(f"{n} {label}" for label, n in counts.items())
    click.echo(f"Wrote {sum(counts.values())} images ({summary}) to {destination}")


if __name__ == "__main__":
    main()
