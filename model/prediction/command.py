"""predict.py's work: the images of INPUT through the model, each drawn with its prediction (and the truth
where known) in a window or into --save's folder, the gallery beside; or --augment-preview; or --annotate.

Every output (--save's images, the gallery) is checked before the first image is drawn (never into data,
never over a file of the user's) and put in place together once all are drawn: a failure leaves none.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import click
import cv2

from model.core.owned import Outputs, OwnedFolder, Staging
from model.core.runtime import select_device
from model.data.annotations import Problems
from model.data.augment import POLICIES, Augmenter
from model.detector import Detector
from model.evaluation.inference import Inference, load_trained
from model.prediction.annotate import annotate_boxes, annotation_folder
from model.prediction.draw import augmentation_sheet, predict_one
from model.prediction.inputs import Item, collect_items
from model.prediction.settings import DEFAULT_SAVE_DIR, PredictSettings
from model.prediction.view import View, display_usable
from model.reporting.visualize import draw_prediction, encode_image, gallery, grad_cam, overlay_cam
from model.runs.checkpoint import Checkpoint


def predict(settings: PredictSettings) -> None:
    """Everything predict.py does."""
    inference = Inference.on(select_device(settings.device), settings.precision)
    checkpoint, model = load_trained(settings.checkpoint, inference.device)
    folder = annotation_folder(settings.inputs) if settings.annotate else None
    items = collect_items(settings.inputs, settings.dataset, checkpoint, Problems(skip=settings.skip_bad_rows))
    if folder is not None:
        annotate_boxes(folder, items)
        return
    save_dir = settings.save_dir
    if save_dir is None:
        usable, why = display_usable()
        if not usable:
            save_dir = DEFAULT_SAVE_DIR
            click.echo(f"warning: no window: {why}; writing the annotated images to {save_dir}/ instead")
    with Outputs() as outputs:
        saved = declared(outputs, save_dir, "--save", [item.file_name(i, ".jpg") for i, item in enumerate(items)])
        gallery_file = settings.gallery
        album = declared(
            outputs,
            gallery_file.parent if gallery_file else None,
            "--gallery",
            [gallery_file.name] if gallery_file else [],
        )
        view = View(saved, settings.delay or 0, settings.thumbnails)
        with ExitStack() as windows:
            if saved is None:
                windows.callback(cv2.destroyAllWindows)
            counted = run(settings, items, checkpoint, model, inference, view)
        if album is not None and gallery_file is not None and view.thumbnails:
            album.write_bytes(gallery_file.name, encode_image(gallery(view.thumbnails), gallery_file.suffix))
    unreadable = f", {view.unreadable} unreadable" if view.unreadable else ""
    where = f"; annotated images in {save_dir}/" if save_dir is not None else ""
    shown_gallery = f"; gallery of {len(view.thumbnails)} image(s): {settings.gallery}" if view.thumbnails else ""
    click.echo(f"{counted}{unreadable}{where}{shown_gallery}")


def declared(outputs: Outputs, folder: Path | None, option: str, names: list[str]) -> Staging | None:
    """An output folder of the command, checked now (place and names), written when the command ends."""
    if folder is None:
        return None
    change = outputs.folder(OwnedFolder(folder, writer="predict.py", option=option))
    change.owned.check(names)
    return change


def run(
    settings: PredictSettings,
    items: list[Item],
    checkpoint: Checkpoint,
    model: Detector,
    inference: Inference,
    view: View,
) -> str:
    """The images drawn (or previewed); the summary line."""
    if settings.augment_preview:
        policy = settings.augment or checkpoint.options.augment
        policy = "light" if policy == "off" else policy  # trained without: the lighter one
        return preview(items, checkpoint, Augmenter(POLICIES[policy], seed=0), settings.augment_preview, view, policy)
    return predictions(items, model, checkpoint, inference, settings, view)


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
        if view.put(sheet, item.file_name(index, "_augmented.png"), in_gallery=False):
            break
    return f"{shown} image(s) previewed of {len(items)}"


def predictions(
    items: list[Item],
    model: Detector,
    checkpoint: Checkpoint,
    inference: Inference,
    settings: PredictSettings,
    view: View,
) -> str:
    """Each image's prediction drawn (only the failures with --failures-only); the summary line, which
    counts wrong labels and box failures (right label, IoU below the threshold) apart."""
    shown, wrong, boxes = 0, 0, 0
    for index, item in enumerate(items):
        image = view.read(item)
        if image is None:
            continue
        outcome, x = predict_one(model, image, checkpoint, inference, item, settings.threshold)
        wrong += outcome.wrong_label
        boxes += outcome.failure and not outcome.wrong_label
        if settings.failures_only and not outcome.failure:
            continue
        shown += 1
        click.echo(outcome.describe())
        if settings.cam:
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
        if view.put(canvas, item.file_name(index, ".jpg")):
            break
    return (
        f"{shown} image(s) shown of {len(items)}, {wrong + boxes} failure(s): {wrong} wrong label(s), {boxes} box "
        f"failure(s) (right label, IoU < {settings.threshold:g})"
    )
