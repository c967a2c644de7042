"""Show a model's predictions (box, label, confidence) on images, with the truth when it is known.

INPUT is any mix of CSV files in the course row format (split files, annotation files, web_images/annotations.csv:
true label and box known), image files, and folders (a dataset; a folder laid out as images/<label>/ or <label>/,
giving the true label; plain images). Each image goes through the model alone (``predict_one``) and is drawn
(``draw_prediction``, model/draw.py: predicted box orange, true box blue) in a window or into --save's folder;
--failures-only keeps the wrong labels and the boxes below --iou-threshold. --augment-preview shows what training
feeds the network instead; --annotate draws the boxes of internet images with the mouse.
"""

from __future__ import annotations

import atexit
import gc
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import click
import cv2
import numpy as np
import torch

from model import config, env
from model.annotations import ANNOTATIONS, Annotation, Problems, add_box
from model.augment import AUGMENT_POLICIES, POLICIES, Augmenter
from model.checkpoint import Checkpoint
from model.cli import FiniteFloat, checked, device_option, path_type, precision_option
from model.dataset import Item, collect_items, web_folder
from model.draw import augmentation_sheet, draw_prediction, encode_image, grad_cam, overlay_cam
from model.draw import gallery as grid
from model.errors import UserError
from model.evaluate import Inference
from model.files import Outputs, Staging
from model.images import box_to_unit, decode_image, network_input, pairwise_iou

SAVE_DIR = config.OUTPUT_DIR / "predictions"  # where drawings go without a display
QUIT_KEYS = (ord("q"), ord("Q"), 27)  # q or ESC
Box = tuple[float, float, float, float]  # xyxy in pixels


# fmt: off
@click.command(context_settings={"show_default": True, "max_content_width": 110})
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--model", "checkpoint", type=path_type(), default=config.OUTPUT_DIR / config.BEST_CHECKPOINT,
              help="Checkpoint to run.")
@click.option("--failures-only", is_flag=True, help="Only the failures: wrong label, or IoU below --iou-threshold "
              "when the true box is known.")
@click.option("--iou-threshold", type=FiniteFloat(0, 1), help="  [default: 0.5]")
@click.option("--save", "save_dir", type=path_type(), help="Write the annotated images here instead of showing them  "
              f"[default without a display: {SAVE_DIR}]")
@click.option("--gallery", type=path_type(), help="Also write a grid of the selected images to this .png or .jpg "
              "file (for the report).")
@click.option("--gallery-max", type=click.IntRange(1, 1000), help="Images in the gallery at most.  [default: 24]")
@click.option("--cam", is_flag=True, help="Overlay a Grad-CAM heat map of the predicted class.")
@click.option("--delay", type=click.IntRange(min=0), help="On screen: milliseconds per image; 0 waits for a key (q or "
              "ESC quits).  [default: 0]")
@click.option("--dataset", type=path_type(), help="Where the images of CSV rows are  [default: the CSV's own "
              "dataset, else its run's, else the training one]")
@device_option()
@precision_option()
@click.option("--skip-bad-rows", is_flag=True, help="Skip bad CSV rows instead of stopping.")
@click.option("--augment-preview", type=click.IntRange(1, 64), metavar="N", help="Instead of predictions: each "
              "image as the network sees it, then N augmented versions with the box.")
@click.option("--augment", type=click.Choice(AUGMENT_POLICIES), help="--augment-preview's policy  [default: the "
              "model's own, light if it trained without]")
@click.option("--annotate", is_flag=True, help="Instead of predictions: draw the box of each internet image that has "
              "none (web_images/images), with the mouse, into web_images/annotations.csv (needs a display).")
def main(inputs, checkpoint, failures_only, iou_threshold, save_dir, gallery, gallery_max, cam, delay, dataset, device,
         precision, skip_bad_rows, augment_preview, augment, annotate) -> None:  # fmt: skip
    """Show predictions on INPUT... (CSV files, images, folders); any key: next image, q or ESC: quit.

    \b
    python predict.py output/test_data.csv
    python predict.py --model output/vgg/best.pth --failures-only output/vgg/test_data.csv
    python predict.py web_images/images --gallery doc/web_gallery.png --save output/web
    python predict.py --cam --failures-only output/test_data.csv
    python predict.py --augment-preview 8 --augment strong --save output/augmented output/test_data.csv
    python predict.py --annotate web_images/images
    """
    with checked():
        mode = "--annotate" if annotate else "--augment-preview" if augment_preview else ""
        given = {"--failures-only": failures_only, "--iou-threshold": iou_threshold is not None, "--cam": cam,
                 "--gallery": gallery is not None, "--augment": augment is not None, "--save": save_dir is not None,
                 "--delay": delay is not None}  # fmt: skip
        check_options(mode, given, gallery, gallery_max, annotate and bool(augment_preview))
        inference = Inference.on(device, precision)
        loaded = Checkpoint(checkpoint)
        model = inference.place(loaded.build_model())
        folder = annotation_folder(inputs) if annotate else None
        items = collect_items(inputs, dataset, loaded, Problems(skip=skip_bad_rows))
        if folder is not None:
            return annotate_boxes(folder, items)
        if save_dir is None and (why := no_window()):
            save_dir = SAVE_DIR
            click.echo(f"warning: no window: {why}; writing the annotated images to {save_dir}/ instead")
        refuse_own_inputs(save_dir, inputs)
        with Outputs() as outputs, ExitStack() as windows:
            names = [item.file_name(i, ".jpg") for i, item in enumerate(items)]
            saved = outputs.folder(save_dir, "predict.py", "--save", names) if save_dir else None
            album = outputs.folder(gallery.parent, "predict.py", "--gallery", [gallery.name]) if gallery else None
            view = View(saved, delay or 0, 0 if gallery is None else gallery_max or 24)
            if saved is None:
                windows.callback(cv2.destroyAllWindows)
            if augment_preview:
                summary = preview(items, loaded, augment or loaded.options.augment, augment_preview, view)
            else:
                threshold = 0.5 if iou_threshold is None else iou_threshold
                summary = predictions(items, model, loaded, inference, threshold, failures_only, cam, view)
            if album is not None and view.thumbnails:
                album.write_bytes(gallery.name, encode_image(grid(view.thumbnails), gallery.suffix))
        unreadable = f", {view.unreadable} unreadable" if view.unreadable else ""
        where = f"; annotated images in {save_dir}/" if save_dir is not None else ""
        shown = f"; gallery of {len(view.thumbnails)} image(s): {gallery}" if view.thumbnails else ""
        click.echo(f"{summary}{unreadable}{where}{shown}")

# fmt: on


def check_options(mode: str, given: dict[str, bool], gallery: Path | None, gallery_max: int | None, both: bool) -> None:
    """The options of predictions, --augment-preview and --annotate do not mix."""
    if both:
        raise UserError("--augment-preview and --annotate are two things predict.py does: choose one")
    predicting = ("--failures-only", "--iou-threshold", "--cam", "--gallery", "--save", "--delay")
    allowed = {"--augment-preview": ("--augment", "--save", "--delay"), "--annotate": ()}.get(mode, predicting)
    if extra := [name for name, on in given.items() if on and name not in allowed]:
        raise UserError(f"{extra[0]} does not go {f'with {mode}' if mode else 'without --augment-preview'}; drop it")
    if gallery is not None and gallery.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise UserError(f"--gallery {gallery}: a gallery is an image; end its name with .png, .jpg, .jpeg")
    if gallery_max is not None and gallery is None:
        raise UserError("--gallery-max goes with --gallery; drop it (or add --gallery FILE)")
    if given["--delay"] and given["--save"]:
        raise UserError("--delay is the time each image stays in the window: it does not go with --save; drop it")


def refuse_own_inputs(save_dir: Path | None, inputs: tuple[Path, ...]) -> None:
    """--save into a folder it reads would make the next call predict on its own drawings."""
    if save_dir is None:
        return
    for given in [Path(i) for i in inputs if Path(i).is_dir()]:
        if save_dir.resolve().is_relative_to(given.resolve()):
            raise UserError(f"--save {save_dir}: lies inside INPUT {given}, whose images a later call would read with "
                            "the drawings among them; choose a folder outside it")  # fmt: skip


# ----------------------------------------------------------------------------------------------
# One image through the model, and where its drawing goes
# ----------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    item: Item
    predicted: str
    confidence: float
    box: Box | None  # pixels
    iou: float | None
    wrong_label: bool
    failure: bool  # a wrong label, or an IoU below the threshold

    def describe(self) -> str:
        truth = [f"true {self.item.label}"] if self.item.label is not None else []
        truth += [f"IoU {self.iou:.3f}"] if self.iou is not None else []
        detail = f" ({', '.join(truth)})" if truth else ""
        failure = "  FAILURE" if self.failure else ""
        shown = "/".join(self.item.path.parts[-2:])
        return f"{shown}: predicted {self.predicted} {self.confidence:.3f}{detail}{failure}"


def predict_one(model, bgr: np.ndarray, checkpoint: Checkpoint, inference: Inference, item: Item, threshold: float):
    """One image through the model: its outcome, and the normalised input (1, 3, S, S) (for Grad-CAM)."""
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    x = network_input(rgb, checkpoint.image_size, inference.device, checkpoint.mean, checkpoint.std)
    with torch.no_grad(), inference.precision.autocast():
        logits, boxes = model(x)
    confidence, index = logits.float().softmax(dim=1)[0].max(dim=0)
    predicted = checkpoint.classes[int(index)]
    height, width = bgr.shape[:2]
    box = iou = None
    if boxes is not None:
        unit = boxes.float().cpu()  # (1, 4) in [0, 1]
        x1, y1, x2, y2 = (unit[0] * torch.tensor([width, height, width, height])).tolist()
        box = (x1, y1, x2, y2)
        if item.box is not None:
            iou = float(pairwise_iou(unit, torch.tensor([box_to_unit(item.box, width, height)]))[0])
    wrong_label = item.label is not None and predicted != item.label
    failure = wrong_label or (iou is not None and iou < threshold)
    return Outcome(item, predicted, float(confidence), box, iou, wrong_label, failure), x


def no_window() -> str | None:
    """Why no window can be opened here (a line for the user), or None. A DISPLAY whose server is gone makes
    OpenCV's Qt abort the whole process: a window is tried in a child process first."""
    if sys.platform in ("darwin", "win32"):
        return None
    shown = env.display()
    if shown is None:
        return "no display (DISPLAY is not set)"
    probe = "import cv2; cv2.namedWindow('probe'); cv2.waitKey(1); cv2.destroyAllWindows()"
    try:
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=20, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"{shown} did not answer within 20 s"
    return None if done.returncode == 0 else f"{shown} cannot be opened (is its server running? ssh -X/-Y?)"


@dataclass
class View:
    """Where the drawn images go: a window, or --save's folder (a staged change); the gallery's thumbnails."""

    saved: Staging | None
    delay: int
    gallery_max: int
    thumbnails: list[np.ndarray] = field(default_factory=list)
    unreadable: int = 0

    def images(self, items: list[Item]) -> Iterator[tuple[int, Item, np.ndarray]]:
        """Each item's index, the item and its image (BGR), one by one; an unreadable image is skipped and counted."""
        for index, item in enumerate(items):
            rgb, problem = decode_image(item.path)
            if rgb is None:
                click.echo(f"warning: {problem}, skipped", err=True)
                self.unreadable += 1
            else:
                yield index, item, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)

    def put(self, canvas: np.ndarray, name: str) -> bool:
        """Show or save ``canvas`` (the gallery's first ``gallery_max`` kept too); whether the user asked to quit."""
        if len(self.thumbnails) < self.gallery_max:
            self.thumbnails.append(canvas)
        if self.saved is not None:
            self.saved.write_bytes(name, encode_image(canvas, Path(name).suffix))
            return False
        try:
            cv2.imshow("predict.py: any key next, q or ESC quits", canvas)
            return (cv2.waitKey(self.delay) & 0xFF) in QUIT_KEYS
        except cv2.error as error:  # no GUI backend, or an X11 forwarding problem
            raise UserError(f"cannot open a window ({str(error).strip().splitlines()[-1]}); pass --save DIR to write "
                            "the images instead") from None  # fmt: skip


def predictions(items, model, checkpoint, inference, threshold, failures_only, cam, view: View) -> str:
    """Each image's prediction drawn (only the failures with --failures-only); the summary line, which counts wrong
    labels and box failures (right label, IoU below the threshold) apart."""
    shown, wrong, boxes = 0, 0, 0
    for index, item, image in view.images(items):
        outcome, x = predict_one(model, image, checkpoint, inference, item, threshold)
        wrong += outcome.wrong_label
        boxes += outcome.failure and not outcome.wrong_label
        if failures_only and not outcome.failure:
            continue
        shown += 1
        click.echo(outcome.describe())
        image = overlay_cam(image, grad_cam(model, x)) if cam else image
        canvas = draw_prediction(image, outcome.predicted, outcome.confidence, outcome.box, item.label, item.box,
                                 outcome.iou, outcome.failure)  # fmt: skip
        if view.put(canvas, item.file_name(index, ".jpg")):
            break
    labelled = sum(item.label is not None for item in items)
    note = "" if labelled or not failures_only else " (failures need the true labels: none of these images has one)"
    return (f"{shown} image(s) shown of {len(items)}, {wrong + boxes} failure(s): {wrong} wrong label(s), {boxes} box "
            f"failure(s) (right label, IoU < {threshold:g}){note}")  # fmt: skip


def preview(items: list[Item], checkpoint: Checkpoint, policy: str, count: int, view: View) -> str:
    """--augment-preview: each image as the network sees it, then ``count`` augmented versions."""
    policy = "light" if policy == "off" else policy  # a model trained without: the lighter one
    augmenter, shown = Augmenter(POLICIES[policy], seed=0), 0
    for index, item, image in view.images(items):
        shown += 1
        click.echo(f"{'/'.join(item.path.parts[-2:])}: {count} augmented versions ({policy})")
        height, width = image.shape[:2]
        unit = box_to_unit(item.box, width, height) if item.box is not None else (0.0, 0.0, 1.0, 1.0)
        sheet = augmentation_sheet(
            image, unit, checkpoint.image_size, checkpoint.mean, checkpoint.std, augmenter, count
        )
        if view.put(sheet, item.file_name(index, "_augmented.png")):  # no gallery with --augment-preview
            break
    return f"{shown} image(s) previewed of {len(items)}"


# ----------------------------------------------------------------------------------------------
# --annotate: the boxes of internet images, drawn with the mouse into web_images/annotations.csv
# ----------------------------------------------------------------------------------------------
def annotation_folder(inputs: tuple[Path, ...]) -> Path:
    """The folder of internet images --annotate draws boxes for, laid out as FOLDER/images/<label>/<image>."""
    folder = next((f for f in (web_folder(Path(i)) for i in inputs) if f is not None), None)
    if folder is None or not [d for d in (folder / "images").iterdir() if d.is_dir()]:
        raise UserError(f"--annotate {' '.join(map(str, inputs))}: it draws the boxes of internet images laid out as "
                        "FOLDER/images/<label>/<image> (as web_images/ is), one folder per true label; give FOLDER or "
                        "FOLDER/images")  # fmt: skip
    return folder


def annotate_boxes(folder: Path, items: list[Item]) -> None:
    """The boxes of the items without one, drawn (drag, then Enter or Space; c skips) and written one by one."""
    if why := no_window():
        raise UserError(f"--annotate needs a display to draw on ({why}): run it on a machine with a screen or "
                        f"through ssh -X, or write the rows of {folder / ANNOTATIONS} by hand "
                        "(web_images/README.md)")  # fmt: skip
    todo = [item for item in items if item.label is not None and item.box is None]
    click.echo(f"{len(todo)} image(s) without a box in {folder / ANNOTATIONS}")
    drawn = 0
    try:
        for item in todo:
            image = cv2.imread(str(item.path), cv2.IMREAD_COLOR)
            if image is None:
                click.echo(f"warning: {item.path}: unreadable image, skipped", err=True)
                continue
            scale = min(1.0, 1000 / max(image.shape[:2]))
            shown = cv2.resize(image, None, fx=scale, fy=scale) if scale < 1 else image
            try:
                title = f"{item.label}: drag the box, Enter to keep it, c to skip"
                x, y, w, h = cv2.selectROI(title, shown, showCrosshair=True)
            except cv2.error as error:
                raise UserError(f"cannot open a window ({str(error).strip().splitlines()[-1]})") from None
            if w and h:
                x1, y1, x2, y2 = (v / scale for v in (x, y, x + w, y + h))
                add_box(folder, Annotation(item.path.name, x1, y1, x2, y2, str(item.label)))
                drawn += 1
    finally:
        cv2.destroyAllWindows()
    click.echo(f"Wrote {drawn} box(es) to {folder / ANNOTATIONS}")


if __name__ == "__main__":
    atexit.register(gc.freeze)  # the exit's last garbage collections skip torch's objects: 0.2 s, not 0.5-1 s
    main()
