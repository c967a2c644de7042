"""predict.py --annotate: draw the box of each internet image that has none, with the mouse (drag, then Enter
or Space; c skips the image), written to web_images/annotations.csv as it goes."""

from __future__ import annotations

from pathlib import Path

import click
import cv2

from model.core.errors import UserError
from model.data.annotations import Annotation
from model.data.web import ANNOTATIONS, add_box
from model.prediction.inputs import Box, Item, web_folder
from model.prediction.view import display_usable


def annotation_folder(inputs: tuple[Path, ...]) -> Path:
    """The folder of internet images --annotate draws boxes for, laid out as FOLDER/images/<label>/<image>."""
    folder = next((f for f in (web_folder(Path(i)) for i in inputs) if f is not None), None)
    labelled = [d for d in (folder / "images").iterdir() if d.is_dir()] if folder is not None else []
    if folder is None or not labelled:
        raise UserError(
            f"--annotate {' '.join(map(str, inputs))}: it draws the boxes of internet images laid out as "
            f"FOLDER/images/<label>/<image> (as web_images/ is), one folder per true label; give FOLDER or "
            "FOLDER/images"
        )
    return folder


def annotate_boxes(folder: Path, items: list[Item]) -> None:
    """The boxes of the items without one, drawn and written one by one."""
    usable, why = display_usable()
    if not usable:
        raise UserError(
            f"--annotate needs a display to draw on ({why}): run it on a machine with a screen or through ssh -X, "
            f"or write the rows of {folder / ANNOTATIONS} by hand (web_images/README.md)"
        )
    todo = [item for item in items if item.label is not None and item.box is None]
    click.echo(f"{len(todo)} image(s) without a box in {folder / ANNOTATIONS}")
    drawn = 0
    try:
        for item in todo:
            box = draw_box(item)
            if box is not None:
                add_box(folder, Annotation(item.path.name, *box, str(item.label)))
                drawn += 1
    finally:
        cv2.destroyAllWindows()
    click.echo(f"Wrote {drawn} box(es) to {folder / ANNOTATIONS}")


def draw_box(item: Item) -> Box | None:
    """The box the user drags on the image (in its pixels), or None when skipped."""
    image = cv2.imread(str(item.path), cv2.IMREAD_COLOR)
    if image is None:
        click.echo(f"warning: {item.path}: unreadable image, skipped", err=True)
        return None
    scale = min(1.0, 1000 / max(image.shape[:2]))
    shown = cv2.resize(image, None, fx=scale, fy=scale) if scale < 1 else image
    try:
        x, y, w, h = cv2.selectROI(
            f"{item.label}: drag the box, Enter to keep it, c to skip", shown, showCrosshair=True
        )
    except cv2.error as error:
        raise UserError(f"cannot open a window ({str(error).strip().splitlines()[-1]})") from None
    if w == 0 or h == 0:
        return None
    return (x / scale, y / scale, (x + w) / scale, (y + h) / scale)
