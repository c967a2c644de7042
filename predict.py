"""Show a model's predictions (box, label, confidence) on images, with the truth when it is known.

INPUT is any mix of CSV files in the course row format (split files, annotation files,
web_images/annotations.csv: true label and box known), image files, and folders (a dataset, a
folder laid out as images/<label>/ or <label>/ giving the true label, or plain images).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import click
import cv2
import numpy as np
import torch

from model import config
from model.core.cli import FiniteFloat
from model.core.errors import UserError, one_line_errors
from model.core.owned import OwnedFolder, Staging
from model.core.precision import PRECISIONS
from model.core.runtime import DEVICES, select_device
from model.data.annotations import Annotation, Problems, check_labels, image_path, read_annotations, read_rows
from model.data.boxes import pairwise_iou
from model.data.images import box_to_pixels, box_to_unit, decode_image, network_input, resize_square, to_chw_uint8
from model.data.web import ANNOTATIONS, add_box, web_rows
from model.evaluation.inference import Inference, images_root, load_trained
from model.network import Detector
from model.reporting.visualize import TRUE, draw_prediction, encode_image, gallery, grad_cam, overlay_cam
from model.runs.checkpoint import Checkpoint
from model.training.augment import AUGMENT_POLICIES, POLICIES, Augmenter, to_pixels

QUIT_KEYS = (ord("q"), ord("Q"), 27)  # q or ESC
Box = tuple[float, float, float, float]  # xyxy in pixels
DEFAULT_SAVE_DIR = config.OUTPUT_DIR / "predictions"


@dataclass
class Item:
    path: Path
    label: str | None = None  # true label, when known
    box: Box | None = None  # true box in pixels, when known


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in config.IMAGE_EXTENSIONS and not p.name.startswith(".")
    )


def _rows_to_items(root: Path, rows: list[Annotation]) -> list[Item]:
    return [Item(image_path(root, row), row.label, row.box) for row in rows]


def collect_items(
    inputs: tuple[Path, ...], dataset: Path | None, checkpoint: Checkpoint, problems: Problems
) -> list[Item]:
    classes = checkpoint.classes
    items: list[Item] = []
    for given in inputs:
        path = Path(given)
        if path.is_file() and path.suffix.lower() == ".csv":
            rows = check_labels(read_rows(path, problems), classes, problems)
            items += _rows_to_items(images_root(path, dataset, checkpoint), rows)
        elif path.is_file() and path.suffix.lower() in config.IMAGE_EXTENSIONS:
            items.append(Item(path))
        elif path.is_dir() and (path / "annotations").is_dir() and (path / "images").is_dir():
            items += _rows_to_items(path, check_labels(read_annotations(path, problems), classes, problems))
        elif path.is_dir() and web_folder(path) is not None:  # internet images: boxes where annotations.csv has one
            folder = web_folder(path)
            assert folder is not None
            rows = check_labels(web_rows(folder, problems), classes, problems)
            items += [Item(image_path(folder, r), r.label, None if r.label_only else r.box) for r in rows]
        elif path.is_dir():
            labelled = path / "images" if (path / "images").is_dir() else path
            folders = [labelled / c for c in classes if (labelled / c).is_dir()]
            for folder in folders:
                items += [Item(p, folder.name) for p in _image_files(folder)]
            if not folders:
                items += [Item(p) for p in _image_files(path)]
        else:
            raise click.BadParameter(f"{given}: not a CSV file, an image or a folder", param_hint="INPUT")
    return items


@dataclass
class Outcome:
    item: Item
    predicted: str
    confidence: float
    box: tuple[float, float, float, float] | None  # pixels
    iou: float | None
    failure: bool


@torch.no_grad()
def predict_one(
    model: Detector,
    image_bgr: np.ndarray,
    checkpoint: Checkpoint,
    inference: Inference,
    item: Item,
    iou_threshold: float,
) -> tuple[Outcome, torch.Tensor]:
    """Run one image through the model; returns the outcome and the normalised input (1, 3, S, S)."""
    rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    x = network_input(rgb, checkpoint.image_size, inference.device, checkpoint.mean, checkpoint.std)
    with inference.precision.autocast():
        logits, boxes = model(x)
    probabilities = logits.float().softmax(dim=1)[0]
    confidence, index = probabilities.max(dim=0)
    predicted = checkpoint.classes[int(index)]
    height, width = image_bgr.shape[:2]
    box = iou = None
    if boxes is not None:
        pred = boxes.float().cpu()  # (1, 4) in [0, 1]
        x1, y1, x2, y2 = (float(v) for v in box_to_pixels(pred, torch.tensor([[width, height]]))[0])
        box = (x1, y1, x2, y2)
        if item.box is not None:
            true = torch.tensor([box_to_unit(item.box, width, height)], dtype=torch.float32)
            iou = float(pairwise_iou(pred, true)[0])
    failure = (item.label is not None and predicted != item.label) or (iou is not None and iou < iou_threshold)
    return Outcome(item, predicted, float(confidence), box, iou, failure), x


def augmentation_sheet(
    image_bgr: np.ndarray, box: Box | None, checkpoint: Checkpoint, augmenter: Augmenter, count: int
) -> np.ndarray:
    """The image resized as the network sees it, then ``count`` augmented versions, side by side,
    each with its box (blue): what training feeds the network."""
    height, width = image_bgr.shape[:2]
    unit = box_to_unit(box, width, height) if box is not None else (0.0, 0.0, 1.0, 1.0)
    image_size, mean, std = checkpoint.image_size, checkpoint.mean, checkpoint.std
    rgb = resize_square(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB), image_size)
    images = to_chw_uint8(rgb)[None].repeat(count, 1, 1, 1)
    boxes = torch.tensor([unit] * count, dtype=torch.float32)
    augmented, moved = augmenter(images, boxes, mean, std)
    tiles = [(images[0].float(), boxes[0]), *zip(to_pixels(augmented, mean, std).clamp(0, 255), moved)]
    side = max(image_size, 160)  # small inputs are enlarged to stay visible
    drawn = []
    for picture, corners in tiles:
        tile = cv2.cvtColor(picture.round().byte().permute(1, 2, 0).numpy(), cv2.COLOR_RGB2BGR)
        tile = cv2.resize(tile, (side, side), interpolation=cv2.INTER_NEAREST)
        x1, y1, x2, y2 = (round(float(v) * side) for v in corners)
        cv2.rectangle(tile, (x1, y1), (max(x1, x2 - 1), max(y1, y2 - 1)), TRUE, 2)
        drawn.append(cv2.copyMakeBorder(tile, 2, 2, 2, 2, cv2.BORDER_CONSTANT, value=(255, 255, 255)))
    return np.hstack(drawn)


def show_window(canvas: np.ndarray, delay: int) -> bool:
    """Show ``canvas`` until a key (or ``delay`` ms); whether the user asked to quit."""
    try:
        cv2.imshow("predict.py: any key next, q or ESC quits", canvas)
        key = cv2.waitKey(delay) & 0xFF
    except cv2.error as error:  # e.g. no GUI backend, or an X11 forwarding problem
        raise click.ClickException(
            f"cannot open a window ({str(error).strip().splitlines()[-1]}); pass --save DIR to write the images instead"
        ) from None
    return key in QUIT_KEYS


def display_available() -> bool:
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def describe(outcome: Outcome) -> str:
    item = outcome.item
    name = "/".join(item.path.parts[-2:])
    truth = []
    if item.label is not None:
        truth.append(f"true {item.label}")
    if outcome.iou is not None:
        truth.append(f"IoU {outcome.iou:.3f}")
    detail = f" ({', '.join(truth)})" if truth else ""
    failure = "  FAILURE" if outcome.failure else ""
    return f"{name}: predicted {outcome.predicted} {outcome.confidence:.3f}{detail}{failure}"


@click.command(context_settings={"show_default": True, "max_content_width": 110})
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--model",
    "checkpoint_path",
    type=click.Path(path_type=Path),
    default=config.OUTPUT_DIR / config.BEST_CHECKPOINT,
    help="Checkpoint to run.",
)
@click.option(
    "--failures-only",
    is_flag=True,
    help="Only the failures: wrong label, or IoU below --iou-threshold when the true box is known.",
)
@click.option("--iou-threshold", type=FiniteFloat(0, 1), default=0.5)
@click.option(
    "--save",
    "save_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=f"Write the annotated images here instead of showing them  [default without a display: {DEFAULT_SAVE_DIR}]",
)
@click.option(
    "--gallery",
    "gallery_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write a grid of the selected images to this PNG (for the report).",
)
@click.option("--gallery-max", type=click.IntRange(min=1), default=24, help="Images in the gallery at most.")
@click.option("--cam", is_flag=True, help="Overlay a Grad-CAM heat map of the predicted class.")
@click.option(
    "--delay",
    type=click.IntRange(min=0),
    default=0,
    help="On screen: milliseconds per image; 0 waits for a key (q or ESC quits).",
)
@click.option(
    "--dataset",
    type=click.Path(path_type=Path),
    default=None,
    help="Where the images of CSV rows are  [default: the CSV's own dataset, else the training one]",
)
@click.option("--device", type=click.Choice(DEVICES), default="auto")
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto", help="Autocast, as train.py's option.")
@click.option("--skip-bad-rows", is_flag=True, help="Skip bad CSV rows instead of stopping.")
@click.option(
    "--augment-preview",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Instead of predictions: each image as the network sees it, then N augmented versions with the box.",
)
@click.option(
    "--augment",
    type=click.Choice(AUGMENT_POLICIES),
    default=None,
    help="--augment-preview's policy  [default: the model's own, light if it trained without]",
)
@click.option(
    "--annotate",
    is_flag=True,
    help="Instead of predictions: draw the box of each internet image that has none (web_images/images), with "
    "the mouse, into web_images/annotations.csv (needs a display).",
)
def main(
    inputs: tuple[Path, ...],
    checkpoint_path: Path,
    failures_only: bool,
    iou_threshold: float,
    save_dir: Path | None,
    gallery_path: Path | None,
    gallery_max: int,
    cam: bool,
    delay: int,
    dataset: Path | None,
    device: str,
    precision: str,
    skip_bad_rows: bool,
    augment_preview: int | None,
    augment: str | None,
    annotate: bool,
) -> None:
    """Show predictions on INPUT... (CSV files, images, folders); any key: next image, q or ESC: quit.

    \b
    python predict.py output/test_data.csv
    python predict.py --model output/vgg/best.pth --failures-only output/vgg/test_data.csv
    python predict.py web_images/images --gallery doc/web_gallery.png --save output/web
    python predict.py --cam --failures-only output/test_data.csv
    python predict.py --augment-preview 8 --augment strong --save output/augmented output/test_data.csv
    """
    with one_line_errors():
        inference = Inference.on(select_device(device), precision)
        checkpoint, model = load_trained(checkpoint_path, inference.device)
        items = collect_items(inputs, dataset, checkpoint, Problems(skip=skip_bad_rows))
        if not items:
            raise UserError(f"no image found in {', '.join(map(str, inputs))}")
        if not any(item.path.exists() for item in items):
            raise UserError(
                f"{items[0].path.parent.parent}: none of the {len(items)} images of {', '.join(map(str, inputs))} is "
                f"there (has the dataset moved?); pass --dataset with the folder that holds them"
            )
        if annotate:
            annotate_boxes(inputs, items)
            return
        show = save_dir is None and display_available()
        if save_dir is None and not show:
            save_dir = DEFAULT_SAVE_DIR
            click.echo(f"No display (DISPLAY is not set): writing the annotated images to {save_dir}/")
        with saving(save_dir) as saved:  # the images go into --save's folder together, once all are drawn
            view = View(saved, delay, gallery_max if gallery_path is not None else 0)
            if augment_preview:
                policy = augment or checkpoint.options.augment
                policy = "light" if policy == "off" else policy  # trained without: the lighter one
                augmenter = Augmenter(POLICIES[policy], seed=0)
                counted = preview(items, checkpoint, augmenter, augment_preview, view, policy)
            else:
                counted = predictions(items, model, checkpoint, inference, iou_threshold, failures_only, cam, view)
        if gallery_path is not None and view.thumbnails:
            folder = OwnedFolder(gallery_path.parent, writer="predict.py", option="--gallery")
            folder.write_bytes(gallery_path.name, encode_image(gallery(view.thumbnails), gallery_path.suffix or ".png"))
            click.echo(f"Gallery of {len(view.thumbnails)} image(s): {gallery_path}")
    where = f"; annotated images in {save_dir}/" if save_dir is not None else ""
    click.echo(f"{counted}{f', {view.unreadable} unreadable' if view.unreadable else ''}{where}")


@contextmanager
def saving(save_dir: Path | None) -> Iterator[Staging | None]:
    """--save's folder as one change (nothing of it is written when a write fails or the run is stopped), or None."""
    if save_dir is None:
        yield None
        return
    with OwnedFolder(save_dir, writer="predict.py", option="--save").staged() as change:
        yield change


@dataclass
class View:
    """Where the drawn images go: a window (any key: next, q or ESC: quit), or files in --save's folder."""

    saved: Staging | None
    delay: int
    gallery_max: int
    thumbnails: list[np.ndarray] = field(default_factory=list)
    unreadable: int = 0

    def read(self, item: Item) -> np.ndarray | None:
        rgb, problem = decode_image(item.path)
        if rgb is None:
            click.echo(f"warning: {problem}, skipped", err=True)
            self.unreadable += 1
            return None
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)

    def put(self, canvas: np.ndarray, name: str, in_gallery: bool = True) -> bool:
        """Show or save ``canvas``; whether the user asked to quit."""
        if in_gallery and len(self.thumbnails) < self.gallery_max:
            self.thumbnails.append(canvas)
        if self.saved is not None:
            self.saved.write_bytes(name, encode_image(canvas, Path(name).suffix))
            return False
        try:
            return show_window(canvas, self.delay)
        except BaseException:
            cv2.destroyAllWindows()
            raise


def preview(
    items: list[Item], checkpoint: Checkpoint, augmenter: Augmenter, count: int, view: View, policy: str
) -> str:
    """--augment-preview: each image as the network sees it, then ``count`` augmented versions."""
    shown = 0
    for index, item in enumerate(items):
        image = view.read(item)
        if image is None:
            continue
        shown += 1
        click.echo(f"{'/'.join(item.path.parts[-2:])}: {count} augmented versions ({policy})")
        sheet = augmentation_sheet(image, item.box, checkpoint, augmenter, count)
        if view.put(sheet, f"{index:04d}_{item.label or 'image'}_{item.path.stem}_augmented.png", in_gallery=False):
            break
    return f"{shown} image(s) previewed of {len(items)}"


def predictions(
    items: list[Item],
    model: Detector,
    checkpoint: Checkpoint,
    inference: Inference,
    iou_threshold: float,
    failures_only: bool,
    cam: bool,
    view: View,
) -> str:
    """Each image's prediction drawn (only the failures with --failures-only); the summary line, which
    counts wrong labels and box failures (right label, IoU below the threshold) apart."""
    shown, wrong, boxes = 0, 0, 0
    for index, item in enumerate(items):
        image = view.read(item)
        if image is None:
            continue
        outcome, x = predict_one(model, image, checkpoint, inference, item, iou_threshold)
        wrong += item.label is not None and outcome.predicted != item.label
        boxes += outcome.failure and (item.label is None or outcome.predicted == item.label)
        if failures_only and not outcome.failure:
            continue
        shown += 1
        click.echo(describe(outcome))
        if cam:
            image = overlay_cam(image, grad_cam(model, x)[0])
        canvas = draw_prediction(
            image,
            outcome.predicted,
            outcome.confidence,
            outcome.box,
            item.label,
            item.box,
            outcome.iou,
            outcome.failure,
        )
        if view.put(canvas, f"{index:04d}_{item.label or 'image'}_{item.path.stem}.jpg"):
            break
    return (
        f"{shown} image(s) shown of {len(items)}, {wrong + boxes} failure(s): {wrong} wrong label(s), {boxes} box "
        f"failure(s) (right label, IoU < {iou_threshold:g})"
    )


def annotate_boxes(inputs: tuple[Path, ...], items: list[Item]) -> None:
    """--annotate: draw the box of each internet image that has none, with the mouse (drag, then Enter or
    Space; c skips the image), written to web_images/annotations.csv as it goes."""
    folder = next((f for f in (web_folder(Path(i)) for i in inputs) if f is not None), None)
    if folder is None:
        raise UserError(
            f"--annotate draws the boxes of internet images: give their folder (web_images/images), not "
            f"{', '.join(map(str, inputs))}"
        )
    if not display_available():
        raise UserError(
            "--annotate needs a display to draw on (DISPLAY is not set): run it on a machine with a screen or "
            "through ssh -X, or write the rows of web_images/annotations.csv by hand (web_images/README.md)"
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


def web_folder(path: Path) -> Path | None:
    """The web_images-like folder of ``path`` (it, or its parent when ``path`` is its images/)."""
    for candidate in (path, path.parent):
        if (candidate / "images").is_dir() and not (candidate / "annotations").is_dir():
            return candidate
    return None


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


if __name__ == "__main__":
    main()
