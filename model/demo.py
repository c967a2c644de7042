"""A procedural stand-in for the course dataset, written in exactly the course layout: its images drawn by
model/demo_images.py, the class balance the course set's, every image a function of (seed, label, index).

    python -m model.demo output/my_demo --images 300 --seed 1
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click
import cv2

from model.annotations import Problems, read_rows
from model.demo_images import render, render_in_box
from model.errors import UserError, one_line_errors
from model.files import make_folder, read_json, remove_stale_temporaries, temporary_name, write_file

COURSE_COUNTS = {"airplane": 800, "face": 435, "motorcycle": 798}  # the course set's balance
GENERATOR_VERSION = 2
MARKER = "demo.json"  # written last: its presence means the dataset is complete


def class_counts(total: int) -> dict[str, int]:
    """Split ``total`` images like the course set (800 / 435 / 798), at least 2 per class."""
    counts = {c: max(2, round(total * n / sum(COURSE_COUNTS.values()))) for c, n in COURSE_COUNTS.items()}
    counts["airplane"] += total - sum(counts.values()) if total >= 6 else 0
    return counts


# ----------------------------------------------------------------------------------------------
# Writing the dataset
# ----------------------------------------------------------------------------------------------
class DemoError(UserError):
    """The folder cannot be written; the message is one line naming it and the fix."""


Row = tuple[str, float, float, float, float, str]  # filename, startX, startY, endX, endY, label


def _marker(root: Path) -> dict | None:
    info = read_json(Path(root) / MARKER)
    return info if isinstance(info, dict) else None


def is_complete(root: Path, images: int, seed: int) -> bool:
    info = _marker(root) or {}
    settings = [images, seed, GENERATOR_VERSION]  # a dataset drawn from rows (--rows) is never the default one
    return [info.get(k) for k in ("images", "seed", "version")] == settings and "rows" not in info


def _previous_demo(root: Path) -> list[Path]:
    """The files of a demo dataset already at ``root`` (to replace), [] for a new or empty folder; a DemoError when
    ``root`` holds anything the generator did not write (a real dataset, notes, web_images/ are never touched)."""
    if not root.exists():
        return []
    if not root.is_dir():
        raise DemoError(f"{root}: is a file; choose a new or empty folder")
    present = [p for p in root.rglob("*") if not p.is_dir()]
    marker = _marker(root)
    written = {*marker.get("files", []), MARKER} if marker is not None else set()
    foreign = sorted(str(p.relative_to(root)) for p in present if str(p.relative_to(root)) not in written)
    if (present or any(root.iterdir())) and (not written or foreign):
        example = foreign[0] if foreign else sorted(p.name for p in root.iterdir())[0]
        raise DemoError(f"{root}: holds {example} that the demo generator did not write; choose a new or empty folder "
                        "(nothing was changed)")  # fmt: skip
    return present


def _plan(images: int, rows: Sequence[Row] | None) -> list[tuple[str, list]]:
    """Per label, the images to draw: (file name, index, the box to fill or None)."""
    if rows is None:
        counts = class_counts(images).items()
        return [(label, [(f"image_{i + 1:04d}.jpg", i, None) for i in range(n)]) for label, n in counts]
    by_label: dict[str, list] = {}
    for index, (filename, x1, y1, x2, y2, label) in enumerate(sorted(rows, key=lambda r: (r[5], r[0]))):
        by_label.setdefault(label, []).append((filename, index, (x1, y1, x2, y2)))
    return sorted(by_label.items())


def _write_label(staging: Path, label: str, entries: list, seed: int) -> None:
    """One class's images, drawn in threads (each image its own seed), and its annotation file."""

    def write(entry: tuple) -> str:
        name, index, box = entry
        sample = render(label, seed, index) if box is None else render_in_box(label, box, seed, index)
        data = cv2.imencode(".jpg", sample.image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
        write_file(staging / "images" / label / name, data.tobytes(), data_folder=True)
        numbers = (str(int(v)) if float(v).is_integer() else f"{v:g}" for v in (sample.box if box is None else box))
        return ",".join([name, *numbers, label])

    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        lines = list(pool.map(write, entries))
    write_file(staging / "annotations" / f"{label}.csv", "\n".join(lines).encode(), data_folder=True)


def generate(root: Path, images: int = 600, seed: int = 0, rows=None) -> Path:
    """A demo dataset in the course layout at ``root``: ``images`` images split like the course set, or, given
    ``rows`` (annotation rows, e.g. the course's), one image per row drawn to fit its box, each label's rows in
    file-name order, the files without a final newline, as the course's are. Written beside ``root`` and moved
    into place whole; a previous demo dataset there is replaced, a folder holding anything else refused."""
    previous = _previous_demo(root)
    make_folder(root.parent)
    remove_stale_temporaries(root.parent)  # a generation killed before it finished
    staging = root.parent / temporary_name(root.name)
    try:
        plan, files = _plan(images, rows), [MARKER]
        for label, entries in plan:
            _write_label(staging, label, entries, seed)
            files += [f"annotations/{label}.csv"] + [f"images/{label}/{name}" for name, _, _ in entries]
        count = sum(len(entries) for _, entries in plan)
        info = {"images": count, "seed": seed, "version": GENERATOR_VERSION, "files": sorted(files)}
        write_file(staging / MARKER, json.dumps({**info, **({"rows": "given"} if rows else {})}).encode(), True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # the staging folder is ours alone
        raise
    for path in previous:  # only files the marker says the generator wrote
        path.unlink()
    if root.exists():
        for folder in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            folder.rmdir()  # empty now; rmdir refuses anything that is not
        root.rmdir()
    staging.rename(root)
    return root


@click.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--images", type=click.IntRange(min=6), default=600, show_default=True, help="Number of images, split "
              "800/435/798 like the course set.")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same images.")
@click.option("--rows", "row_files", type=click.Path(exists=True, dir_okay=False, path_type=Path), multiple=True,
              help="Annotation or split files (course format): one image per row, drawn to fit its box (--images is "
              "then ignored).")  # fmt: skip
def main(folder: Path, images: int, seed: int, row_files: tuple[Path, ...]) -> None:
    """Write the demo dataset to FOLDER in the course layout.

    \b
    python -m model.demo output/demo_small --images 90 --seed 1
    python -m model.demo output/course_shaped --rows training_data.csv --rows val_data.csv --rows test_data.csv
    python train.py --dataset output/demo_small
    """
    with one_line_errors():
        rows = [(r.filename, *r.box, r.label) for path in row_files for r in read_rows(path, Problems(skip=False))]
        generate(folder, images, seed, rows=rows or None)
    counts = dict(sorted(Counter(r[5] for r in rows).items())) if rows else class_counts(images)
    shown = ", ".join(f"{n} {c}" for c, n in counts.items())
    click.echo(f"Wrote {sum(counts.values())} demo images ({shown}) to {folder}")


if __name__ == "__main__":
    main()
